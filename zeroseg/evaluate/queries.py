"""The stored queries of a validation store, image by image: each image's (Q, D) query features
and (Q, H, W) mask logits at its original size (the segmenter's outputs, re-read without running
the backbone), alone or beside the image's ground truth. The table (:mod:`zeroseg.evaluate.score`)
and the seen–unseen curve (:mod:`zeroseg.evaluate.curve`) read them from here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from zeroseg.data.panoptic import PanopticDataset, read_ids
from zeroseg.errors import DataError
from zeroseg.evaluate.inference import upsample_masks
from zeroseg.features.store import FeatureStore


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


def gt_queries(store: FeatureStore, gt: PanopticDataset, gt_json: str | os.PathLike, gt_dir: str | os.PathLike
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
        raise DataError(f"{store.path}: no stored masks for {len(missing)} ground-truth images, e.g. "
                        f"{sorted(missing)[:3]}")
