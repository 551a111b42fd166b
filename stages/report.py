"""Stage report: the ablation rows (params `baselines` and `generators`) over the ablation seeds (params `seeds`) ->
metrics/zero_shot.json (HM per task, the seen–unseen curve's area and the feature-level HM,
mean/std, e.g. pading.pq_hm.mean), the full tables as JSON and markdown (every cell, mean ± std;
the unseen-class diagnostics of the generator rows, params `generators`), and the pictures
(params sections `report` and `inference`; seed: the first).

cmd: python stages/report.py METRICS_DIR PER_CLASS_DIR CURVES_DIR FIDELITY_DIR DIAGNOSTICS_DIR HEADS_DIR
       SYNTHETIC_DIR SEEN_STORE UNSEEN_STORE VAL_STORE VAL_JSON VAL_IMAGES SPLIT_ALL_JSON
       OUT_JSON OUT_FULL_JSON OUT_MD PLOTS_DIR
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import atomic_outputs
from zeroseg.evaluate.score import InferenceConfig
from zeroseg.report import ReportConfig, collect, make_pictures, write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("metrics_dir", "per_class_dir", "curves_dir", "fidelity_dir", "diagnostics_dir", "heads_dir",
                 "synthetic_dir", "seen_store", "unseen_store", "val_store", "val_json", "val_images", "split_all_json",
                 "out_json", "out_full_json", "out_md", "plots_dir"):
        ap.add_argument(name)
    a = ap.parse_args()
    seeds, cfg = stage.seeds(), stage.section("report", ReportConfig)
    rows, generators = stage.rows()
    inference = stage.section("inference", InferenceConfig)
    collect(a.metrics_dir, rows, seeds, a.fidelity_dir, generators)  # missing or unknown rows fail before the pictures
    # every output committed together, the headline metric last: an interrupted report leaves
    # each output absent or complete, never a new metric beside an old picture (or the reverse)
    with atomic_outputs() as outs:
        make_pictures(cfg, a.per_class_dir, a.heads_dir, a.synthetic_dir, a.seen_store, a.val_store, a.val_json,
                      a.val_images, a.split_all_json, a.plots_dir, seeds[0], outs, a.unseen_store, a.curves_dir,
                      a.metrics_dir, rows, inference)
        write_report(a.metrics_dir, rows, seeds, a.out_json, a.out_full_json, a.out_md, outs, a.fidelity_dir,
                     generators, a.diagnostics_dir)


if __name__ == "__main__":
    stage.run(main)
