"""Stage embed: class names of a COCO-format JSON -> one L2-normalised vector per class (Parquet).

cmd: python stages/embed.py CATEGORIES_JSON OUT_PARQUET
"""

import argparse

from zeroseg import stage
from zeroseg.embed.sources import EmbedConfig
from zeroseg.embed.vectors import embed_classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("categories_json")
    ap.add_argument("out_parquet")
    args = ap.parse_args()
    embed_classes(args.categories_json, stage.section("embed", EmbedConfig), args.out_parquet)


if __name__ == "__main__":
    stage.run(main)
