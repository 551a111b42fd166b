"""Stage train_segmenter: seen split -> Mask2Former checkpoint (params section `segmenter`).

cmd: python stages/train_segmenter.py SEEN_JSON IMAGE_DIR PNG_DIR OUT_DIR LIVE_DIR
Multi-GPU / multi-process: torchrun --nproc_per_node N stages/train_segmenter.py ... (same args).
"""

import argparse

from zeroseg import stage
from zeroseg.segmenter.model import SegmenterConfig
from zeroseg.segmenter.train import train_segmenter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_json", "image_dir", "png_dir", "out_dir", "live_dir"):
        ap.add_argument(name)
    a = ap.parse_args()
    train_segmenter(stage.section("segmenter", SegmenterConfig), a.seen_json, a.image_dir, a.out_dir, a.png_dir, a.live_dir)


if __name__ == "__main__":
    stage.run(main)
