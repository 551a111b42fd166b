"""Stage train_generator: cached real seen features + class embeddings -> generator checkpoint.

cmd: python stages/train_generator.py SEEN_STORE EMBEDDINGS OUT --row ROW --seed N
The ablation row's overrides (e.g. `arch=gmmn align=false`) are read from params `generators.ROW`
and applied on top of the params section `generator`; `--seed` sets `generator.seed`.
"""

import argparse

import yaml

from zeroseg import stage
from zeroseg.config import from_dict
from zeroseg.generator.train import GeneratorConfig, params_dict, train_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_store", "embeddings", "out"):
        ap.add_argument(name)
    ap.add_argument("--row", required=True, help="ablation row: a key of params `generators`")
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    base = params_dict(stage.section("generator", GeneratorConfig))
    for kv in stage.row_overrides(a.row):
        k, _, v = kv.partition("=")
        base[k] = yaml.safe_load(v)
    base["seed"] = a.seed
    train_generator(from_dict(GeneratorConfig, base, f"generator (with generators.{a.row})"), a.seen_store, a.embeddings, a.out)


if __name__ == "__main__":
    stage.run(main)
