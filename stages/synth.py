"""Stage synth: params section `synth` -> the embedded benchmark folder (COCO panoptic format).

cmd: python stages/synth.py OUT_DIR
"""

import argparse

from zeroseg import stage
from zeroseg.synth import SynthConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out_dir")
    args = ap.parse_args()
    generate(stage.section("synth", SynthConfig), args.out_dir)


if __name__ == "__main__":
    stage.run(main)
