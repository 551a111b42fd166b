"""Universal predictions (Mask2Former's panoptic, instance and semantic rules on the same
per-query outputs) and their scores from a feature store with masks and a linear class
head: re-classifying never re-runs the backbone."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zeroseg.data.panoptic import load_panoptic, read_ids
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import FeatureStore
from zeroseg.evaluate.calibration import offset_logits, seen_columns
from zeroseg.evaluate.inference import UniversalPrediction, universal_inference, upsample_masks
from zeroseg.data.instances import encode_masks
from zeroseg.data.classes import unseen_from_split
from zeroseg.head.model import Head, segmenter_head
from zeroseg.metrics.universal import UniversalEvaluator


@dataclass(frozen=True)
class InferenceConfig:
    """params.yaml section ``inference``: Mask2Former's post-processing."""

    object_threshold: float = 0.5  # panoptic: keep a query when its best class probability exceeds this
    overlap_threshold: float = 0.8  # panoptic: drop a segment when less than this share of its mask survives
    instance_topk: int = 100  # instance: (query, class) pairs kept per image (Mask2Former's test_topk_per_image)
    seen_offset: float = 0.0  # γ: lowered seen-class logits (< 0: unseen ones), see zeroseg.evaluate.calibration
    curve_points: int = 15  # γ values of each head's seen–unseen curve (quantiles of the flip offsets) + ends

    def __post_init__(self) -> None:
        if self.instance_topk < 1:
            raise ConfigError(f"inference.instance_topk: at least 1, got {self.instance_topk}")
        if not math.isfinite(self.seen_offset):
            raise ConfigError(f"inference.seen_offset: a finite number, got {self.seen_offset}")
        if self.curve_points < 0:
            raise ConfigError(f"inference.curve_points: 0 or more, got {self.curve_points}")

    def predict(self, head: "Head", feats: torch.Tensor, mask_logits: torch.Tensor,
                unseen_ids: set[int] | frozenset[int] = frozenset()) -> UniversalPrediction:
        """(Q, D) query features, (Q, H, W) mask logits -> the three rules' outputs; the seen
        offset applies to heads with both seen and unseen outputs (``unseen_ids``)."""
        return self.predict_logits(head, head.logits(feats), mask_logits, unseen_ids)

    def predict_logits(self, head: "Head", logits: torch.Tensor, mask_logits: torch.Tensor,
                       unseen_ids: set[int] | frozenset[int] = frozenset(),
                       mask_probs: torch.Tensor | None = None) -> UniversalPrediction:
        """:meth:`predict` from the head's (Q, K + 1) logits (and the masks' sigmoid, if computed)."""
        probs = offset_logits(logits, seen_columns(head.class_ids, unseen_ids), self.seen_offset).softmax(-1)
        return universal_inference(probs, mask_logits, head.class_ids, head.isthing,
                                   self.object_threshold, self.overlap_threshold, self.instance_topk, mask_probs)


def stored_queries(store: FeatureStore, only: set[int] | None = None
                   ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(image_id, (Q, D) query features, (Q, H, W) mask logits at the original image size) for
    every image whose masks the store kept (or for the images in ``only``)."""
    image_size = int(store.meta["image_size"])
    groups = list(store.mask_shards())
    if not groups:
        raise DataError(f"{store.path}: the store has no masks (dump it with keep_masks)")
    row_of = {int(r.image_id): (r.shard, int(r.row_start), int(r.row_count)) for r in store.index.itertuples()}
    shard_groups = {s.name: s.group for s in store.shards}
    for g in groups:
        ids_ = g["mask_image_id"][:]
        valid, orig = g["valid"][:], g["orig_size"][:]
        for i, image_id in enumerate(ids_):
            if only is not None and int(image_id) not in only:
                continue
            shard, start, count = row_of[int(image_id)]
            feats = torch.from_numpy(shard_groups[shard]["features"][start:start + count].astype(np.float32))
            masks = torch.from_numpy(g["masks"][i].astype(np.float32))
            yield int(image_id), feats, upsample_masks(masks, image_size, tuple(valid[i]), tuple(orig[i]))


def predict_store(store: FeatureStore, head: Head, cfg: InferenceConfig = InferenceConfig(),
                  only: set[int] | None = None, unseen_ids: set[int] | frozenset[int] = frozenset()
                  ) -> Iterator[tuple[int, UniversalPrediction]]:
    """(image_id, its panoptic, instance and semantic predictions) for every image whose masks
    the store kept (or for the images in ``only``)."""
    for image_id, feats, logits in stored_queries(store, only):
        yield image_id, cfg.predict(head, feats, logits, unseen_ids)


def gt_queries(store: FeatureStore, gt, gt_json: str | os.PathLike, gt_dir: str | os.PathLike
               ) -> Iterator[tuple[int, np.ndarray, dict, torch.Tensor, torch.Tensor]]:
    """(image_id, ground-truth segment ids, its annotation, (Q, D) features, (Q, H, W) mask logits)
    for every stored image; every ground-truth image must be stored, every stored one annotated."""
    done = set()
    for image_id, feats, mask_logits in stored_queries(store):
        ann = gt.annotations.get(image_id)
        if ann is None:
            raise DataError(f"{store.path}: image {image_id} is not in {gt_json}")
        yield image_id, read_ids(Path(gt_dir) / ann["file_name"], "ground-truth", image_id), ann, feats, mask_logits
        done.add(image_id)
    missing = set(gt.annotations) - done
    if missing:
        raise DataError(f"{store.path}: no stored masks for {len(missing)} ground-truth images, e.g. {sorted(missing)[:3]}")


def evaluate_head(store: FeatureStore, head: Head, gt_json: str | os.PathLike, gt_dir: str | os.PathLike,
                  unseen_ids: set[int] | None, cfg: InferenceConfig = InferenceConfig(),
                  instances_gt: str | os.PathLike | None = None, curve: bool = False
                  ) -> tuple[dict, list[dict], pd.DataFrame | None]:
    """Universal metrics (flat) and the PQ per-class table of ``head`` on the stored images;
    ``instances_gt`` (a COCO instances JSON) replaces the panoptic things as the mAP ground truth.
    With ``curve``, the head's seen–unseen PQ curve (``cfg.curve_points`` offsets + the table's
    γ + both ends) is scored in the same pass; else the third value is None."""
    from zeroseg.evaluate.curve import CurveScorer

    gt = load_panoptic(gt_json)
    ev = UniversalEvaluator.for_ground_truth(gt, unseen_ids, instances_gt)
    scorer = None
    if curve:
        scorer = CurveScorer(store, head, gt, unseen_ids or set(), cfg.object_threshold, cfg.overlap_threshold,
                             cfg.curve_points, include=(cfg.seen_offset,))
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
