"""Stage synthesize: generator checkpoint -> synthetic features of every class (feature store).

cmd: python stages/synthesize.py GENERATOR OUT_STORE
"""

import argparse

from zeroseg import stage
from zeroseg.generator.synthesize import SynthesizeConfig, synthesize_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("generator")
    ap.add_argument("out")
    a = ap.parse_args()
    synthesize_store(a.generator, stage.section("synthesize", SynthesizeConfig), a.out)


if __name__ == "__main__":
    stage.run(main)
