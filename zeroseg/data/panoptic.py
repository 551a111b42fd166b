"""COCO panoptic format: reading, validating and id <-> RGB conversion.

The same code reads the embedded benchmark and real COCO; nothing downstream knows
which one it is. Segment PNGs encode a segment id as ``R + 256 G + 256² B``; id 0 is
VOID (unlabelled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyspng
from PIL import Image

from zeroseg.atomic import read_json
from zeroseg.errors import DataError


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) int segment ids -> (H, W, 3) uint8 RGB."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool
    raw: dict[str, Any]


@dataclass
class PanopticDataset:
    """A loaded, validated panoptic JSON.

    ``images`` and ``annotations`` keep the raw dicts (so writers can copy them
    unchanged); lookups are by image id.
    """

    path: Path
    raw: dict[str, Any]
    images: dict[int, dict[str, Any]]
    annotations: dict[int, dict[str, Any]]
    categories: dict[int, Category]

    @property
    def image_ids(self) -> list[int]:
        return list(self.images)

    def category_by_name(self) -> dict[str, Category]:
        return {c.name: c for c in self.categories.values()}

    def segments(self, image_id: int) -> list[dict[str, Any]]:
        ann = self.annotations.get(image_id)
        return [] if ann is None else list(ann["segments_info"])


def _require(obj: dict, key: str, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: {where} has no field '{key}'")
    return obj[key]


def load_panoptic(path: str | os.PathLike) -> PanopticDataset:
    """Load and validate a COCO panoptic JSON (structure only; PNGs are read lazily)."""
    path = Path(path)
    raw = read_json(path, "annotation file")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DataError(f"{path}: top-level field '{key}' missing or not a list")

    categories: dict[int, Category] = {}
    names: set[str] = set()
    for i, c in enumerate(raw["categories"]):
        cid = _require(c, "id", f"categories[{i}]", path)
        name = _require(c, "name", f"categories[{i}]", path)
        if cid in categories:
            raise DataError(f"{path}: categories[{i}]: duplicate category id {cid}")
        if name in names:
            raise DataError(f"{path}: categories[{i}]: duplicate category name {name!r}")
        names.add(name)
        categories[cid] = Category(cid, name, bool(c.get("isthing", 1)), c)

    images: dict[int, dict] = {}
    for i, im in enumerate(raw["images"]):
        iid = _require(im, "id", f"images[{i}]", path)
        for key in ("file_name", "height", "width"):
            _require(im, key, f"images[{i}] (id {iid})", path)
        if iid in images:
            raise DataError(f"{path}: images[{i}]: duplicate image id {iid}")
        images[iid] = im

    annotations: dict[int, dict] = {}
    for i, ann in enumerate(raw["annotations"]):
        iid = _require(ann, "image_id", f"annotations[{i}]", path)
        _require(ann, "file_name", f"annotations[{i}] (image {iid})", path)
        segs = _require(ann, "segments_info", f"annotations[{i}] (image {iid})", path)
        if iid not in images:
            raise DataError(f"{path}: annotations[{i}].image_id {iid} is not in 'images'")
        if iid in annotations:
            raise DataError(f"{path}: annotations[{i}]: second annotation for image {iid}")
        seen_ids: set[int] = set()
        for j, s in enumerate(segs):
            where = f"annotations[{i}] (image {iid}).segments_info[{j}]"
            sid = _require(s, "id", where, path)
            cid = _require(s, "category_id", where, path)
            if cid not in categories:
                raise DataError(f"{path}: {where}.category_id {cid} is not a known category id")
            if sid in seen_ids:
                raise DataError(f"{path}: {where}.id {sid} is duplicated in image {iid}")
            seen_ids.add(sid)
        annotations[iid] = ann
    return PanopticDataset(path, raw, images, annotations, categories)


def read_rgb(path: Path, missing: str, unreadable: str) -> np.ndarray:
    """(H, W, 3) uint8 (writable) of any image file; the messages name what is wrong."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: {missing}") from exc
    except OSError as exc:
        raise DataError(f"{path}: {unreadable}: {exc}") from exc


def read_ids(path: str | os.PathLike, what: str, image_id: int) -> np.ndarray:
    """(H, W) uint32 segment ids of an RGB-encoded PNG.

    libspng (``pyspng``) decodes straight to RGBA, whose little-endian uint32 view masked
    to 24 bits is ``R + 256 G + 256² B``: no int64 maths, no extra copies.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: {what} PNG missing (image {image_id}, field file_name)") from exc
    try:
        rgba = pyspng.load(data, "RGBA")
    except Exception as exc:  # libspng raises plain exceptions on corrupt data
        raise DataError(f"{path}: unreadable {what} PNG (image {image_id}): {exc}") from exc
    if rgba.dtype != np.uint8:
        raise DataError(f"{path}: {what} PNG for image {image_id} is 16-bit; segment PNGs are 8-bit RGB")
    ids = rgba.view("<u4")[..., 0]
    ids &= 0xFFFFFF
    return ids


def read_id_png(png_dir: str | os.PathLike, ann: dict[str, Any], image: dict[str, Any] | None = None) -> np.ndarray:
    """Read one annotation's segment PNG as (H, W) uint32 ids; size checked against ``image``."""
    png = Path(png_dir) / ann["file_name"]
    ids = read_ids(png, "segment", ann["image_id"])
    if image is not None and ids.shape != (image["height"], image["width"]):
        raise DataError(
            f"{png}: PNG size {ids.shape[1]}x{ids.shape[0]} differs from image {image['id']}'s "
            f"width x height {image['width']}x{image['height']}"
        )
    return ids


def check_ids_match(ids: np.ndarray, ann: dict[str, Any], png_name: str) -> None:
    """Every segments_info id occurs in the PNG and every non-zero PNG id is in segments_info."""
    present = set(np.unique(ids).tolist()) - {0}
    declared = {s["id"] for s in ann["segments_info"]}
    missing = sorted(declared - present)
    if missing:
        raise DataError(f"{png_name}: segments_info id(s) {missing[:5]} of image {ann['image_id']} are absent from the PNG")
    extra = sorted(present - declared)
    if extra:
        raise DataError(f"{png_name}: PNG segment id(s) {extra[:5]} of image {ann['image_id']} are not in segments_info")


def read_image(image_dir: str | os.PathLike, image: dict[str, Any]) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8, checking its size against the JSON."""
    path = Path(image_dir) / image["file_name"]
    arr = read_rgb(path, f"image file missing (image {image['id']})", f"unreadable or corrupt image (image {image['id']})")
    if arr.shape[:2] != (image["height"], image["width"]):
        raise DataError(
            f"{path}: image is {arr.shape[1]}x{arr.shape[0]} but the JSON says "
            f"width x height {image['width']}x{image['height']} (image {image['id']})"
        )
    return arr


def default_png_dir(annotation_json: str | os.PathLike) -> Path:
    """COCO convention: ``panoptic_X.json`` has its PNGs in the folder ``panoptic_X/`` beside it."""
    p = Path(annotation_json)
    return p.with_suffix("")


def write_ids(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Write (H, W) segment ids as an RGB-encoded COCO panoptic PNG."""
    Image.fromarray(id2rgb(ids)).save(path)


def segment_info(segment_id: int, category_id: int, mask: np.ndarray, iscrowd: int = 0) -> dict[str, Any]:
    """A segments_info entry for a (H, W) bool mask: area and bbox [x, y, w, h] as panopticapi writes them."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"id": int(segment_id), "category_id": int(category_id), "iscrowd": int(iscrowd), "area": int(len(xs)),
            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]}
