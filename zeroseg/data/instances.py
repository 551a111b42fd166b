"""COCO instance annotations (``instances_{train,val}2014.json``) -> the COCO panoptic format.

Instance masks may overlap; a panoptic PNG cannot. Masks are painted largest first, so a
smaller object lying on a larger one keeps its pixels (the visible part of each object).
Crowd regions become ``iscrowd`` segments, painted before everything else. Annotations of
classes outside ``keep`` (the 15 COCO classes that belong to neither side of the ZSI 48/17
split) are painted as VOID (id 0), so their pixels are neither trained nor scored.
Pixels of no object stay VOID: the instance task has no stuff.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from zeroseg.atomic import read_json
from zeroseg.data.panoptic import (
    MAX_INT64,
    PanopticDataset,
    _flag,
    _int,
    _require,
    _show,
    _text,
    read_id_png,
    read_images,
    segment_info,
    write_ids,
)
from zeroseg.errors import DataError


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) bool -> N COCO RLEs with str ``counts`` (JSON-serialisable)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def segments_to_instances(image_id: int, ids: np.ndarray, segments: list[dict],
                          thing_ids: set[int]) -> list[dict[str, Any]]:
    """Thing segments of one panoptic ground-truth image -> COCO GT annotations (the default
    instance ground truth when no official instances file is given)."""
    things = [s for s in segments if s["category_id"] in thing_ids]
    rles = encode_masks(np.stack([ids == s["id"] for s in things])) if things else []
    return [{"image_id": image_id, "category_id": s["category_id"], "segmentation": rle,
             "area": int(s.get("area", int(mask_utils.area(rle)))), "bbox": list(mask_utils.toBbox(rle)),
             "iscrowd": int(s.get("iscrowd", 0))} for s, rle in zip(things, rles)]


def _segmentation(seg: Any, where: str, path: object, h: int, w: int) -> None:
    """A polygon list (each a flat list of finite x, y pairs; one of fewer than 3 points is
    accepted and paints nothing, as detectron2 drops it: official COCO files hold a few), or an
    RLE dict whose ``size`` is the image's [height, width] and whose ``counts`` is a string or a
    list of non-negative ints."""
    if isinstance(seg, list):
        for k, poly in enumerate(seg):
            ok = isinstance(poly, list) and len(poly) % 2 == 0 and all(
                type(v) in (int, float) and math.isfinite(v) for v in poly)
            if not ok:
                raise DataError(f"{path}: {where}.segmentation[{k}] must be a polygon: a flat list of (x, y) "
                                f"number pairs, got {_show(poly)}")
        return
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise DataError(f"{path}: {where}.segmentation must be a polygon list or an RLE with 'counts' and 'size', "
                        f"got {_show(seg)}")
    if seg["size"] != [h, w]:
        raise DataError(f"{path}: {where}.segmentation.size {_show(seg['size'])} is not the image's [height, width] "
                        f"[{h}, {w}]")
    counts = seg["counts"]
    if isinstance(counts, list):
        if not all(type(v) is int and v >= 0 for v in counts) or sum(counts) != h * w:
            raise DataError(f"{path}: {where}.segmentation.counts must be non-negative run lengths summing to "
                            f"height x width {h * w}")
    elif not isinstance(counts, str) or not counts.isascii():
        raise DataError(f"{path}: {where}.segmentation.counts must be an ASCII string or a list, got {_show(counts)}")


def load_instances(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a COCO instances JSON: every field later code reads, for presence, type
    and range, so a malformed file fails here with a :class:`DataError` naming the file and field."""
    raw = read_json(path, "COCO instances file")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: the top level must be an object (is this a COCO instances file?), "
                        f"got {type(raw).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DataError(f"{path}: field '{key}' missing or not a list (is this a COCO instances file?)")
    cats: set[int] = set()
    names: set[str] = set()
    for i, c in enumerate(raw["categories"]):
        cid = _int(c, "id", f"categories[{i}]", path, 1, MAX_INT64)
        name = _text(_require(c, "name", f"categories[{i}]", path), f"categories[{i}].name", path)
        if cid in cats or name in names:
            raise DataError(f"{path}: categories[{i}]: duplicate category id {cid} or name {name!r}")
        cats.add(cid)
        names.add(name)
    images = read_images(raw["images"], path)
    for i, a in enumerate(raw["annotations"]):
        if not isinstance(a, dict):
            raise DataError(f"{path}: annotations[{i}] must be an object, got {_show(a)}")
        for key in ("image_id", "category_id", "segmentation", "area"):
            if key not in a:
                raise DataError(f"{path}: annotations[{i}] has no field '{key}'")
        if type(a["category_id"]) is not int or a["category_id"] not in cats:
            raise DataError(f"{path}: annotations[{i}] (image {_show(a['image_id'])}): "
                            f"unknown category_id {_show(a['category_id'])}")
        if type(a["image_id"]) is not int or a["image_id"] not in images:
            raise DataError(f"{path}: annotations[{i}]: image_id {_show(a['image_id'])} is not in 'images'")
        where = f"annotations[{i}] (image {a['image_id']})"
        area = a["area"]
        if type(area) not in (int, float) or not math.isfinite(area) or area < 0:
            raise DataError(f"{path}: {where}.area must be a non-negative number, got {_show(area)}")
        _flag(a, "iscrowd", where, path, 0)
        im = images[a["image_id"]]
        _segmentation(a["segmentation"], where, path, im["height"], im["width"])
    return raw


def keep_classes(raw: dict[str, Any], keep: tuple[str, ...] | None, path: object) -> set[int]:
    """Category ids to keep (all when ``keep`` is None); unknown names raise."""
    by_name = {c["name"]: c["id"] for c in raw["categories"]}
    if keep is None:
        return set(by_name.values())
    unknown = [n for n in keep if n not in by_name]
    if unknown:
        raise DataError(f"{path}: class(es) {unknown} are not categories of this file")
    return {by_name[n] for n in keep}


def annotation_mask(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
    """(H, W) bool mask of a polygon, RLE or uncompressed-RLE segmentation."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        seg = [p for p in seg if len(p) >= 6]  # a polygon of < 3 points has no area (pycocotools would misread it)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if seg else None
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    if rle is None:
        return np.zeros((h, w), bool)
    return mask_utils.decode(rle).astype(bool)


def paint_image(image: dict[str, Any], anns: list[dict[str, Any]], kept: set[int]) -> tuple[np.ndarray, list[dict]]:
    """One image's instances -> ((H, W) segment ids, segments_info)."""
    h, w = image["height"], image["width"]
    ids = np.zeros((h, w), np.int64)
    order = sorted(range(len(anns)), key=lambda i: (not anns[i].get("iscrowd", 0), -float(anns[i]["area"])))
    painted = []
    for sid, i in enumerate(order, start=1):
        a = anns[i]
        m = annotation_mask(a, h, w)
        ids[m] = sid if a["category_id"] in kept else 0
        if a["category_id"] in kept:
            painted.append((sid, a))
    segments = []
    for sid, a in painted:
        m = ids == sid
        if m.any():
            segments.append(segment_info(sid, a["category_id"], m, a.get("iscrowd", 0)))
    return ids, segments


def instances_to_panoptic(raw: dict[str, Any], kept: set[int], png_dir: str | os.PathLike) -> dict[str, Any]:
    """Write one panoptic PNG per image into ``png_dir``; return the panoptic JSON dict."""
    png_dir = Path(png_dir)
    by_image: dict[int, list[dict]] = {}
    for a in raw["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    annotations = []
    for im in raw["images"]:
        ids, segments = paint_image(im, by_image.get(im["id"], []), kept)
        name = Path(im["file_name"]).with_suffix(".png").name
        write_ids(png_dir / name, ids)
        annotations.append({"image_id": im["id"], "file_name": name, "segments_info": segments})
    categories = [dict(c, isthing=1) for c in raw["categories"] if c["id"] in kept]
    images = [{k: im[k] for k in ("id", "file_name", "height", "width")} for im in raw["images"]]
    return {"info": raw.get("info", {}), "images": images, "annotations": annotations, "categories": categories}


def filter_instances(raw: dict[str, Any], kept: set[int]) -> dict[str, Any]:
    """The instances JSON restricted to the kept classes (the ZSI evaluation ground truth)."""
    return {"info": raw.get("info", {}), "images": raw["images"],
            "annotations": [a for a in raw["annotations"] if a["category_id"] in kept],
            "categories": [c for c in raw["categories"] if c["id"] in kept]}


def panoptic_instances(ds: PanopticDataset, png_dir: str | os.PathLike) -> dict[str, Any]:
    """The thing segments of a panoptic set as a COCO instances dict (RLE masks, ids from 1,
    crowd segments with iscrowd 1)."""
    things = {cid for cid, c in ds.categories.items() if c.isthing}
    anns = []
    for iid, ann in ds.annotations.items():
        if any(s["category_id"] in things for s in ann["segments_info"]):
            ids = read_id_png(png_dir, ann, ds.images[iid])
            anns += segments_to_instances(iid, ids, ann["segments_info"], things)
    return {"info": ds.raw.get("info", {}), "licenses": ds.raw.get("licenses", []), "images": list(ds.images.values()),
            "annotations": [dict(a, id=i) for i, a in enumerate(anns, start=1)],
            "categories": [{"supercategory": c.raw.get("supercategory", ""), "id": c.id, "name": c.name}
                           for c in ds.categories.values() if c.isthing]}
