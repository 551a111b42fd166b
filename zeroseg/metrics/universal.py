"""One panoptic prediction scored on all three tasks: panoptic (PQ/SQ/RQ), instance
(things: mAP@0.5, R@100 from the predicted thing segments and their scores) and semantic
(mIoU from the per-pixel categories), each seen / unseen / HM."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from zeroseg.data.instances import load_instances
from zeroseg.data.panoptic import Category, PanopticDataset, load_panoptic
from zeroseg.metrics.instance import instance_metrics, segments_to_instances
from zeroseg.metrics.panoptic import PanopticEvaluator, iter_panoptic_pairs, unseen_ids_of
from zeroseg.metrics.semantic import IGNORE, SemanticEvaluator


class UniversalEvaluator:
    """Feed (ground truth, prediction) panoptic pairs with :meth:`add`; read :meth:`metrics`."""

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
        self.semantic = SemanticEvaluator(self.class_ids, unseen_ids)
        self.thing_ids = {c for c, cat in categories.items() if cat.isthing}
        self.images: list[dict[str, int]] = []
        self.gt_instances: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    @classmethod
    def for_ground_truth(cls, gt: PanopticDataset, unseen_ids: set[int] | None,
                         instances_gt: str | os.PathLike | None = None) -> UniversalEvaluator:
        """An evaluator for a loaded panoptic ground truth; ``instances_gt`` names an optional
        COCO instances JSON (checked on reading) for mAP/R@100."""
        return cls(gt.categories, unseen_ids, load_instances(instances_gt) if instances_gt else None)

    def _semantic(self, dense: np.ndarray, segments: list[dict]) -> np.ndarray:
        lut = np.array([IGNORE] + [self._index[s["category_id"]] for s in segments], np.int64)
        return lut[dense]

    def add(self, image_id: int, gt_ids: np.ndarray, gt_segments: list[dict],
            pred_ids: np.ndarray, pred_segments: list[dict]) -> None:
        """gt_ids, pred_ids: (H, W) segment ids, 0 = VOID; segments: segments_info lists
        (a predicted segment may carry a ``score`` used for instance ranking)."""
        g, p = self.panoptic.add(image_id, gt_ids, gt_segments, pred_ids, pred_segments)
        self.semantic.add(self._semantic(g, gt_segments), self._semantic(p, pred_segments))
        h, w = gt_ids.shape
        self.images.append({"id": image_id, "height": h, "width": w})
        if self.instances_gt is None:
            self.gt_instances += segments_to_instances(image_id, gt_ids, gt_segments, self.thing_ids, gt=True)
        self.results += segments_to_instances(image_id, pred_ids, pred_segments, self.thing_ids, gt=False)

    def instance_ground_truth(self) -> dict[str, Any]:
        if self.instances_gt is not None:
            return self.instances_gt
        anns = [dict(a, id=i) for i, a in enumerate(self.gt_instances, start=1)]
        cats = [{"id": c, "name": self.categories[c].name} for c in sorted(self.thing_ids)]
        return {"images": self.images, "annotations": anns, "categories": cats}

    def metrics(self) -> dict[str, float | None]:
        """Flat keys: pq/sq/rq (+_things/_stuff/_seen/_unseen/_hm), map50, r100, miou, pixel_acc."""
        out = dict(self.panoptic.result().flat())
        out.update(instance_metrics(self.instance_ground_truth(), self.results, self.unseen_ids))
        out.update(self.semantic.metrics())
        return out


def evaluate_files(gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_json: str | os.PathLike,
                   pred_dir: str | os.PathLike, unseen: str | None = None,
                   instances_gt: str | os.PathLike | None = None) -> tuple[dict[str, float | None], list[dict]]:
    """All three tasks from a COCO panoptic prediction folder. Returns (flat metrics, PQ table)."""
    gt = load_panoptic(gt_json)
    ev = UniversalEvaluator.for_ground_truth(gt, unseen_ids_of(gt.categories, unseen, gt_json), instances_gt)
    for iid, g, gs, p, ps in iter_panoptic_pairs(gt, gt_dir, pred_json, pred_dir):
        ev.add(iid, g, gs, p, ps)
    return ev.metrics(), ev.panoptic.result().table()
