"""Stage eval_segmenter: the segmenter's own seen head scored on the stored validation
features and masks (params section `inference`) -> the seen score of each task (METRICS_JSON,
the DVC metric) and every flat key (FULL_JSON).

cmd: python stages/eval_segmenter.py CHECKPOINT STORE GT_JSON GT_DIR SPLIT_CATEGORIES_JSON METRICS_JSON FULL_JSON
       [--instances-gt INSTANCES_JSON]
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import atomic_outputs, json_text
from zeroseg.evaluate.inference import InferenceConfig
from zeroseg.evaluate.score import evaluate_segmenter

#: what `dvc exp show` compares: the segmenter alone predicts seen classes only
HEADLINE = ("pq_seen", "map50_seen", "miou_seen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("checkpoint", "store", "gt_json", "gt_dir", "split_categories_json", "metrics_json", "full_json"):
        ap.add_argument(name)
    ap.add_argument("--instances-gt", help="COCO instances JSON for mAP/R@100 (default: the panoptic things)")
    a = ap.parse_args()
    flat = evaluate_segmenter(a.checkpoint, a.store, a.gt_json, a.gt_dir, a.split_categories_json,
                              stage.section("inference", InferenceConfig), a.instances_gt)
    with atomic_outputs() as outs:  # both or neither; the headline metric last
        with outs.file(a.full_json) as tmp:
            tmp.write_text(json_text({f"segmenter.{k}": v for k, v in flat.items()}))
        with outs.file(a.metrics_json) as tmp:
            tmp.write_text(json_text({f"segmenter.{k}": flat.get(k) for k in HEADLINE}))


if __name__ == "__main__":
    stage.run(main)
