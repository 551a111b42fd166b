"""Stage prepare (COCO pipelines): the official COCO files named in params section `prepare`
-> the uniform panoptic layout later stages read (see zeroseg.data.prepare).

cmd: python stages/prepare.py OUT_DIR METRICS_JSON
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import atomic_outputs, json_text
from zeroseg.data.prepare import PrepareConfig, prepare_coco


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("metrics_json")
    a = ap.parse_args()
    cfg = stage.section("prepare", PrepareConfig)
    with atomic_outputs() as outs:  # the folder and its metrics together, the metrics last
        with outs.dir(a.out_dir) as tmp:
            res = prepare_coco(cfg, tmp)
        with outs.file(a.metrics_json) as tmp:
            tmp.write_text(json_text({f"prepare.{k}": v for k, v in res.metrics().items()}))


if __name__ == "__main__":
    stage.run(main)
