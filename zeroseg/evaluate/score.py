"""A class head scored on a feature store with masks: its universal predictions (Mask2Former's
panoptic, instance and semantic rules on the same per-query outputs, through
:meth:`~zeroseg.evaluate.inference.InferenceConfig.predict_logits`), their metrics and, in the
same pass, its seen–unseen curve; re-classifying never re-runs the backbone."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

import numpy as np
import pandas as pd

from zeroseg.data.classes import unseen_from_split
from zeroseg.data.instances import encode_masks
from zeroseg.data.panoptic import load_panoptic
from zeroseg.evaluate.curve import CurveScorer
from zeroseg.evaluate.inference import InferenceConfig, UniversalPrediction
from zeroseg.evaluate.queries import gt_queries, stored_queries
from zeroseg.features.store import FeatureStore
from zeroseg.head.model import Head, segmenter_head
from zeroseg.metrics.universal import UniversalEvaluator


def predict_store(store: FeatureStore, head: Head, cfg: InferenceConfig = InferenceConfig(),
                  only: set[int] | None = None, unseen_ids: Collection[int] = frozenset()
                  ) -> Iterator[tuple[int, UniversalPrediction]]:
    """(image_id, its panoptic, instance and semantic predictions) for every image whose masks
    the store kept (or for the images in ``only``)."""
    for image_id, feats, logits in stored_queries(store, only):
        yield image_id, cfg.predict(head, feats, logits, unseen_ids)


def evaluate_head(store: FeatureStore, head: Head, gt_json: str | os.PathLike, gt_dir: str | os.PathLike,
                  unseen_ids: set[int] | None, cfg: InferenceConfig = InferenceConfig(),
                  instances_gt: str | os.PathLike | None = None, curve: bool = False
                  ) -> tuple[dict, list[dict], pd.DataFrame | None]:
    """Universal metrics (flat) and the PQ per-class table of ``head`` on the stored images;
    ``instances_gt`` (a COCO instances JSON) replaces the panoptic things as the mAP ground truth.
    With ``curve``, the head's seen–unseen PQ curve (``cfg.curve_points`` offsets + the table's
    γ + both ends) is scored in the same pass; else the third value is None."""
    gt = load_panoptic(gt_json)
    ev = UniversalEvaluator.for_ground_truth(gt, unseen_ids, instances_gt)
    scorer = None
    if curve:
        scorer = CurveScorer(store, head, gt, unseen_ids or set(), cfg)
    unseen = unseen_ids or frozenset()
    for image_id, g, ann, feats, mask_logits in gt_queries(store, gt, gt_json, gt_dir):
        logits = head.logits(feats)
        mask_probs = mask_logits.sigmoid()
        pred = cfg.predict_logits(head, logits, mask_logits, unseen, mask_probs)
        ev.add(image_id, g, ann["segments_info"], pred.panoptic_ids.astype(np.uint32), pred.panoptic_segments,
               pred.semantic, coco_results(image_id, pred))
        if scorer is not None:
            scorer.add(image_id, g, ann["segments_info"], logits, mask_logits, mask_probs)
    return ev.metrics(), ev.panoptic.result().table(), (scorer.frame() if scorer is not None else None)


def coco_results(image_id: int, pred: UniversalPrediction) -> list[dict]:
    """The instance rule's detections of one image as COCO results (RLE masks, scores)."""
    inst = pred.instances
    return [{"image_id": image_id, "category_id": int(c), "segmentation": rle, "score": float(s)}
            for rle, c, s in zip(encode_masks(inst.masks), inst.category_ids, inst.scores)]


def evaluate_segmenter(checkpoint: str | os.PathLike, store: str | os.PathLike, gt_json: str | os.PathLike,
                       gt_dir: str | os.PathLike, split_categories_json: str | os.PathLike,
                       cfg: InferenceConfig = InferenceConfig(), instances_gt: str | os.PathLike | None = None) -> dict:
    """Universal metrics of the segmenter alone (it can only predict seen classes)."""
    flat, _, _ = evaluate_head(FeatureStore(store), segmenter_head(checkpoint), gt_json, gt_dir,
                            unseen_from_split(split_categories_json), cfg, instances_gt)
    return flat
