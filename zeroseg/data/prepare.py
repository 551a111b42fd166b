"""Stage ``prepare`` of the COCO pipelines: the official COCO files (wherever the user keeps
them) -> one uniform layout that every later stage reads::

    OUT/panoptic_train.json  OUT/panoptic_train/*.png   (segments, COCO panoptic format)
    OUT/panoptic_val.json    OUT/panoptic_val/*.png
    OUT/instances_val.json   (instance ground truth for mAP/R@100)

Formats: ``panoptic`` (COCO panoptic 2017: JSON + PNG folder, checked and copied),
``stuff`` (COCO-Stuff 164k label maps, see :mod:`zeroseg.data.cocostuff`) and
``instances`` (COCO 2014 instances JSON, see :mod:`zeroseg.data.instances`). The images are
not copied: later stages read them from ``train_images`` / ``val_images``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from zeroseg.atomic import atomic_dir, write_json
from zeroseg.data.classes import split_classes
from zeroseg.data.cocostuff import stuffmaps_to_panoptic
from zeroseg.data.instances import (
    filter_instances,
    instances_to_panoptic,
    keep_classes,
    load_instances,
    panoptic_instances,
)
from zeroseg.data.panoptic import check_ids_match, default_png_dir, load_panoptic, read_id_png
from zeroseg.errors import ConfigError, DataError

FORMATS = ("panoptic", "stuff", "instances")


@dataclass(frozen=True)
class PrepareConfig:
    """params.yaml section ``prepare``: where the official files are and what they are."""

    format: str = "panoptic"  # panoptic | stuff | instances
    train_annotations: str = ""  # panoptic JSON | label-map folder | instances JSON
    val_annotations: str = ""
    train_images: str = ""  # image folders (read in place by later stages)
    val_images: str = ""
    classes: str = ""  # "" = every class of the files; a preset (coco-zsi-48-17) keeps only its classes
    workers: int = 1  # processes for the label-map conversion
    val_limit: int = 0  # keep only the first N validation images (by id) for quick checks; 0 = all (the protocol)

    def __post_init__(self) -> None:
        if self.val_limit < 0:
            raise ConfigError(f"prepare.val_limit: 0 (every image) or a number of images, got {self.val_limit}")
        if self.format not in FORMATS:
            raise ConfigError(f"prepare.format: one of {', '.join(FORMATS)}, got {self.format!r}")
        for key in ("train_annotations", "val_annotations", "train_images", "val_images"):
            if not getattr(self, key):
                raise ConfigError(f"prepare.{key}: empty; set it to the official COCO file or folder (see the README)")
        try:
            subset = split_classes(self.classes)
        except ValueError as exc:
            raise ConfigError(f"prepare.classes: {exc}") from exc
        if subset is not None and self.format != "instances":
            raise ConfigError(f"prepare.classes: class subsets are for the instances format, not {self.format!r}")


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    train_images: int
    val_images: int
    classes: int

    def metrics(self) -> dict[str, int]:
        return {"train_images": self.train_images, "val_images": self.val_images, "classes": self.classes}


def check_images(panoptic: dict[str, Any], image_dir: str | os.PathLike, source: object) -> None:
    """Every image the annotations list exists in ``image_dir``."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ConfigError(f"{image_dir}: image folder not found (prepare.train_images / prepare.val_images)")
    missing = [im["file_name"] for im in panoptic["images"] if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise DataError(f"{image_dir}: {len(missing)} image(s) listed in {source} are missing, e.g. {missing[:3]}")


def _copy_panoptic(src_json: Path, png_out: Path, desc: str) -> dict[str, Any]:
    """Validate a panoptic JSON + PNG folder and copy the PNGs (hard links where possible)."""
    ds = load_panoptic(src_json)
    missing = sorted(set(ds.images) - set(ds.annotations))
    if missing:
        raise DataError(f"{src_json}: image(s) {missing[:3]} have no entry in 'annotations'")
    src_png = default_png_dir(src_json)
    if not src_png.is_dir():
        raise DataError(f"{src_png}: the PNG folder of {src_json} is missing (COCO keeps it beside the JSON)")
    png_out.mkdir(parents=True)
    for iid, ann in tqdm(ds.annotations.items(), desc=desc, mininterval=5):
        check_ids_match(read_id_png(src_png, ann, ds.images[iid]), ann, str(src_png / ann["file_name"]))
        try:
            os.link(src_png / ann["file_name"], png_out / ann["file_name"])
        except OSError:
            shutil.copyfile(src_png / ann["file_name"], png_out / ann["file_name"])
    return ds.raw


def _one_split(cfg: PrepareConfig, src: str, tmp: Path, part: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(panoptic dict, instances GT dict or None) of one split, PNGs written under ``tmp``."""
    png_out = tmp / f"panoptic_{part}"
    if cfg.format == "panoptic":
        return _copy_panoptic(Path(src), png_out, f"prepare {part}"), None
    png_out.mkdir(parents=True)
    if cfg.format == "stuff":
        return stuffmaps_to_panoptic(src, png_out, workers=cfg.workers), None
    raw = load_instances(src)
    kept = keep_classes(raw, split_classes(cfg.classes), src)
    return instances_to_panoptic(raw, kept, png_out), filter_instances(raw, kept)


def _first_images(panoptic: dict[str, Any], instances: dict[str, Any] | None, n: int,
                  png_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The panoptic (and instances) dicts restricted to the ``n`` lowest image ids; the other
    images' segment PNGs are removed from ``png_dir``."""
    keep = set(sorted(im["id"] for im in panoptic["images"])[:n])
    for a in panoptic["annotations"]:
        if a["image_id"] not in keep:
            (png_dir / a["file_name"]).unlink(missing_ok=True)
    panoptic = dict(panoptic, images=[im for im in panoptic["images"] if im["id"] in keep],
                    annotations=[a for a in panoptic["annotations"] if a["image_id"] in keep])
    if instances is not None:
        instances = dict(instances, images=[im for im in instances["images"] if im["id"] in keep],
                         annotations=[a for a in instances["annotations"] if a["image_id"] in keep])
    return panoptic, instances


def prepare_coco(cfg: PrepareConfig, out: str | os.PathLike) -> PrepareResult:
    """Convert and check the official files named by ``cfg`` into ``out`` (all or nothing)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        sizes = {}
        for part, ann, images in (("train", cfg.train_annotations, cfg.train_images),
                                  ("val", cfg.val_annotations, cfg.val_images)):
            if not Path(ann).exists():
                raise ConfigError(f"prepare.{part}_annotations: {ann} not found")
            panoptic, instances = _one_split(cfg, ann, tmp, part)
            if part == "val" and cfg.val_limit:
                panoptic, instances = _first_images(panoptic, instances, cfg.val_limit, tmp / "panoptic_val")
            check_images(panoptic, images, ann)
            write_json(tmp / f"panoptic_{part}.json", panoptic, indent=None)
            if part == "val":
                instances = instances or panoptic_instances(load_panoptic(tmp / "panoptic_val.json"),
                                                            tmp / "panoptic_val")
                write_json(tmp / "instances_val.json", instances, indent=None)
            sizes[part] = len(panoptic["images"])
        n_classes = len(panoptic["categories"])
    return PrepareResult(out, sizes["train"], sizes["val"], n_classes)
