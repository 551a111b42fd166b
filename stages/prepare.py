"""Stage prepare (COCO pipelines): the official COCO files named in params section `prepare`
-> the uniform panoptic layout later stages read (see zeroseg.data.prepare).

cmd: python stages/prepare.py OUT_DIR METRICS_JSON
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import write_json
from zeroseg.data.prepare import PrepareConfig, prepare_coco


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("metrics_json")
    a = ap.parse_args()
    res = prepare_coco(stage.section("prepare", PrepareConfig), a.out_dir)
    write_json(a.metrics_json, {f"prepare.{k}": v for k, v in res.metrics().items()})


if __name__ == "__main__":
    stage.run(main)
