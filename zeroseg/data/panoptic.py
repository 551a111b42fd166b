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

    def segments(self, image_id: int) -> list[dict[str, Any]]:
        ann = self.annotations.get(image_id)
        return [] if ann is None else list(ann["segments_info"])


MAX_SEGMENT_ID = 256**3 - 1  # a segment id is stored in the 24 bits of one RGB pixel
MAX_INT64 = 2**63 - 1
MAX_SIDE = 2**31 - 1  # the PNG limit on width and height


def _require(obj: dict, key: str, where: str, path: Path) -> Any:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} must be an object with a field '{key}', got {_show(obj)}")
    if key not in obj:
        raise DataError(f"{path}: {where} has no field '{key}'")
    return obj[key]


def _show(value: Any) -> str:
    """A short repr for messages (a fuzzed field can be a huge list or string)."""
    r = (repr(value) if not isinstance(value, int) or abs(value) < 10**30
         else f"{str(value)[:12]}... ({len(str(abs(value)))} digits)")
    return r if len(r) <= 60 else r[:57] + "..."


def _int(obj: dict, key: str, where: str, path: Path, lo: int, hi: int) -> int:
    """``obj[key]``, required to be an integer in ``lo..hi`` (not a bool, float or string)."""
    v = _require(obj, key, where, path)
    if type(v) is not int:
        raise DataError(f"{path}: {where}.{key} must be an integer, got {_show(v)}")
    if not lo <= v <= hi:
        raise DataError(f"{path}: {where}.{key} {_show(v)} is out of range {lo}..{hi}")
    return v


def _text(value: Any, where: str, path: Path) -> str:
    """A non-empty string that is valid Unicode (no lone surrogates, no NUL)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}: {where} must be a non-empty string, got {_show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{path}: {where} {_show(value)} is not valid Unicode text ({exc.reason})") from exc
    if "\x00" in value:
        raise DataError(f"{path}: {where} {_show(value)} contains a NUL character")
    return value


def _file_name(value: Any, where: str, path: Path, plain: bool) -> str:
    """A relative file name inside its folder: no absolute path, no '..' (``plain``: no folder at all)."""
    name = _text(value, where, path)
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts or (plain and (len(parts) != 1 or name in (".", ".."))):
        kind = "a plain file name" if plain else "a relative path inside the image folder"
        raise DataError(f"{path}: {where} must be {kind}, got {_show(value)}")
    return name


def _flag(obj: dict, key: str, where: str, path: Path, default: int | None) -> bool:
    """0/1 field ``key`` (``default`` when absent; required when ``default`` is None)."""
    v = _require(obj, key, where, path) if default is None else obj.get(key, default)
    if v not in (0, 1) or type(v) not in (int, bool):
        raise DataError(f"{path}: {where}.{key} must be 0 or 1, got {_show(v)}")
    return bool(v)



def read_images(entries: list, path: str | os.PathLike) -> dict[int, dict]:
    """id -> record of a COCO ``images`` list, every field later code reads checked (id, file_name,
    height, width; ids unique); errors name ``path`` and the entry."""
    images: dict[int, dict] = {}
    for i, im in enumerate(entries):
        iid = _int(im, "id", f"images[{i}]", path, -MAX_INT64 - 1, MAX_INT64)
        where = f"images[{i}] (id {iid})"
        _file_name(_require(im, "file_name", where, path), f"{where}.file_name", path, plain=False)
        for key in ("height", "width"):
            _int(im, key, where, path, 1, MAX_SIDE)
        if iid in images:
            raise DataError(f"{path}: images[{i}]: duplicate image id {iid}")
        images[iid] = im
    return images

def load_panoptic(path: str | os.PathLike) -> PanopticDataset:
    """Load and validate a COCO panoptic JSON (structure only; PNGs are read lazily).

    Every field that later code reads is checked for presence, type and range, so a malformed
    file fails here with a :class:`DataError` naming the file and the field."""
    path = Path(path)
    raw = read_json(path, "annotation file")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: the top level must be an object with 'images', 'annotations' and 'categories', "
                        f"got {type(raw).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DataError(f"{path}: top-level field '{key}' missing or not a list")

    categories: dict[int, Category] = {}
    names: set[str] = set()
    n_attributes: tuple[int, int] | None = None
    for i, c in enumerate(raw["categories"]):
        where = f"categories[{i}]"
        cid = _int(c, "id", where, path, 1, MAX_INT64)
        name = _text(_require(c, "name", where, path), f"{where}.name", path)
        if cid in categories:
            raise DataError(f"{path}: {where}: duplicate category id {cid}")
        if name in names:
            raise DataError(f"{path}: {where}: duplicate category name {name!r}")
        if "attributes" in c:
            attrs = c["attributes"]
            if not isinstance(attrs, list) or not attrs:
                raise DataError(f"{path}: {where}.attributes must be a non-empty list of words, got {_show(attrs)}")
            for k, a in enumerate(attrs):
                _text(a, f"{where}.attributes[{k}]", path)
            if n_attributes is not None and len(attrs) != n_attributes[1]:
                raise DataError(f"{path}: {where}.attributes has {len(attrs)} words but categories[{n_attributes[0]}]"
                                f".attributes has {n_attributes[1]}: every class needs the same number")
            n_attributes = n_attributes or (i, len(attrs))
        names.add(name)
        # required, as in the COCO panoptic format (panopticapi and the split's attribute check read it)
        categories[cid] = Category(cid, name, _flag(c, "isthing", where, path, None), c)

    images = read_images(raw["images"], path)

    annotations: dict[int, dict] = {}
    png_of: dict[str, int] = {}
    for i, ann in enumerate(raw["annotations"]):
        iid = _int(ann, "image_id", f"annotations[{i}]", path, -MAX_INT64 - 1, MAX_INT64)
        where = f"annotations[{i}] (image {iid})"
        png = _file_name(_require(ann, "file_name", where, path), f"{where}.file_name", path, plain=True)
        segs = _require(ann, "segments_info", where, path)
        if not isinstance(segs, list):
            raise DataError(f"{path}: {where}.segments_info must be a list, got {_show(segs)}")
        if iid not in images:
            raise DataError(f"{path}: annotations[{i}].image_id {iid} is not in 'images'")
        if iid in annotations:
            raise DataError(f"{path}: annotations[{i}]: second annotation for image {iid}")
        if png in png_of:
            raise DataError(f"{path}: {where}.file_name {png!r} is also the segment PNG of image {png_of[png]}")
        png_of[png] = iid
        seen_ids: set[int] = set()
        for j, s in enumerate(segs):
            swhere = f"{where}.segments_info[{j}]"
            sid = _int(s, "id", swhere, path, 1, MAX_SEGMENT_ID)
            cid = _require(s, "category_id", swhere, path)
            if type(cid) is not int or cid not in categories:
                raise DataError(f"{path}: {swhere}.category_id {_show(cid)} is not a known category id")
            if sid in seen_ids:
                raise DataError(f"{path}: {swhere}.id {sid} is duplicated in image {iid}")
            if "area" in s:
                _int(s, "area", swhere, path, 0, MAX_INT64)
            _flag(s, "iscrowd", swhere, path, 0)
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
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
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
    except (OSError, ValueError) as exc:  # a folder, no permission, a NUL in the name
        raise DataError(f"{path}: cannot read the {what} PNG (image {image_id}, field file_name): {exc}") from exc
    if data[12:16] == b"IHDR" and len(data) > 24 and data[24] > 8:
        # libspng would silently reduce 16 bits to 8, and with them the segment ids
        raise DataError(f"{path}: {what} PNG for image {image_id} is {data[24]}-bit; segment PNGs are 8-bit RGB")
    try:
        rgba = pyspng.load(data, "RGBA")
    except Exception as exc:  # libspng raises plain exceptions on corrupt data
        raise DataError(f"{path}: unreadable {what} PNG (image {image_id}): {exc}") from exc
    if rgba.dtype != np.uint8:
        raise DataError(f"{path}: {what} PNG for image {image_id} is 16-bit; segment PNGs are 8-bit RGB")
    ids = rgba.view("<u4")[..., 0]
    ids &= 0xFFFFFF
    return ids


def read_id_png(png_dir: str | os.PathLike, ann: dict[str, Any], image: dict[str, Any] | None = None,
                what: str = "segment") -> np.ndarray:
    """Read one annotation's segment PNG as (H, W) uint32 ids; size checked against ``image``."""
    png = Path(png_dir) / ann["file_name"]
    ids = read_ids(png, what, ann["image_id"])
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
        raise DataError(f"{png_name}: segments_info id(s) {missing[:5]} of image {ann['image_id']} are absent from the "
                        "PNG")
    extra = sorted(present - declared)
    if extra:
        raise DataError(f"{png_name}: PNG segment id(s) {extra[:5]} of image {ann['image_id']} "
                        "are not in segments_info")


def read_image(image_dir: str | os.PathLike, image: dict[str, Any]) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8, checking its size against the JSON."""
    path = Path(image_dir) / image["file_name"]
    arr = read_rgb(path, f"image file missing (image {image['id']})",
                   f"unreadable or corrupt image (image {image['id']})")
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
