"""Stage report: the ablation rows (params `baselines` and `generators`) over the ablation seeds (params `seeds`) ->
metrics/zero_shot.json (HM per task, the seen–unseen curve's area and the feature-level HM,
mean/std, e.g. pading.pq_hm.mean), the full tables as JSON and markdown (every cell, mean ± std;
the unseen-class diagnostics of the generator rows, params `generators`), and the pictures
(params sections `report` and `inference`; seed: the first).

cmd: python stages/report.py --metrics-dir DIR --per-class-dir DIR ... (one option per field of
       zeroseg.report.ReportInputs; all required but --ceilings-dir and --segmenter-dir)
       --headline-json FILE --full-json FILE --markdown FILE
       --plots-dir DIR
"""

import argparse
from dataclasses import fields

from zeroseg import stage
from zeroseg.atomic import atomic_outputs
from zeroseg.evaluate.inference import InferenceConfig
from zeroseg.report import Ablation, ReportConfig, ReportInputs, ReportOutputs, collect, make_pictures, write_report

#: inputs of a pipeline that trains one segmenter per seed (the root): the COCO pipelines have one
OPTIONAL = ("ceilings_dir", "segmenter_dir")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for f in fields(ReportInputs) + fields(ReportOutputs):
        ap.add_argument(_option(f.name), dest=f.name, required=f.name not in OPTIONAL)
    ap.add_argument("--plots-dir", required=True)
    a = vars(ap.parse_args())
    run = ReportInputs(**{f.name: a[f.name] for f in fields(ReportInputs)})
    out = ReportOutputs(**{f.name: a[f.name] for f in fields(ReportOutputs)})
    rows, generators = stage.rows()
    ablation = Ablation(rows, stage.seeds(), generators)
    cfg, inference = stage.section("report", ReportConfig), stage.section("inference", InferenceConfig)
    collect(run, ablation)  # missing or unknown rows fail before the pictures
    # every output committed together, the headline metric last: an interrupted report leaves
    # each output absent or complete, never a new metric beside an old picture (or the reverse)
    with atomic_outputs() as outs:
        make_pictures(cfg, run, ablation, a["plots_dir"], outs, inference)
        write_report(run, ablation, out, outs)


if __name__ == "__main__":
    stage.run(main)
