"""Stage synthesize: generator checkpoint -> synthetic features of every class (feature store).

cmd: python stages/synthesize.py GENERATOR OUT_STORE --seed N
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.generator.synthesize import SynthesizeConfig, synthesize_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("generator")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True, help="noise draws (the ablation seed)")
    a = ap.parse_args()
    synthesize_store(a.generator, replace(stage.section("synthesize", SynthesizeConfig), seed=a.seed), a.out)


if __name__ == "__main__":
    stage.run(main)
