"""Stage train_generator: cached real seen query features + class-name embeddings -> generator checkpoint.

cmd: python stages/train_generator.py SEEN_STORE EMBEDDINGS SEGMENTER OUT --row ROW --seed N
The ablation row's overrides (e.g. `arch=gmmn align=false`, `recipe=official`) are read from
params `generators.ROW` and applied on top of the params section `generator`; `--seed` sets
`generator.seed`. A row with `schedule: joint` also trains the class head (params section
`classifier`, started from SEGMENTER's seen head) and stores it in the checkpoint.
"""

import argparse
from dataclasses import replace

import yaml

from zeroseg import stage
from zeroseg.config import from_dict
from zeroseg.head.train import ClassifierConfig
from zeroseg.generator.config import GeneratorConfig, params_dict
from zeroseg.generator.train import train_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_store", "embeddings", "segmenter", "out"):
        ap.add_argument(name)
    ap.add_argument("--row", required=True, help="ablation row: a key of params `generators`")
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    base = params_dict(stage.section("generator", GeneratorConfig))
    for kv in stage.row_overrides(a.row):
        k, _, v = kv.partition("=")
        base[k] = yaml.safe_load(v)
    base["seed"] = a.seed
    cfg = from_dict(GeneratorConfig, base, f"generator (with generators.{a.row})")
    head_cfg = None
    if cfg.resolved().schedule == "joint":
        head_cfg = replace(stage.section("classifier", ClassifierConfig), seed=a.seed)
    train_generator(cfg, a.seen_store, a.embeddings, a.out, segmenter=a.segmenter, head_cfg=head_cfg)


if __name__ == "__main__":
    stage.run(main)
