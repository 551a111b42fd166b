"""Seen/unseen split of a COCO panoptic dataset, and the independent leak guards.

Two training protocols (``split.policy``):

- ``drop`` (ZSP, ZSI): training keeps only images with NO segment of an unseen class (crowd
  segments included), so the segmenter never sees an unseen pixel.
- ``ignore`` (ZSS, as ZegFormer's and PADing's COCO-Stuff code): every image is kept and
  each unseen segment is marked ``"ignore": 1`` in the seen JSON. Such a segment is never a
  training target nor a match in the feature dump (its pixels are VOID there, like the
  official ignore label 255), but its pixels stay in the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zeroseg.atomic import atomic_dir, write_json
from zeroseg.data.classes import check_attribute_coverage, resolve_unseen, unseen_ids
from zeroseg.data.panoptic import PanopticDataset, check_ids_match, default_png_dir, load_panoptic, read_id_png
from zeroseg.errors import ConfigError, DataError, LeakError


@dataclass(frozen=True)
class SplitConfig:
    """params.yaml section ``split``."""

    unseen: str = "benchmark-default"  # a preset name or comma-separated class names
    verify_pngs: bool = True  # read every PNG: ids must match segments_info (and the leak guard runs)
    policy: str = "drop"  # drop: no image with an unseen pixel trains; ignore: unseen segments become ignore regions

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"split.policy: one of {', '.join(POLICIES)}, got {self.policy!r}")


POLICIES = ("drop", "ignore")
IGNORE_KEY = "ignore"  # segments_info flag of the ``ignore`` policy: not a training target, pixels VOID


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
    policy: str = "drop"
    ignored_segments: int = 0  # unseen segments marked ignore in the seen JSON (policy ignore)

    def metrics(self) -> dict[str, int]:
        out = {"images": self.num_images, "seen_images": self.num_seen_images,
               "unseen_images": self.num_unseen_images, "unseen_classes": len(self.unseen_classes)}
        if self.policy == "ignore":
            out["ignored_segments"] = self.ignored_segments
        return out


def _subset(ds: PanopticDataset, image_ids: list[int], categories: list[dict], ignore: set[int] = frozenset()) -> dict:
    """The JSON of ``image_ids``; segments whose category is in ``ignore`` get ``"ignore": 1``."""
    keep = set(image_ids)
    raw = {k: v for k, v in ds.raw.items() if k not in ("images", "annotations", "categories")}
    raw["images"] = [im for iid, im in ds.images.items() if iid in keep]
    raw["annotations"] = [a for iid, a in ds.annotations.items() if iid in keep]
    if ignore:
        raw["annotations"] = [dict(a, segments_info=[dict(s, **{IGNORE_KEY: 1}) if s["category_id"] in ignore else s
                                                     for s in a["segments_info"]]) for a in raw["annotations"]]
    raw["categories"] = categories
    return raw


def split_dataset(
    annotation_json: str | os.PathLike,
    unseen: str | list[str] | tuple[str, ...],
    out_dir: str | os.PathLike,
    png_dir: str | os.PathLike | None = None,
    verify_pngs: bool = True,
    policy: str = "drop",
) -> SplitResult:
    """Write ``<stem>_seen.json`` (the training split), ``<stem>_unseen.json`` (the images with
    an unseen segment), ``<stem>_all.json`` and ``<stem>_manifest.parquet`` to ``out_dir``
    (atomically, all or nothing). ``policy`` ``drop`` leaves the unseen images out of the
    training split; ``ignore`` keeps them with their unseen segments marked ignore."""
    SplitConfig(policy=policy)  # validates the policy before any work
    annotation_json = Path(annotation_json)
    ds = load_panoptic(annotation_json)
    names = resolve_unseen(unseen)
    unseen_set = unseen_ids(ds.categories, names, ds.path)
    if all("attributes" in c.raw for c in ds.categories.values()):
        try:
            check_attribute_coverage([c.raw for c in ds.categories.values()], names)
        except ConfigError as exc:
            raise ConfigError(f"{ds.path}: {exc}") from exc
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(annotation_json)

    categories = [dict(c.raw, split="unseen" if c.id in unseen_set else "seen") for c in ds.categories.values()]
    rows, seen_imgs, unseen_imgs = [], [], []
    for iid, image in ds.images.items():
        segs = ds.segments(iid)
        present = sorted({ds.categories[s["category_id"]].name for s in segs if s["category_id"] in unseen_set})
        if verify_pngs and iid in ds.annotations:
            ids = read_id_png(png_dir, ds.annotations[iid], image)
            check_ids_match(ids, ds.annotations[iid], str(png_dir / ds.annotations[iid]["file_name"]))
        (unseen_imgs if present else seen_imgs).append(iid)
        ignored = sum(s["category_id"] in unseen_set for s in segs) if policy == "ignore" else 0
        rows.append({"image_id": iid, "file_name": image["file_name"], "kept": policy == "ignore" or not present,
                     "unseen_classes": present, "num_segments": len(segs), "ignored_segments": ignored})
    train_imgs = list(ds.images) if policy == "ignore" else seen_imgs
    train_ignore = unseen_set if policy == "ignore" else set()

    stem = annotation_json.stem
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / f"{stem}_seen.json", _subset(ds, train_imgs, categories, train_ignore), indent=None)
        write_json(tmp / f"{stem}_unseen.json", _subset(ds, unseen_imgs, categories), indent=None)
        write_json(tmp / f"{stem}_all.json", _subset(ds, list(ds.images), categories), indent=None)
        pd.DataFrame(rows).to_parquet(tmp / f"{stem}_manifest.parquet", index=False)
        if policy == "ignore":
            check_no_unseen_target(tmp / f"{stem}_seen.json", annotation_json, names)
        if verify_pngs:
            check_no_leak(tmp / f"{stem}_seen.json", annotation_json, png_dir, names)
    return SplitResult(
        out_dir / f"{stem}_seen.json", out_dir / f"{stem}_unseen.json", out_dir / f"{stem}_all.json",
        out_dir / f"{stem}_manifest.parquet", len(ds.images), len(train_imgs), len(unseen_imgs), names,
        policy, sum(r["ignored_segments"] for r in rows),
    )


def check_no_unseen_target(
    seen_json: str | os.PathLike,
    reference_json: str | os.PathLike,
    unseen: str | list[str] | tuple[str, ...],
) -> int:
    """Leak guard of the ``ignore`` policy: every segment of the training JSON whose class
    in the REFERENCE annotations (the original JSON, never the training JSON's own labels)
    is unseen must carry ``"ignore": 1``, and no segment may be missing from the reference.
    Raises :class:`LeakError`; returns the number of ignored unseen segments."""
    seen = load_panoptic(seen_json)
    ref = load_panoptic(reference_json)
    unseen_set = unseen_ids(ref.categories, unseen, ref.path)
    leaks, ignored = [], 0
    for iid, ann in seen.annotations.items():
        if iid not in ref.annotations:
            raise DataError(f"{seen_json}: image {iid} has no annotation in reference {reference_json}")
        ref_cat = {s["id"]: s["category_id"] for s in ref.annotations[iid]["segments_info"]}
        for s in ann["segments_info"]:
            if s["id"] not in ref_cat:
                leaks.append(f"image {iid}: segment {s['id']} is not in the reference")
            elif ref_cat[s["id"]] in unseen_set:
                if s.get(IGNORE_KEY) == 1:
                    ignored += 1
                else:
                    leaks.append(f"image {iid} ({ann['file_name']}): segment {s['id']} of unseen class "
                                 f"{ref.categories[ref_cat[s['id']]].name!r} is a training target")
    if leaks:
        raise LeakError(f"{seen_json}: {len(leaks)} unseen training target(s): " + "; ".join(leaks[:10]))
    return ignored


def check_no_leak(
    seen_json: str | os.PathLike,
    reference_json: str | os.PathLike,
    png_dir: str | os.PathLike,
    unseen: str | list[str] | tuple[str, ...],
) -> int:
    """Independent leak guard. For every image listed in ``seen_json`` read its segment
    PNG and label each pixel through the REFERENCE annotations (the original, unsplit
    JSON), never through the seen JSON itself; raise :class:`LeakError` if any pixel
    belongs to an unseen class that the seen JSON does not mark ignore (policy ``ignore``:
    its pixels are in the image but never in a target). Returns the number of images checked."""
    seen = load_panoptic(seen_json)
    ref = load_panoptic(reference_json)
    unseen_set = unseen_ids(ref.categories, unseen, ref.path)
    leaks = []
    for iid in seen.images:
        if iid not in ref.annotations:
            raise DataError(f"{seen_json}: image {iid} has no annotation in reference {reference_json}")
        ann = ref.annotations[iid]
        ids = read_id_png(png_dir, ann, ref.images[iid])
        check_ids_match(ids, ann, str(Path(png_dir) / ann["file_name"]))
        ignored = {s["id"] for s in seen.annotations[iid]["segments_info"] if s.get(IGNORE_KEY) == 1} \
            if iid in seen.annotations else set()
        unseen_segs = [s["id"] for s in ann["segments_info"]
                       if s["category_id"] in unseen_set and s["id"] not in ignored]
        pixels = int(np.isin(ids, unseen_segs).sum()) if unseen_segs else 0
        if pixels:
            names = sorted({ref.categories[s["category_id"]].name for s in ann["segments_info"]
                            if s["id"] in unseen_segs})
            leaks.append(f"image {iid} ({ann['file_name']}): {pixels} pixels of {names}")
    if leaks:
        raise LeakError(f"{seen_json}: {len(leaks)} seen-split image(s) contain unseen pixels: "
                        + "; ".join(leaks[:10]))
    return len(seen.images)
