"""Stage embed: class names of a COCO-format JSON -> one L2-normalised vector per class (Parquet).

cmd: python stages/embed.py CATEGORIES_JSON OUT_PARQUET

The folder of OUT_PARQUET is the stage's declared output (dvc.yaml: data/embed): it is replaced
as a whole, so a killed run leaves no temporary inside it.
"""

import argparse
from pathlib import Path

from zeroseg import stage
from zeroseg.atomic import atomic_dir
from zeroseg.embed.sources import EmbedConfig
from zeroseg.embed.vectors import embed_classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("categories_json")
    ap.add_argument("out_parquet")
    args = ap.parse_args()
    cfg, out = stage.section("embed", EmbedConfig), Path(args.out_parquet)
    with atomic_dir(out.parent) as tmp:
        embed_classes(args.categories_json, cfg, tmp / out.name)


if __name__ == "__main__":
    stage.run(main)
