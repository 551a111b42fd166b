"""Dump the per-query features of a trained segmenter to a feature store.

Every query of every image becomes one record: its decoder embedding (the vector the class
head reads), the category of the ground-truth segment it is Hungarian-matched to (training
cost; -1 = no object), its mask IoU with that segment, and its best seen-class score. With
``keep_masks`` the queries' mask logits are stored too, so later heads can be scored
without re-running the backbone.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from zeroseg.errors import ConfigError
from zeroseg.features.store import NO_OBJECT, VIEW_STRIDE, ShardWriter, finalize_store
from zeroseg.segmenter.data import Augment, PanopticSegments, collate
from zeroseg.segmenter.distributed import setup_distributed, teardown
from zeroseg.segmenter.matcher import MatchWeights, hungarian, mask_iou, match_cost
from zeroseg.segmenter.model import AMP_DTYPES, autocast, model_from_checkpoint, query_features


@dataclass(frozen=True)
class DumpConfig:
    """params.yaml section ``dump``."""

    batch_size: int = 16  # images per forward pass
    dtype: str = "float16"  # feature storage precision: float16 halves disk and I/O
    chunk_rows: int = 4096  # rows per Zarr chunk (sequential reads)
    mask_size: int = 0  # side of the stored validation mask logits; 0 = the model's (image_size / 4)
    amp: str = "off"  # mixed precision of the forward pass: off | bf16 | fp16 (features are stored as dtype)
    match_class_weight: float = 2.0  # class cost of the Hungarian matcher (Mask2Former training: 2; PADing: 5 pan/sem)
    augment_passes: int = 0  # extra passes of the images under the segmenter's training augmentation

    def __post_init__(self) -> None:
        if self.augment_passes < 0:
            raise ConfigError(f"dump.augment_passes: 0 or more, got {self.augment_passes}")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"dump.dtype: float16 or float32, got {self.dtype!r}")
        if self.amp not in AMP_DTYPES:
            raise ConfigError(f"dump.amp: one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")
        if self.mask_size < 0:
            raise ConfigError(f"dump.mask_size: 0 (full) or a positive side in pixels, got {self.mask_size}")


@dataclass(frozen=True)
class DumpResult:
    store: Path
    rows: int
    images: int


@torch.no_grad()
def match_image(class_logits: torch.Tensor, mask_logits: torch.Tensor, gt_masks: torch.Tensor,
                gt_labels: torch.Tensor, gt_cats: torch.Tensor, valid: tuple[int, int],
                weights: MatchWeights = MatchWeights()) -> dict[str, np.ndarray]:
    """Records of one image's Q queries. class_logits (Q, C+1), mask_logits (Q, h, w),
    gt_masks (n, S, S), gt_labels (n,) model class index or -1, gt_cats (n,) category ids."""
    Q, h, w = mask_logits.shape
    probs = class_logits.softmax(-1)
    label = np.full(Q, NO_OBJECT, np.int32)
    iou = np.zeros(Q, np.float32)
    if len(gt_masks):
        small = F.adaptive_avg_pool2d(gt_masks[None], (h, w))[0].flatten(1)
        cost = match_cost(probs, mask_logits.flatten(1), gt_labels, small, weights)
        q, g = hungarian(cost)
        S = gt_masks.shape[-1]
        up = F.interpolate(mask_logits[None], size=(S, S), mode="bilinear", align_corners=False)[0]
        vh, vw = valid
        ious = mask_iou((up[:, :vh, :vw] > 0).flatten(1), (gt_masks[:, :vh, :vw] > 0.5).flatten(1))
        label[q] = gt_cats[g].numpy().astype(np.int32)
        iou[q] = ious[q, g].numpy()
    return {"label": label, "mask_iou": iou, "score": probs[:, :-1].max(-1).values.numpy().astype(np.float32),
            "query_index": np.arange(Q, dtype=np.int16)}


def dump_features(checkpoint: str | os.PathLike, annotation_json: str | os.PathLike, image_dir: str | os.PathLike,
                  out: str | os.PathLike, cfg: DumpConfig = DumpConfig(), png_dir: str | os.PathLike | None = None,
                  keep_masks: bool = False, show_progress: bool = True) -> DumpResult:
    """Run the segmenter over every image of ``annotation_json`` and write the store ``out``.

    Under torchrun each rank takes every world-th image and writes its own shard; rank 0
    writes the index and renames the finished store into place."""
    ctx = setup_distributed()
    try:
        return _dump(checkpoint, annotation_json, image_dir, Path(out), cfg, png_dir, keep_masks, show_progress, ctx)
    finally:
        teardown(ctx)


@torch.no_grad()
def _dump(checkpoint, annotation_json, image_dir, out, cfg, png_dir, keep_masks, show_progress, ctx) -> DumpResult:
    model, seg_cfg, classes = model_from_checkpoint(checkpoint)
    model.to(ctx.device)
    tmp = out.with_name(f".{out.name}.tmp")
    if ctx.is_main and tmp.exists():
        shutil.rmtree(tmp)  # an interrupted earlier dump
    ctx.barrier()
    if keep_masks and cfg.augment_passes:
        raise ConfigError("dump.augment_passes: augmented views are for training stores; a store with masks "
                          "(validation) is dumped once, unaugmented")
    passes = [PanopticSegments(annotation_json, image_dir, classes, seg_cfg.image_size, png_dir, strict=False)]
    for k in range(1, cfg.augment_passes + 1):  # the segmenter's training augmentation, a fresh draw per pass
        view = PanopticSegments(annotation_json, image_dir, classes, seg_cfg.image_size, png_dir,
                                Augment(seg_cfg.scale_range, seg_cfg.flip, seg_cfg.seed), strict=False)
        view.epoch = 1_000_000 + k  # augmentation draws of their own, not the training epochs'
        passes.append(view)
    Q, h = model.config.num_queries, seg_cfg.image_size // 4
    hm = cfg.mask_size or h
    if hm > h:
        raise ConfigError(f"dump.mask_size {hm} exceeds the model's mask resolution {h} (segmenter.image_size / 4)")
    writer = ShardWriter(tmp, f"rank-{ctx.rank:03d}", model.config.hidden_dim, cfg.dtype, cfg.chunk_rows,
                         mask_shape=(Q, hm, hm) if keep_masks else None)
    weights = MatchWeights(cls=cfg.match_class_weight)
    try:
        for k, data in enumerate(passes):
            data.ids = data.ids[ctx.rank::ctx.world_size]
            loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, collate_fn=collate)
            name = Path(annotation_json).name + (f" (augmented view {k})" if k else "")
            for batch in tqdm(loader, desc=f"dump {name}", disable=not (ctx.is_main and show_progress)):
                with autocast(ctx.device, cfg.amp):
                    outp = model(pixel_values=batch["pixel_values"].to(ctx.device))
                feats = query_features(model, outp).float().cpu()
                cls, masks = outp.class_queries_logits.float().cpu(), outp.masks_queries_logits.float().cpu()
                kept = F.interpolate(masks, size=(hm, hm), mode="area") if keep_masks and hm != h else masks
                for b, image_id in enumerate(batch["image_ids"]):
                    rec = match_image(cls[b], masks[b], batch["mask_labels"][b], batch["class_labels"][b],
                                      batch["category_ids"][b], batch["valid"][b], weights)
                    writer.add_image(image_id + k * VIEW_STRIDE, feats[b].numpy(), rec,
                                     kept[b].numpy() if keep_masks else None, batch["valid"][b], batch["orig_size"][b])
        writer.close()
    except BaseException:
        writer.abort()
        raise
    ctx.barrier()
    if ctx.is_main:
        meta = {"dim": model.config.hidden_dim, "dtype": cfg.dtype, "num_queries": Q, "classes": classes,
                "checkpoint": str(checkpoint), "annotation_json": str(annotation_json),
                "image_size": seg_cfg.image_size,
                "mask_shape": [Q, hm, hm] if keep_masks else None, "dump": asdict(cfg)}
        finalize_store(tmp, out, meta)
    ctx.barrier()
    from zeroseg.features.store import FeatureStore

    st = FeatureStore(out)
    return DumpResult(out, st.num_rows, len(st.index))
