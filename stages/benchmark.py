"""Stage benchmark: params section `benchmark` -> the embedded benchmark folder (COCO panoptic format).

cmd: python stages/benchmark.py OUT_DIR
"""

import argparse

from zeroseg import stage
from zeroseg.benchmark import BenchmarkConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out_dir")
    args = ap.parse_args()
    generate(stage.section("benchmark", BenchmarkConfig), args.out_dir)


if __name__ == "__main__":
    stage.run(main)
