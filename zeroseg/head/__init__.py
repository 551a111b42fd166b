"""The class head: its type and checkpoints, its retraining (the official PADing batch), the baselines."""
