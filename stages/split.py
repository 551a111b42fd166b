"""Stage split: a COCO panoptic JSON -> seen/unseen/all JSONs + manifest, leak-guarded.

cmd: python stages/split.py ANNOTATION_JSON OUT_DIR METRICS_JSON [--png-dir DIR]
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import atomic_outputs, json_text
from zeroseg.split import SplitConfig, split_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("annotation_json")
    ap.add_argument("out_dir")
    ap.add_argument("metrics_json")
    ap.add_argument("--png-dir")
    args = ap.parse_args()
    cfg = stage.section("split", SplitConfig)
    with atomic_outputs() as outs:  # the split and its metric together (a kill never leaves a mix)
        with outs.dir(args.out_dir) as tmp:
            res = split_dataset(args.annotation_json, cfg.unseen, tmp, args.png_dir, cfg.verify_pngs, cfg.policy)
        with outs.file(args.metrics_json) as tmp:
            tmp.write_text(json_text({f"split.{k}": v for k, v in res.metrics().items()}))


if __name__ == "__main__":
    stage.run(main)
