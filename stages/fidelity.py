"""Stage fidelity: the feature-level generalised zero-shot score of one generator row (params
section `fidelity`): a linear classifier on real seen + the row's synthetic unseen features,
tested on held-out real seen and real unseen features; MMD and placement per unseen class,
and where the row's head sends the real unseen queries.

cmd: python stages/fidelity.py SEEN_STORE UNSEEN_STORE SYNTHETIC_STORE HEAD SPLIT_ALL_JSON METRICS_JSON TABLE_PARQUET
       --seed N
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.data.panoptic import load_panoptic
from zeroseg.evaluate.fidelity import FidelityConfig, generator_fidelity
from zeroseg.head.model import load_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_store", "unseen_store", "synthetic_store", "head", "split_all_json", "metrics_json", "table"):
        ap.add_argument(name)
    ap.add_argument("--seed", type=int, required=True, help="hold-out and sampling (the ablation seed)")
    a = ap.parse_args()
    cfg = replace(stage.section("fidelity", FidelityConfig), seed=a.seed)
    names = {c: cat.name for c, cat in load_panoptic(a.split_all_json).categories.items()}
    flat, table = generator_fidelity(cfg, a.seen_store, a.unseen_store, a.synthetic_store, load_head(a.head), names)
    stage.write_tables_and_metric({a.table: table}, a.metrics_json, flat)


if __name__ == "__main__":
    stage.run(main)
