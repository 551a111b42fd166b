"""Stage train_generator: cached real seen features + class embeddings -> generator checkpoint.

cmd: python stages/train_generator.py SEEN_STORE EMBEDDINGS OUT [--set key=value ...]
`--set` applies the ablation row's overrides (e.g. arch=gmmn align=false) on top of the
params section `generator`.
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
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    base = params_dict(stage.section("generator", GeneratorConfig))
    for kv in a.set:
        k, _, v = kv.partition("=")
        base[k] = yaml.safe_load(v)
    train_generator(from_dict(GeneratorConfig, base, "generator (with --set)"), a.seen_store, a.embeddings, a.out)


if __name__ == "__main__":
    stage.run(main)
