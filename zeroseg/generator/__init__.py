"""Stage 2: feature generators (GMMN, primitive), disentanglement, alignment, classifier retraining."""
