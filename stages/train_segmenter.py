"""Stage train_segmenter: seen split -> Mask2Former checkpoint (params section `segmenter`).

cmd: python stages/train_segmenter.py SEEN_JSON IMAGE_DIR PNG_DIR OUT_DIR LIVE_DIR [--seed N]
(--seed: the run's seed, params `seeds`; without it the section's `seed` key, default 0)
Multi-GPU / multi-process: torchrun --nproc_per_node N stages/train_segmenter.py ... (same args).
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.segmenter.model import SegmenterConfig
from zeroseg.segmenter.train import train_segmenter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_json", "image_dir", "png_dir", "out_dir", "live_dir"):
        ap.add_argument(name)
    ap.add_argument("--seed", type=int, help="initialisation, data order and augmentation (the ablation seed)")
    a = ap.parse_args()
    cfg = stage.section("segmenter", SegmenterConfig)
    cfg = cfg if a.seed is None else replace(cfg, seed=a.seed)
    train_segmenter(cfg, a.seen_json, a.image_dir, a.out_dir, a.png_dir, a.live_dir)


if __name__ == "__main__":
    stage.run(main)
