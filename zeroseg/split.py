"""Seen/unseen split of a COCO panoptic dataset, and the independent leak guard.

Training keeps only images with NO segment of an unseen class (crowd segments
included), so the segmenter never sees an unseen pixel.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zeroseg.atomic import atomic_dir, write_json
from zeroseg.data.panoptic import Category, PanopticDataset, check_ids_match, default_png_dir, load_panoptic, read_id_png
from zeroseg.errors import ConfigError, DataError, LeakError
from zeroseg.presets import PRESETS, resolve_unseen
from zeroseg.synth import check_attribute_coverage


@dataclass(frozen=True)
class SplitConfig:
    """params.yaml section ``split``."""

    unseen: str = "synth-default"  # a preset name or comma-separated class names
    verify_pngs: bool = True  # read every PNG: ids must match segments_info (and the leak guard runs)


@dataclass(frozen=True)
class SplitResult:
    seen_json: Path
    unseen_json: Path
    all_json: Path
    manifest: Path
    num_images: int
    num_seen_images: int
    num_unseen_images: int
    unseen_classes: tuple[str, ...]

    def metrics(self) -> dict[str, int]:
        return {"images": self.num_images, "seen_images": self.num_seen_images,
                "unseen_images": self.num_unseen_images, "unseen_classes": len(self.unseen_classes)}


def match_class_names(categories: dict[int, Category], names: tuple[str, ...], source: object) -> dict[str, int]:
    """Class name -> category id; unknown names raise with the closest known names (``source``
    names the file the categories came from)."""
    by_name = {c.name: c.id for c in categories.values()}
    out, problems = {}, []
    for n in names:
        if n in by_name:
            out[n] = by_name[n]
        else:
            close = difflib.get_close_matches(n, list(by_name), n=4, cutoff=0.5)
            problems.append(f"{n!r} (close: {', '.join(close) if close else 'none'})")
    if problems:
        raise ConfigError(
            f"{source}: unknown unseen class name(s): {'; '.join(problems)}. "
            f"Presets: {', '.join(sorted(PRESETS))}"
        )
    return out


def _subset(ds: PanopticDataset, image_ids: list[int], categories: list[dict]) -> dict:
    keep = set(image_ids)
    raw = {k: v for k, v in ds.raw.items() if k not in ("images", "annotations", "categories")}
    raw["images"] = [im for iid, im in ds.images.items() if iid in keep]
    raw["annotations"] = [a for iid, a in ds.annotations.items() if iid in keep]
    raw["categories"] = categories
    return raw


def split_dataset(
    annotation_json: str | os.PathLike,
    unseen: str | list[str] | tuple[str, ...],
    out_dir: str | os.PathLike,
    png_dir: str | os.PathLike | None = None,
    verify_pngs: bool = True,
) -> SplitResult:
    """Write ``<stem>_seen.json``, ``<stem>_unseen.json``, ``<stem>_all.json`` and
    ``<stem>_manifest.parquet`` to ``out_dir`` (atomically, all or nothing)."""
    annotation_json = Path(annotation_json)
    ds = load_panoptic(annotation_json)
    names = resolve_unseen(unseen)
    unseen_ids = set(match_class_names(ds.categories, names, ds.path).values())
    if all("attributes" in c.raw for c in ds.categories.values()):
        check_attribute_coverage([c.raw for c in ds.categories.values()], names)
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(annotation_json)

    categories = [dict(c.raw, split="unseen" if c.id in unseen_ids else "seen") for c in ds.categories.values()]
    rows, seen_imgs, unseen_imgs = [], [], []
    for iid, image in ds.images.items():
        segs = ds.segments(iid)
        present = sorted({ds.categories[s["category_id"]].name for s in segs if s["category_id"] in unseen_ids})
        if verify_pngs and iid in ds.annotations:
            ids = read_id_png(png_dir, ds.annotations[iid], image)
            check_ids_match(ids, ds.annotations[iid], str(png_dir / ds.annotations[iid]["file_name"]))
        (unseen_imgs if present else seen_imgs).append(iid)
        rows.append({"image_id": iid, "file_name": image["file_name"], "kept": not present,
                     "unseen_classes": present, "num_segments": len(segs)})

    stem = annotation_json.stem
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / f"{stem}_seen.json", _subset(ds, seen_imgs, categories), indent=None)
        write_json(tmp / f"{stem}_unseen.json", _subset(ds, unseen_imgs, categories), indent=None)
        write_json(tmp / f"{stem}_all.json", _subset(ds, list(ds.images), categories), indent=None)
        pd.DataFrame(rows).to_parquet(tmp / f"{stem}_manifest.parquet", index=False)
        if verify_pngs:
            check_no_leak(tmp / f"{stem}_seen.json", annotation_json, png_dir, names)
    return SplitResult(
        out_dir / f"{stem}_seen.json", out_dir / f"{stem}_unseen.json", out_dir / f"{stem}_all.json",
        out_dir / f"{stem}_manifest.parquet", len(ds.images), len(seen_imgs), len(unseen_imgs), names,
    )


def check_no_leak(
    seen_json: str | os.PathLike,
    reference_json: str | os.PathLike,
    png_dir: str | os.PathLike,
    unseen: str | list[str] | tuple[str, ...],
) -> int:
    """Independent leak guard. For every image listed in ``seen_json`` read its segment
    PNG and label each pixel through the REFERENCE annotations (the original, unsplit
    JSON), never through the seen JSON itself; raise :class:`LeakError` if any pixel
    belongs to an unseen class. Returns the number of images checked."""
    seen = load_panoptic(seen_json)
    ref = load_panoptic(reference_json)
    unseen_ids = set(match_class_names(ref.categories, resolve_unseen(unseen), ref.path).values())
    leaks = []
    for iid in seen.images:
        if iid not in ref.annotations:
            raise DataError(f"{seen_json}: image {iid} has no annotation in reference {reference_json}")
        ann = ref.annotations[iid]
        ids = read_id_png(png_dir, ann, ref.images[iid])
        check_ids_match(ids, ann, str(Path(png_dir) / ann["file_name"]))
        unseen_segs = [s["id"] for s in ann["segments_info"] if s["category_id"] in unseen_ids]
        pixels = int(np.isin(ids, unseen_segs).sum()) if unseen_segs else 0
        if pixels:
            names = sorted({ref.categories[s["category_id"]].name for s in ann["segments_info"] if s["id"] in unseen_segs})
            leaks.append(f"image {iid} ({ann['file_name']}): {pixels} pixels of {names}")
    if leaks:
        raise LeakError(f"{seen_json}: {len(leaks)} seen-split image(s) contain unseen pixels: " + "; ".join(leaks[:10]))
    return len(seen.images)
