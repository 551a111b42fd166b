"""Dataset readers shared by the embedded benchmark and real COCO."""
