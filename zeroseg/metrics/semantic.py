"""Semantic segmentation: mIoU and pixel accuracy from a confusion matrix, seen/unseen/HM.

The definition of detectron2's ``SemSegEvaluator`` (and ZegFormer's generalised evaluator,
which PADing uses): pixels labelled ``ignore`` in the ground truth are excluded; a class
enters a mean when it has ground-truth OR predicted pixels (on non-ignored pixels), and a
class that is only predicted scores IoU 0 — so mIoU = Σ IoU over classes with ground truth /
number of classes with ground truth or predictions. Seen and unseen means apply the same
rule to their own classes. A prediction of "nothing" (VOID; Mask2Former's semantic rule
never makes one) is a column of its own: it costs the ground-truth class recall but is no
class's false positive.
"""

from __future__ import annotations

import numpy as np

from zeroseg.metrics.summary import split_summary

IGNORE = -1  # the one ignore label of the evaluators: GT VOID and "no prediction" pixels


class SemanticEvaluator:
    """Accumulates a (C, C + 1) confusion matrix over contiguous class indices 0..C-1.

    ``class_ids``: category id of each index; ``unseen_ids``: category ids of unseen classes.
    """

    def __init__(self, class_ids: list[int], unseen_ids: set[int] | None = None) -> None:
        self.class_ids = list(class_ids)
        self.unseen_ids = unseen_ids
        self.C = len(class_ids)
        self.conf = np.zeros((self.C, self.C + 1), np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """gt: (H, W) int class indices or IGNORE; pred: (H, W) int indices or IGNORE (= no prediction)."""
        if gt.shape != pred.shape:
            raise ValueError(f"semantic maps differ in size: gt {gt.shape}, pred {pred.shape}")
        valid = gt != IGNORE
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        p[p == IGNORE] = self.C
        self.conf += np.bincount(g * (self.C + 1) + p, minlength=self.C * (self.C + 1)).reshape(self.C, self.C + 1)

    def per_class_iou(self) -> dict[int, float]:
        """IoU of every class with ground-truth or predicted pixels (predicted only: 0)."""
        tp = np.diag(self.conf[:, : self.C])
        gt = self.conf.sum(1)
        pred = self.conf[:, : self.C].sum(0)
        return {self.class_ids[k]: float(tp[k] / (gt[k] + pred[k] - tp[k])) for k in np.nonzero((gt + pred) > 0)[0]}

    def metrics(self) -> dict[str, float | None]:
        """Flat keys ``miou`` (+ ``_seen``, ``_unseen``, ``_hm``) and ``pixel_acc``."""
        total = self.conf.sum()
        out = split_summary("miou", self.per_class_iou(), self.unseen_ids)
        out["pixel_acc"] = float(np.trace(self.conf[:, : self.C]) / total) if total else None
        return out
