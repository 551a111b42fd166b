"""Stage evaluate: ONE model (segmenter masks + a class head) scored on all three tasks on the
stored validation features and masks (params section `inference`), and the head's seen–unseen
PQ curve over the seen offset γ with its area (ausuc, in the metrics).

cmd: python stages/evaluate.py HEAD VAL_STORE GT_JSON GT_DIR SPLIT_ALL_JSON METRICS_JSON PER_CLASS_PARQUET
       CURVE_PARQUET [--instances-gt INSTANCES_JSON]
"""

import argparse

import pandas as pd

from zeroseg import stage
from zeroseg.data.classes import unseen_from_split
from zeroseg.evaluate.curve import curve_metrics
from zeroseg.evaluate.inference import InferenceConfig
from zeroseg.evaluate.score import evaluate_head
from zeroseg.features.store import FeatureStore
from zeroseg.head.model import load_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("head", "val_store", "gt_json", "gt_dir", "split_all_json", "metrics_json", "per_class", "curve"):
        ap.add_argument(name)
    ap.add_argument("--instances-gt", help="COCO instances JSON for mAP/R@100 (default: the panoptic things)")
    a = ap.parse_args()
    cfg, store, head = stage.section("inference", InferenceConfig), FeatureStore(a.val_store), load_head(a.head)
    unseen = unseen_from_split(a.split_all_json)
    flat, table, curve = evaluate_head(store, head, a.gt_json, a.gt_dir, unseen, cfg, a.instances_gt, curve=True)
    flat.update(curve_metrics(curve))
    stage.write_tables_and_metric({a.per_class: pd.DataFrame(table), a.curve: curve}, a.metrics_json, flat)


if __name__ == "__main__":
    stage.run(main)
