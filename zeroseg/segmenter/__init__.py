"""Stage 1: the seen-only Mask2Former segmenter."""
