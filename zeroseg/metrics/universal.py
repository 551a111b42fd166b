"""One model's three predictions scored together: panoptic (PQ/SQ/RQ, panopticapi rules),
instance (things: COCOeval segm AP@0.5 and Recall@100 at IoU 0.5 on the overlapping
detections of Mask2Former's instance rule) and semantic (mIoU, detectron2's definition, on
the map of Mask2Former's semantic rule), each seen / unseen / HM.

Instance and semantic scores are computed only from instance and semantic predictions:
they are never derived from the panoptic output (one non-overlapping segment per query
under-states AP and recall several-fold and is not the paper's protocol)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zeroseg.atomic import read_json
from zeroseg.data.classes import unseen_ids_of
from zeroseg.data.instances import load_instances, segments_to_instances
from zeroseg.data.panoptic import Category, PanopticDataset, load_panoptic
from zeroseg.errors import DataError
from zeroseg.metrics.instance import instance_metrics
from zeroseg.metrics.panoptic import PanopticEvaluator, iter_panoptic_pairs
from zeroseg.metrics.semantic import IGNORE, SemanticEvaluator

TASKS = ("panoptic", "instance", "semantic")


class UniversalEvaluator:
    """Feed (ground truth, prediction) pairs with :meth:`add`; read :meth:`metrics`.

    A task is scored when every image brought its prediction for it (panoptic always)."""

    def __init__(self, categories: dict[int, Category], unseen_ids: set[int] | None = None,
                 instances_gt: dict[str, Any] | None = None) -> None:
        """``instances_gt``: an official COCO instances dict to score mAP/R@100 against (ZSI:
        overlapping, unoccluded masks); by default the thing segments of the panoptic ground truth."""
        self.categories = categories
        self.instances_gt = instances_gt
        self.unseen_ids = unseen_ids
        self.panoptic = PanopticEvaluator(categories, unseen_ids)
        self.class_ids = sorted(categories)
        self._index = {c: i for i, c in enumerate(self.class_ids)}
        self._lut = np.full(max(self.class_ids, default=0) + 1, -2, np.int64)  # category id -> index; -2 unknown
        self._lut[self.class_ids] = np.arange(len(self.class_ids))
        self._lut[0] = IGNORE
        self.semantic = SemanticEvaluator(self.class_ids, unseen_ids)
        self.thing_ids = {c for c, cat in categories.items() if cat.isthing}
        self.images: list[dict[str, int]] = []
        self.gt_instances: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.counts = dict.fromkeys(TASKS, 0)

    @classmethod
    def for_ground_truth(cls, gt: PanopticDataset, unseen_ids: set[int] | None,
                         instances_gt: str | os.PathLike | None = None) -> UniversalEvaluator:
        """An evaluator for a loaded panoptic ground truth; ``instances_gt`` names an optional
        COCO instances JSON (checked on reading) for mAP/R@100."""
        return cls(gt.categories, unseen_ids, load_instances(instances_gt) if instances_gt else None)

    def semantic_index(self, category_ids: np.ndarray, where: str) -> np.ndarray:
        """(H, W) category ids (0 = no prediction / VOID) -> contiguous indices (IGNORE for 0)."""
        bad = (category_ids < 0) | (category_ids >= len(self._lut))
        idx = self._lut[np.where(bad, 0, category_ids)]
        bad |= idx == -2
        if bad.any():
            raise DataError(f"{where}: unknown category id(s) {sorted(set(category_ids[bad].tolist()))[:5]}")
        return idx

    def add(self, image_id: int, gt_ids: np.ndarray, gt_segments: list[dict], pred_ids: np.ndarray,
            pred_segments: list[dict], semantic: np.ndarray | None = None,
            instances: list[dict[str, Any]] | None = None) -> None:
        """gt_ids, pred_ids: (H, W) segment ids, 0 = VOID; segments: their segments_info;
        ``semantic``: (H, W) predicted category ids (0 = none); ``instances``: the image's
        detections as COCO results (RLE ``segmentation``, ``score``; they may overlap)."""
        g, _ = self.panoptic.add(image_id, gt_ids, gt_segments, pred_ids, pred_segments)
        self.counts["panoptic"] += 1
        h, w = gt_ids.shape
        self.images.append({"id": image_id, "height": h, "width": w})
        if self.instances_gt is None:
            self.gt_instances += segments_to_instances(image_id, gt_ids, gt_segments, self.thing_ids)
        if semantic is not None:
            if semantic.shape != gt_ids.shape:
                raise DataError(f"image {image_id}: semantic prediction is {semantic.shape[1]}x{semantic.shape[0]} "
                                f"but ground truth is {w}x{h} (width x height)")
            gt_sem = np.array([IGNORE] + [self._index[s["category_id"]] for s in gt_segments], np.int64)[g]
            self.semantic.add(gt_sem, self.semantic_index(semantic, f"image {image_id} semantic prediction"))
            self.counts["semantic"] += 1
        if instances is not None:
            for i, r in enumerate(instances):
                if r.get("image_id") != image_id:
                    raise DataError(f"image {image_id}: detection [{i}] has image_id {r.get('image_id')}")
            self.results += instances
            self.counts["instance"] += 1

    def instance_ground_truth(self) -> dict[str, Any]:
        if self.instances_gt is not None:
            return self.instances_gt
        anns = [dict(a, id=i) for i, a in enumerate(self.gt_instances, start=1)]
        cats = [{"id": c, "name": self.categories[c].name} for c in sorted(self.thing_ids)]
        return {"images": self.images, "annotations": anns, "categories": cats}

    def scored(self, task: str) -> bool:
        """True when every image brought a ``task`` prediction; an error when only some did."""
        n, total = self.counts[task], self.counts["panoptic"]
        if 0 < n < total:
            raise DataError(f"{task} predictions for {n} of {total} images: give them for every image or none")
        return n > 0 and n == total

    def metrics(self) -> dict[str, float | None]:
        """Flat keys: pq/sq/rq (+_things/_stuff/_seen/_unseen/_hm); with instance predictions
        map50, r100 (+ splits); with semantic predictions miou (+ splits) and pixel_acc."""
        out = dict(self.panoptic.result().flat())
        if self.scored("instance"):
            out.update(instance_metrics(self.instance_ground_truth(), self.results, self.unseen_ids))
        if self.scored("semantic"):
            out.update(self.semantic.metrics())
        return out


def read_semantic_png(path: Path, image_id: int) -> np.ndarray:
    """A semantic prediction PNG (8- or 16-bit grey, pixel = category id, 0 = none) -> (H, W) int64."""
    if not path.exists():
        raise DataError(f"{path}: semantic prediction for image {image_id} missing")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "I;16", "I"):
                raise DataError(f"{path}: semantic prediction must be a grey PNG of category ids, got mode {im.mode}")
            return np.asarray(im).astype(np.int64)
    except OSError as exc:
        raise DataError(f"{path}: unreadable semantic prediction PNG ({exc})") from exc


def results_by_image(results_json: str | os.PathLike) -> dict[int, list[dict[str, Any]]]:
    """A COCO results JSON (list of detections with RLE ``segmentation``) grouped by image id."""
    raw = read_json(results_json, "COCO results file")
    if not isinstance(raw, list):
        raise DataError(f"{results_json}: COCO results must be a JSON list of detections")
    out: dict[int, list[dict[str, Any]]] = {}
    for i, r in enumerate(raw):
        for key in ("image_id", "category_id", "segmentation", "score"):
            if key not in r:
                raise DataError(f"{results_json}: detection [{i}] has no field '{key}'")
        out.setdefault(r["image_id"], []).append(r)
    return out


def evaluate_files(gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_json: str | os.PathLike,
                   pred_dir: str | os.PathLike, unseen: str | None = None,
                   instances_gt: str | os.PathLike | None = None, semantic_dir: str | os.PathLike | None = None,
                   instances_json: str | os.PathLike | None = None) -> tuple[dict[str, float | None], list[dict]]:
    """Score prediction files: a COCO panoptic folder (PQ), and optionally a folder of semantic
    PNGs named like the panoptic PNGs (mIoU) and a COCO results JSON of overlapping instances
    (mAP@0.5, R@100), as ``zeroseg predict`` writes them. Returns (flat metrics, PQ table)."""
    gt = load_panoptic(gt_json)
    ev = UniversalEvaluator.for_ground_truth(gt, unseen_ids_of(gt.categories, unseen, gt_json), instances_gt)
    dets = results_by_image(instances_json) if instances_json else None
    if dets is not None and set(dets) - set(gt.annotations):
        raise DataError(f"{instances_json}: image_id(s) {sorted(set(dets) - set(gt.annotations))[:5]} are not in "
                        f"{gt_json}")
    for iid, g, gs, p, ps, name in iter_panoptic_pairs(gt, gt_dir, pred_json, pred_dir):
        sem = read_semantic_png(Path(semantic_dir) / name, iid) if semantic_dir else None
        ev.add(iid, g, gs, p, ps, sem, None if dets is None else dets.get(iid, []))
    return ev.metrics(), ev.panoptic.result().table()
