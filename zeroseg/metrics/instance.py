"""Instance segmentation (thing classes): mask mAP@0.5 and Recall@100 at IoU 0.5,
seen / unseen / HM. pycocotools' COCOeval does all the COCO matching; we only read its
per-class precision and recall arrays at IoU 0.5.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from zeroseg.atomic import read_json
from zeroseg.errors import DataError
from zeroseg.metrics.summary import split_summary


def _coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval_segm(gt: dict[str, Any], results: list[dict[str, Any]]) -> COCOeval:
    """Run pycocotools' segm COCOeval (quietly) on an instances GT dict and a results list."""
    cgt = _coco(gt)
    known = {im["id"] for im in gt["images"]}
    for i, r in enumerate(results):
        if r.get("image_id") not in known:
            raise DataError(f"results[{i}]: image_id {r.get('image_id')} is not in the ground truth")
        if r.get("category_id") not in cgt.cats:
            raise DataError(f"results[{i}] (image {r['image_id']}): unknown category_id {r.get('category_id')}")
    with contextlib.redirect_stdout(io.StringIO()):
        cdt = cgt.loadRes(results) if results else _coco({"images": gt["images"], "categories": gt["categories"],
                                                          "annotations": []})
        ev = COCOeval(cgt, cdt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap50_r100(ev: COCOeval) -> tuple[dict[int, float], dict[int, float]]:
    """Per category id: AP at IoU 0.5 (area all, 100 dets) and recall at IoU 0.5 with 100
    detections; classes without ground truth (COCOeval's -1) are left out."""
    t = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    a = ev.params.areaRngLbl.index("all")
    d = ev.params.maxDets.index(100)
    prec, rec = ev.eval["precision"], ev.eval["recall"]
    ap, r = {}, {}
    for k, cid in enumerate(ev.params.catIds):
        p = prec[t, :, k, a, d]
        p = p[p > -1]
        if p.size:
            ap[int(cid)] = float(np.mean(p))
        if rec[t, k, a, d] > -1:
            r[int(cid)] = float(rec[t, k, a, d])
    return ap, r


def instance_metrics(gt: dict[str, Any], results: list[dict[str, Any]],
                     unseen_ids: set[int] | None) -> dict[str, float | None]:
    """Flat keys ``map50``, ``r100`` (+ ``_seen``, ``_unseen``, ``_hm`` with a split)."""
    ap, rec = per_class_ap50_r100(coco_eval_segm(gt, results))
    return {**split_summary("map50", ap, unseen_ids), **split_summary("r100", rec, unseen_ids)}


def instance_files(gt_json: str | os.PathLike, results_json: str | os.PathLike,
                   unseen_ids: set[int] | None) -> dict[str, float | None]:
    """COCO instances GT JSON + COCO results JSON (RLE masks) -> flat metrics."""
    gt, res = read_json(gt_json, "COCO instances file"), read_json(results_json, "COCO results file")
    if not isinstance(res, list):
        raise DataError(f"{results_json}: COCO results must be a JSON list of detections")
    return instance_metrics(gt, res, unseen_ids)
