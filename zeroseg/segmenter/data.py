"""Training/inference data from any COCO panoptic folder: image tensors and per-segment masks.

Crowd segments are not targets (as in Mask2Former's panoptic mapper), nor are segments the
split marked ``"ignore": 1`` (unseen classes under ``split.policy: ignore``: their pixels are
VOID, like COCO-Stuff's ignore label). Every other segment must belong to the model's class
list: a segment of another class in the seen training split means a leak, and is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.data.panoptic import (
    PanopticDataset,
    check_ids_match,
    default_png_dir,
    load_panoptic,
    read_id_png,
    read_image,
)
from zeroseg.errors import DataError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255


def fit_size(H: int, W: int, size: int, scale: float = 1.0) -> tuple[int, int]:
    """(h, w) after resizing so the longer side is ``size`` (times ``scale``)."""
    f = size / max(H, W) * scale
    return max(1, round(H * f)), max(1, round(W * f))


def to_canvas(img: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(3, h, w) float RGB in [0, 255] -> normalised (3, size, size) canvas (top-left placed,
    zero-padded, cropped to ``size``) and the (h, w) of the image inside it."""
    img = img[:, :size, :size]
    vh, vw = img.shape[1:]
    canvas = torch.zeros(3, size, size)
    canvas[:, :vh, :vw] = (img - MEAN) / STD
    return canvas, (vh, vw)


def seen_classes(ds: PanopticDataset) -> list[dict]:
    """The training class list: categories with ``split == "seen"`` (all, if no split field), id order."""
    cats = [c for c in ds.categories.values() if c.raw.get("split", "seen") == "seen"]
    return [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in sorted(cats, key=lambda c: c.id)]


@dataclass
class Sample:
    image_id: int
    pixel_values: torch.Tensor  # (3, S, S) normalised
    masks: torch.Tensor  # (n, S, S) float {0, 1}
    labels: torch.Tensor  # (n,) long, index into the class list (-1: class not in it, strict=False)
    category_ids: torch.Tensor  # (n,) long, the segments' category ids
    valid: tuple[int, int]  # (h, w) of the image inside the padded S x S canvas
    orig_size: tuple[int, int]  # (H, W) of the original image


@dataclass(frozen=True)
class Augment:
    """The training augmentation of :class:`PanopticSegments`: a random scale in ``scale_range``
    of the fitted size, a random crop (or pad) to the canvas, a horizontal flip with probability
    1/2 when ``flip``; draws seeded by (``seed``, epoch, sample index)."""

    scale_range: tuple[float, float] = (1.0, 1.0)
    flip: bool = False
    seed: int = 0


class PanopticSegments(torch.utils.data.Dataset):
    """Images + non-crowd segment masks of a COCO panoptic JSON.

    With ``augment`` (training) each image goes through :class:`Augment` to a ``size`` canvas;
    without, the image is resized so its longer side is ``size`` and padded bottom/right.
    """

    def __init__(self, annotation_json: str | os.PathLike, image_dir: str | os.PathLike, classes: list[dict],
                 size: int, png_dir: str | os.PathLike | None = None, augment: Augment | None = None,
                 strict: bool = True, image_ids: list[int] | None = None) -> None:
        self.ds = load_panoptic(annotation_json)
        self.image_dir = Path(image_dir)
        self.png_dir = Path(png_dir) if png_dir else default_png_dir(annotation_json)
        self.index = {c["id"]: i for i, c in enumerate(classes)}
        self.ids = [i for i in self.ds.images if i in self.ds.annotations] if image_ids is None else list(image_ids)
        self.strict = strict
        self.size, self.train, aug = size, augment is not None, augment or Augment()
        self.scale_range, self.flip, self.seed = aug.scale_range, aug.flip, aug.seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, image_id: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(H, W, 3) uint8 image, (n, H, W) bool masks, their segments (not crowd, not ignore)."""
        image, ann = self.ds.images[image_id], self.ds.annotations[image_id]
        rgb = read_image(self.image_dir, image)
        ids = read_id_png(self.png_dir, ann, image)
        check_ids_match(ids, ann, str(self.png_dir / ann["file_name"]))
        segs = [s for s in ann["segments_info"] if not s.get("iscrowd", 0) and not s.get("ignore", 0)]
        for s in segs:
            if self.strict and s["category_id"] not in self.index:
                raise DataError(f"{self.ds.path}: image {image_id} has a segment of category {s['category_id']}, "
                                "which is not in the model's class list (unseen class in the training split?)")
        masks = np.stack([ids == s["id"] for s in segs]) if segs else np.zeros((0,) + ids.shape, bool)
        return rgb, masks, segs

    def __getitem__(self, k: int) -> Sample:
        image_id = self.ids[k]
        rgb, masks, segs = self.load(image_id)
        H, W = rgb.shape[:2]
        img = torch.from_numpy(rgb).permute(2, 0, 1).float()
        m = torch.from_numpy(masks).float()
        rng = np.random.default_rng([self.seed, self.epoch, k])
        h, w = fit_size(H, W, self.size, float(rng.uniform(*self.scale_range)) if self.train else 1.0)
        img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        m = F.interpolate(m[None], size=(h, w), mode="nearest")[0] if len(m) else m.new_zeros((0, h, w))
        if self.train and self.flip and rng.random() < 0.5:
            img, m = img.flip(-1), m.flip(-1)
        y0 = int(rng.integers(0, h - self.size + 1)) if self.train and h > self.size else 0
        x0 = int(rng.integers(0, w - self.size + 1)) if self.train and w > self.size else 0
        img, m = img[:, y0:y0 + self.size, x0:x0 + self.size], m[:, y0:y0 + self.size, x0:x0 + self.size]
        canvas, (vh, vw) = to_canvas(img, self.size)
        mc = torch.zeros(len(m), self.size, self.size)
        mc[:, :vh, :vw] = m
        keep = mc.flatten(1).sum(1) > 0
        labels = torch.tensor([self.index.get(s["category_id"], -1) for s in segs], dtype=torch.long)
        cats = torch.tensor([s["category_id"] for s in segs], dtype=torch.long)
        return Sample(image_id, canvas, mc[keep], labels[keep], cats[keep], (vh, vw), (H, W))


def collate(batch: list[Sample]) -> dict:
    return {
        "image_ids": [b.image_id for b in batch],
        "pixel_values": torch.stack([b.pixel_values for b in batch]),
        "mask_labels": [b.masks for b in batch],
        "class_labels": [b.labels for b in batch],
        "category_ids": [b.category_ids for b in batch],
        "valid": [b.valid for b in batch],
        "orig_size": [b.orig_size for b in batch],
    }
