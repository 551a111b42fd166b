"""Semantic segmentation: mIoU and pixel accuracy from a confusion matrix, seen/unseen/HM.

Pixels labelled ``ignore`` in the ground truth are excluded. A class counts in a mean
only where it has ground-truth pixels. A prediction of "nothing" (VOID) is a column of
its own: it costs the ground-truth class recall but is no class's false positive.
"""

from __future__ import annotations

import numpy as np

from zeroseg.metrics.summary import split_summary

IGNORE = -1


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
        tp = np.diag(self.conf[:, : self.C])
        gt = self.conf.sum(1)
        pred = self.conf[:, : self.C].sum(0)
        out = {}
        for k in np.nonzero(gt > 0)[0]:
            out[self.class_ids[k]] = float(tp[k] / (gt[k] + pred[k] - tp[k]))
        return out

    def metrics(self) -> dict[str, float | None]:
        """Flat keys ``miou`` (+ ``_seen``, ``_unseen``, ``_hm``) and ``pixel_acc``."""
        total = self.conf.sum()
        out = split_summary("miou", self.per_class_iou(), self.unseen_ids)
        out["pixel_acc"] = float(np.trace(self.conf[:, : self.C]) / total) if total else None
        return out
