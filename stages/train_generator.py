"""Stage train_generator: cached real seen query features + class-name embeddings -> generator checkpoint.

cmd: python stages/train_generator.py SEEN_STORE EMBEDDINGS SEGMENTER OUT --config ROW_CONFIG --seed N
ROW_CONFIG is the row's config file that stage generator_config wrote (the `generator` keys the
row reads, from params `generator` and the row's overrides `generators.ROW`); `--seed` sets
`generator.seed`. A row with `schedule: joint` also trains the class head (the `classifier`
section of ROW_CONFIG, started from SEGMENTER's seen head) and stores it in the checkpoint.
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.generator.config import GeneratorConfig
from zeroseg.generator.train import train_generator
from zeroseg.head.train import ClassifierConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_store", "embeddings", "segmenter", "out"):
        ap.add_argument(name)
    ap.add_argument("--config", required=True, help="the row's config file (stage generator_config)")
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    cfg = replace(stage.section("generator", GeneratorConfig, a.config), seed=a.seed)
    head_cfg = None
    if cfg.resolved().schedule == "joint":
        head_cfg = replace(stage.section("classifier", ClassifierConfig, a.config), seed=a.seed)
    train_generator(cfg, a.seen_store, a.embeddings, a.out, segmenter=a.segmenter, head_cfg=head_cfg)


if __name__ == "__main__":
    stage.run(main)
