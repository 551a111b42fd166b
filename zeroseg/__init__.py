"""zeroseg: universal zero-shot segmentation after PADing (CVPR 2023)."""

__version__ = "0.1.0"
