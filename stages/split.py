"""Stage split: a COCO panoptic JSON -> seen/unseen/all JSONs + manifest, leak-guarded.

cmd: python stages/split.py ANNOTATION_JSON OUT_DIR METRICS_JSON [--png-dir DIR]
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import write_json
from zeroseg.split import SplitConfig, split_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("annotation_json")
    ap.add_argument("out_dir")
    ap.add_argument("metrics_json")
    ap.add_argument("--png-dir")
    args = ap.parse_args()
    cfg = stage.section("split", SplitConfig)
    res = split_dataset(args.annotation_json, cfg.unseen, args.out_dir, args.png_dir, cfg.verify_pngs)
    write_json(args.metrics_json, {f"split.{k}": v for k, v in res.metrics().items()})


if __name__ == "__main__":
    stage.run(main)
