"""Perturbed copies of a ground-truth panoptic folder: predictions with known kinds of error.

Used to check our evaluators against the reference ones (tests) and to time them (bench):
segments removed, merged, split, shifted, relabelled, predictions over crowd and VOID
regions, and invented segments. Deterministic for a seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zeroseg.atomic import atomic_dir, write_json
from zeroseg.data.panoptic import load_panoptic, read_id_png, write_ids

KINDS = ("remove", "merge", "split", "shift", "relabel", "crowd", "void", "invent")


def perturb_image(ids: np.ndarray, segments: list[dict], cat_ids: list[int], rng: np.random.Generator,
                  kinds: tuple[str, ...] = KINDS, strength: float = 0.5) -> tuple[np.ndarray, list[dict]]:
    """Return (pred ids (H, W), pred segments_info) derived from one GT image."""
    ids = ids.copy()
    segs = {s["id"]: {"id": s["id"], "category_id": s["category_id"]} for s in segments}
    crowd = [s["id"] for s in segments if s.get("iscrowd", 0) == 1]
    # a crowd region is predicted as ordinary segments of its category (not a FP when > 1/2 on crowd)
    for sid in crowd:
        if "crowd" not in kinds:
            ids[ids == sid] = 0
            segs.pop(sid)
    next_id = int(ids.max()) + 1

    def new_id() -> int:
        nonlocal next_id
        next_id += 1
        return next_id

    for sid in list(segs):
        if rng.random() > strength or sid not in segs:
            continue
        kind = kinds[int(rng.integers(len(kinds)))]
        m = ids == sid
        if not m.any():
            segs.pop(sid)
            continue
        if kind == "remove":
            ids[m] = 0
            segs.pop(sid)
        elif kind == "merge":
            same = [o for o in segs if o != sid and segs[o]["category_id"] == segs[sid]["category_id"]]
            other = same[0] if same else next((o for o in segs if o != sid), None)
            if other is not None:
                ids[ids == other] = sid
                segs.pop(other)
        elif kind == "split":
            ys, xs = np.nonzero(m)
            cut = np.median(xs)
            nid = new_id()
            part = m & (np.arange(ids.shape[1])[None, :] > cut)
            if part.any() and part.sum() < m.sum():
                ids[part] = nid
                segs[nid] = {"id": nid, "category_id": segs[sid]["category_id"]}
        elif kind == "shift":
            dy, dx = rng.integers(-12, 13, size=2)
            moved = np.roll(np.roll(m, int(dy), 0), int(dx), 1)
            ids[m] = 0
            ids[moved] = sid
        elif kind == "relabel":
            segs[sid]["category_id"] = int(cat_ids[int(rng.integers(len(cat_ids)))])
        elif kind == "void":
            # grow the segment over neighbouring VOID pixels only
            grown = np.roll(m, 3, 0) | np.roll(m, -3, 1)
            ids[grown & (ids == 0)] = sid
        elif kind == "invent":
            h, w = ids.shape
            y0, x0 = int(rng.integers(0, max(1, h - 8))), int(rng.integers(0, max(1, w - 8)))
            nid = new_id()
            ids[y0:y0 + max(4, h // 6), x0:x0 + max(4, w // 6)] = nid
            segs[nid] = {"id": nid, "category_id": int(cat_ids[int(rng.integers(len(cat_ids)))])}
    present = set(np.unique(ids).tolist())
    out = [dict(s, score=float(rng.uniform(0.3, 1.0))) for k, s in segs.items() if k in present]
    return ids, out


def perturb_folder(gt_json: str | os.PathLike, gt_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   seed: int = 0, kinds: tuple[str, ...] = KINDS, strength: float = 0.5) -> tuple[Path, Path]:
    """Write ``out_dir/pred.json`` + ``out_dir/pred/*.png``; returns (json, png folder)."""
    gt = load_panoptic(gt_json)
    cat_ids = sorted(gt.categories)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "pred").mkdir()
        anns = []
        for k, (iid, ann) in enumerate(gt.annotations.items()):
            rng = np.random.default_rng([seed, k])
            ids, segs = perturb_image(read_id_png(gt_dir, ann), ann["segments_info"], cat_ids, rng, kinds, strength)
            write_ids(tmp / "pred" / ann["file_name"], ids)
            anns.append({"image_id": iid, "file_name": ann["file_name"], "segments_info": segs})
        write_json(tmp / "pred.json", {"annotations": anns, "categories": gt.raw["categories"]}, indent=None)
    return out_dir / "pred.json", out_dir / "pred"
