"""Stage dump_features: checkpoint + panoptic images -> Zarr feature store (params section `dump`).

cmd: python stages/dump_features.py CHECKPOINT ANNOTATION_JSON IMAGE_DIR PNG_DIR OUT [--keep-masks]
Under torchrun each rank writes its own shard.
"""

import argparse

from zeroseg import stage
from zeroseg.features.dump import DumpConfig, dump_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("checkpoint", "annotation_json", "image_dir", "png_dir", "out"):
        ap.add_argument(name)
    ap.add_argument("--keep-masks", action="store_true", help="also store the queries' mask logits (validation)")
    a = ap.parse_args()
    dump_features(a.checkpoint, a.annotation_json, a.image_dir, a.out, stage.section("dump", DumpConfig),
                  a.png_dir, keep_masks=a.keep_masks)


if __name__ == "__main__":
    stage.run(main)
