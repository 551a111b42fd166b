"""A head's seen–unseen PQ curve on the stored validation images (every offset of the grid
scored on each image, in the same pass over the store as the main evaluation) and its area;
the offsets and the area are defined in :mod:`zeroseg.evaluate.calibration`."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from zeroseg.data.panoptic import PanopticDataset, load_panoptic
from zeroseg.errors import DataError
from zeroseg.evaluate.calibration import ausuc, curve_offsets, seen_columns
from zeroseg.evaluate.inference import InferenceConfig
from zeroseg.evaluate.queries import gt_queries
from zeroseg.features.store import FeatureStore
from zeroseg.head.model import Head
from zeroseg.metrics.panoptic import PanopticEvaluator


class CurveScorer:
    """A head's seen–unseen PQ curve, scored image by image beside the main evaluation (one pass
    over the store: :func:`zeroseg.evaluate.score.evaluate_head` hands each image's logits and
    upsampled masks to :meth:`add`). The γ grid is :func:`curve_offsets` of the head's logits
    on every stored query (no labels): ``cfg.curve_points`` quantiles, the table's γ
    (``cfg.seen_offset``), the ``include`` values and both ends. Each γ's panoptic prediction comes
    from the table's entry, ``cfg.predict_logits`` (panoptic rule only)."""

    def __init__(self, store: FeatureStore, head: Head, gt: PanopticDataset, unseen_ids: set[int],
                 cfg: InferenceConfig = InferenceConfig(), include: Iterable[float] = ()) -> None:
        self.seen = seen_columns(head.class_ids, unseen_ids)
        if not self.seen[:-1].any() or self.seen[:-1].all():
            raise DataError(f"{store.path}: the head has no {'seen' if not self.seen[:-1].any() else 'unseen'} class: "
                            "no curve")
        all_logits = torch.cat([head.logits(torch.from_numpy(f)) for f, _ in store.iter_sequential()])
        self.grid = curve_offsets(all_logits, self.seen, cfg.curve_points, cfg.object_threshold,
                                  (cfg.seen_offset, *include))
        self.evaluators = [PanopticEvaluator(gt.categories, unseen_ids) for _ in self.grid]
        self.head, self.unseen, self.cfg = head, unseen_ids, cfg

    def add(self, image_id: int, gt_ids: np.ndarray, segments_info: list[dict], logits: torch.Tensor,
            mask_logits: torch.Tensor, mask_probs: torch.Tensor) -> None:
        """One image: (Q, K + 1) logits, (Q, H, W) mask logits and their sigmoid."""
        for gamma, ev in zip(self.grid, self.evaluators):
            pred = self.cfg.predict_logits(self.head, logits, mask_logits, self.unseen, mask_probs, offset=gamma,
                                           also=())
            ev.add(image_id, gt_ids, segments_info, pred.panoptic_ids.astype(np.uint32), pred.panoptic_segments)

    def frame(self) -> pd.DataFrame:
        """One row per γ: ``offset, pq_seen, pq_unseen, pq_hm``."""
        rows = []
        for gamma, ev in zip(self.grid, self.evaluators):
            flat = ev.result().flat()
            rows.append({"offset": gamma, "pq_seen": flat["pq_seen"] or 0.0, "pq_unseen": flat["pq_unseen"] or 0.0,
                         "pq_hm": flat["pq_hm"] or 0.0})
        return pd.DataFrame(rows)


def seen_unseen_curve(store: FeatureStore, head: Head, gt_json: str | os.PathLike, gt_dir: str | os.PathLike,
                      unseen_ids: set[int], cfg: InferenceConfig = InferenceConfig(), include: Iterable[float] = ()
                      ) -> pd.DataFrame:
    """The head's seen–unseen PQ curve alone (panoptic rule only): one row per γ of
    :func:`curve_offsets` (see :class:`CurveScorer`) with ``offset, pq_seen, pq_unseen, pq_hm``."""
    gt = load_panoptic(gt_json)
    scorer = CurveScorer(store, head, gt, unseen_ids, cfg, include)
    for image_id, g, ann, feats, mask_logits in gt_queries(store, gt, gt_json, gt_dir):
        scorer.add(image_id, g, ann["segments_info"], head.logits(feats), mask_logits, mask_logits.sigmoid())
    return scorer.frame()


def curve_metrics(curve: pd.DataFrame) -> dict[str, float]:
    """``ausuc`` of a curve table and its endpoints: the best seen PQ (γ = −∞ end) and the
    best unseen PQ (γ = +∞ end) a calibration of this head can reach, and the best HM on it."""
    return {"ausuc": ausuc(curve["pq_seen"], curve["pq_unseen"]), "curve_pq_seen_max": float(curve["pq_seen"].max()),
            "curve_pq_unseen_max": float(curve["pq_unseen"].max()), "curve_pq_hm_max": float(curve["pq_hm"].max())}
