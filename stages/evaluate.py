"""Stage evaluate: ONE model (segmenter masks + a class head) scored on all three tasks on the
stored validation features and masks (params section `inference`).

cmd: python stages/evaluate.py HEAD VAL_STORE GT_JSON GT_DIR SPLIT_ALL_JSON METRICS_JSON PER_CLASS_PARQUET
       [--instances-gt INSTANCES_JSON]
"""

import argparse

import pandas as pd

from zeroseg import stage
from zeroseg.atomic import atomic_outputs, json_text
from zeroseg.evaluate.heads import InferenceConfig, evaluate_head, unseen_from_split
from zeroseg.features.store import FeatureStore
from zeroseg.generator.classifier import load_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("head", "val_store", "gt_json", "gt_dir", "split_all_json", "metrics_json", "per_class"):
        ap.add_argument(name)
    ap.add_argument("--instances-gt", help="COCO instances JSON for mAP/R@100 (default: the panoptic things)")
    a = ap.parse_args()
    flat, table = evaluate_head(FeatureStore(a.val_store), load_head(a.head), a.gt_json, a.gt_dir,
                                unseen_from_split(a.split_all_json), stage.section("inference", InferenceConfig), a.instances_gt)
    with atomic_outputs() as outs:  # both or neither: report reads them together; the metric last
        with outs.file(a.per_class) as tmp:
            pd.DataFrame(table).to_parquet(tmp, index=False)
        with outs.file(a.metrics_json) as tmp:
            tmp.write_text(json_text(flat))


if __name__ == "__main__":
    stage.run(main)
