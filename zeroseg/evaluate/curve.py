"""A head's seen–unseen PQ curve on the stored validation images (one pass over the store,
every offset of the grid scored on each image) and its area; the offsets and the area are
defined in :mod:`zeroseg.evaluate.calibration`."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from zeroseg.data.panoptic import load_panoptic, read_ids
from zeroseg.errors import DataError
from zeroseg.evaluate.calibration import ausuc, curve_offsets, offset_logits, seen_columns
from zeroseg.evaluate.heads import Head, stored_queries
from zeroseg.evaluate.inference import panoptic_inference
from zeroseg.features.store import FeatureStore
from zeroseg.metrics.panoptic import PanopticEvaluator


def seen_unseen_curve(store: FeatureStore, head: Head, gt_json: str | os.PathLike, gt_dir: str | os.PathLike,
                      unseen_ids: set[int], object_threshold: float = 0.5, overlap_threshold: float = 0.8,
                      points: int = 15, include: Iterable[float] = (0.0,)) -> pd.DataFrame:
    """The head's seen–unseen PQ curve on the stored validation images: one row per γ of
    :func:`curve_offsets` with ``offset, pq_seen, pq_unseen, pq_hm`` (panoptic rule only).

    One pass over the store: each image's masks are upsampled once and every γ of the grid is
    scored on them."""
    gt = load_panoptic(gt_json)
    seen = seen_columns(head.class_ids, unseen_ids)
    if not seen[:-1].any() or seen[:-1].all():
        raise DataError(f"{store.path}: the head has no {'seen' if not seen[:-1].any() else 'unseen'} class: no curve")
    all_logits = torch.cat([head.logits(torch.from_numpy(f)) for f, _ in store.iter_sequential()])
    grid = curve_offsets(all_logits, seen, points, object_threshold, include)
    evaluators = [PanopticEvaluator(gt.categories, unseen_ids) for _ in grid]
    done = set()
    for image_id, feats, mask_logits in stored_queries(store):
        ann = gt.annotations.get(image_id)
        if ann is None:
            raise DataError(f"{store.path}: image {image_id} is not in {gt_json}")
        g = read_ids(os.path.join(gt_dir, ann["file_name"]), "ground-truth", image_id)
        logits, mask_probs = head.logits(feats), mask_logits.sigmoid()
        for gamma, ev in zip(grid, evaluators):
            probs = offset_logits(logits, seen, gamma).softmax(-1)
            ids, segs = panoptic_inference(probs, mask_logits, head.class_ids, head.isthing, object_threshold,
                                           overlap_threshold, mask_probs)
            ev.add(image_id, g, ann["segments_info"], ids.astype(np.uint32), segs)
        done.add(image_id)
    missing = set(gt.annotations) - done
    if missing:
        raise DataError(f"{store.path}: no stored masks for {len(missing)} ground-truth images, e.g. {sorted(missing)[:3]}")
    rows = []
    for gamma, ev in zip(grid, evaluators):
        flat = ev.result().flat()
        rows.append({"offset": gamma, "pq_seen": flat["pq_seen"] or 0.0, "pq_unseen": flat["pq_unseen"] or 0.0,
                     "pq_hm": flat["pq_hm"] or 0.0})
    return pd.DataFrame(rows)


def curve_metrics(curve: pd.DataFrame) -> dict[str, float]:
    """``ausuc`` of a curve table and its endpoints: the best seen PQ (γ = −∞ end) and the
    best unseen PQ (γ = +∞ end) a calibration of this head can reach, and the best HM on it."""
    return {"ausuc": ausuc(curve["pq_seen"], curve["pq_unseen"]), "curve_pq_seen_max": float(curve["pq_seen"].max()),
            "curve_pq_unseen_max": float(curve["pq_unseen"].max()), "curve_pq_hm_max": float(curve["pq_hm"].max())}
