"""Embedded benchmark: a seeded synthetic panoptic world written in the COCO panoptic format.

Things are objects named by attribute phrases ("red circle" = colour × shape); stuff
classes are textured background regions with natural names, each defined by a tint and
a texture ("sand" = yellow, speckled). Every class also lists its attribute words in
``categories[].attributes`` (an extra field that COCO readers ignore), so a semantic
source can embed attributes word by word. The default unseen set is chosen so that every
unseen class shares each of its attributes with some seen class: zero-shot transfer is
possible, and measurable with the same split rule and evaluators as COCO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zeroseg.atomic import atomic_dir, write_json, written
from zeroseg.data.panoptic import write_ids
from zeroseg.errors import ConfigError

#: Saturated object colours (RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 30),
    "purple": (150, 50, 200),
    "orange": (245, 140, 20),
}
#: Object shapes drawn by :func:`shape_mask`.
SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")
#: Muted tints for stuff textures (RGB).
TINTS: dict[str, tuple[int, int, int]] = {
    "blue": (110, 150, 205),
    "green": (80, 135, 70),
    "yellow": (205, 185, 120),
    "grey": (120, 120, 125),
    "white": (225, 228, 235),
    "brown": (130, 90, 60),
    "red": (165, 75, 60),
}
#: Stuff classes: natural name -> (tint, texture).
STUFF: dict[str, tuple[str, str]] = {
    "sky": ("blue", "smooth"),
    "water": ("blue", "wavy"),
    "grass": ("green", "speckled"),
    "hedge": ("green", "striped"),
    "sand": ("yellow", "speckled"),
    "wheat field": ("yellow", "striped"),
    "road": ("grey", "smooth"),
    "snow": ("white", "smooth"),
    "brick wall": ("red", "striped"),
    "mud": ("brown", "wavy"),
}


@dataclass(frozen=True)
class BenchmarkConfig:
    """Size and content of the embedded benchmark (params.yaml section ``benchmark``)."""

    seed: int = 0
    image_size: int = 96
    train_images: int = 600
    val_images: int = 150
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    stuff: tuple[str, ...] = ("sky", "water", "grass", "sand", "wheat field", "road", "snow", "brick wall")
    objects_per_image: tuple[int, int] = (1, 3)
    stuff_regions: tuple[int, int] = (1, 3)
    object_size: tuple[float, float] = (0.22, 0.42)
    min_segment_area: int = 24
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        for c in self.colours:
            if c not in COLOURS:
                raise ConfigError(f"benchmark.colours: unknown colour {c!r}; known: {sorted(COLOURS)}")
        for s in self.shapes:
            if s not in SHAPES:
                raise ConfigError(f"benchmark.shapes: unknown shape {s!r}; known: {list(SHAPES)}")
        for s in self.stuff:
            if s not in STUFF:
                raise ConfigError(f"benchmark.stuff: unknown stuff class {s!r}; known: {sorted(STUFF)}")
        lo, hi = self.objects_per_image
        if not 0 <= lo <= hi:
            raise ConfigError(f"benchmark.objects_per_image: need 0 <= min <= max, got {self.objects_per_image}")
        lo, hi = self.stuff_regions
        if not 1 <= lo <= hi <= len(self.stuff):
            raise ConfigError(f"benchmark.stuff_regions: need 1 <= min <= max <= {len(self.stuff)}, got "
                              f"{self.stuff_regions}")
        if self.image_size < 32:
            raise ConfigError(f"benchmark.image_size: at least 32 px, got {self.image_size}")

    def classes(self) -> list[dict]:
        """COCO categories: things first (colour × shape), then stuff; ids from 1."""
        cats = []
        for colour in self.colours:
            for shape in self.shapes:
                cats.append({"name": f"{colour} {shape}", "isthing": 1, "attributes": [colour, shape],
                             "supercategory": shape, "color": list(COLOURS[colour])})
        for name in self.stuff:
            tint, texture = STUFF[name]
            cats.append({"name": name, "isthing": 0, "attributes": [tint, texture],
                         "supercategory": texture, "color": list(TINTS[tint])})
        for i, c in enumerate(cats, start=1):
            c["id"] = i
        return cats


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(size, size) bool mask of ``shape`` centred at (cx, cy) with radius r, rotated by angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    if shape == "circle":
        return rho <= r
    if shape == "ring":
        return (rho <= r) & (rho >= 0.55 * r)
    if shape == "square":
        half = r * 0.82
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "cross":
        arm = r * 0.33
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    if shape == "triangle":
        # equilateral: inside all three half-planes at distance r/2 from the centre
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = angle + np.pi / 2 + k * 2 * np.pi / 3
            inside &= (dx * np.cos(a) + dy * np.sin(a)) >= -r / 2
        return inside
    if shape == "star":
        bound = r * (0.55 + 0.45 * np.cos(5 * theta) ** 2 * (np.cos(5 * theta) > 0))
        return rho <= np.maximum(bound, 0.45 * r)
    raise ConfigError(f"unknown shape {shape!r}")


def texture(kind: str, tint: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 texture of ``kind`` in ``tint``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.asarray(tint, np.float32)
    if kind == "smooth":
        g = rng.uniform(-0.12, 0.12)
        shade = 1.0 + g * (yy / size - 0.5)
    elif kind == "wavy":
        f, p = rng.uniform(0.25, 0.4), rng.uniform(0, 2 * np.pi)
        shade = 1.0 + 0.22 * np.sin(f * yy + 2.0 * np.sin(0.15 * xx + p))
    elif kind == "speckled":
        shade = 1.0 + 0.3 * (rng.random((size, size)) > 0.75) - 0.3 * (rng.random((size, size)) > 0.8)
    elif kind == "striped":
        period = int(rng.integers(6, 9))
        row = (yy.astype(int) // period) % 2
        mortar = ((yy.astype(int) % period) == 0) | (((xx.astype(int) + row * period) % (2 * period)) == 0)
        shade = np.where(mortar, 0.6, 1.0)
    else:
        raise ConfigError(f"unknown texture {kind!r}")
    img = base[None, None, :] * shade[..., None]
    return img + rng.normal(0, 4, img.shape).astype(np.float32)


def render_image(cfg: BenchmarkConfig, cats: list[dict],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw one image. Returns RGB (S, S, 3) uint8, segment ids (S, S) int64, segments_info."""
    S = cfg.image_size
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    rgb = np.zeros((S, S, 3), np.float32)
    cat_map = np.zeros((S, S), np.int64)  # per pixel: index into `layers`
    layers: list[dict] = []

    # stuff: warped Voronoi cells, one class each
    k = int(rng.integers(cfg.stuff_regions[0], cfg.stuff_regions[1] + 1))
    chosen = rng.choice(len(stuff), size=k, replace=False)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    wx = xx + 6 * np.sin(yy / S * 2 * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3))
    wy = yy + 6 * np.sin(xx / S * 2 * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3))
    seeds = rng.uniform(0, S, size=(k, 2))
    dist = np.stack([(wx - sx) ** 2 + (wy - sy) ** 2 for sx, sy in seeds])
    region = dist.argmin(0)
    for r, ci in enumerate(chosen):
        cat = stuff[ci]
        tint, tex = STUFF[cat["name"]]
        m = region == r
        rgb[m] = texture(tex, TINTS[tint], S, rng)[m]
        cat_map[m] = len(layers)
        layers.append({"cat": cat, "isthing": False})

    # things: drawn in order, later ones occlude earlier ones
    n = int(rng.integers(cfg.objects_per_image[0], cfg.objects_per_image[1] + 1))
    for _ in range(n):
        cat = things[int(rng.integers(len(things)))]
        colour, shape = cat["attributes"]
        r = rng.uniform(*cfg.object_size) * S / 2
        cx, cy = rng.uniform(r * 0.6, S - r * 0.6, size=2)
        m = shape_mask(shape, S, cx, cy, r, rng.uniform(0, 2 * np.pi))
        if not m.any():
            continue
        col = np.asarray(COLOURS[colour], np.float32) + rng.normal(0, 8, 3)
        shade = 1.0 + 0.15 * ((yy - cy) / (2 * r)).clip(-1, 1)
        rgb[m] = (col[None, :] * shade[m][:, None]) + rng.normal(0, 5, (int(m.sum()), 3))
        cat_map[m] = len(layers)
        layers.append({"cat": cat, "isthing": True})

    # segment ids: random 24-bit, unique per image (as in COCO); tiny remnants -> VOID
    ids = np.zeros((S, S), np.int64)
    segments = []
    used: set[int] = set()
    for li, layer in enumerate(layers):
        m = cat_map == li
        area = int(m.sum())
        if area == 0:
            continue
        if area < cfg.min_segment_area:
            continue  # left as VOID (id 0), like COCO's unlabelled pixels
        sid = int(rng.integers(1, 256**3))
        while sid in used:
            sid = int(rng.integers(1, 256**3))
        used.add(sid)
        ids[m] = sid
        ys, xs = np.nonzero(m)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        segments.append({"id": sid, "category_id": layer["cat"]["id"], "area": area, "bbox": bbox, "iscrowd": 0})
    return np.clip(rgb, 0, 255).astype(np.uint8), ids, segments


@dataclass(frozen=True)
class BenchmarkResult:
    out_dir: Path
    splits: dict[str, Path]  # split name -> panoptic JSON
    num_classes: int


def generate(cfg: BenchmarkConfig, out_dir: str | os.PathLike) -> BenchmarkResult:
    """Write the benchmark to ``out_dir`` (atomically): for split in (train, val):
    ``<split>/*.jpg``, ``annotations/panoptic_<split>.json`` and ``annotations/panoptic_<split>/*.png``.
    """
    out_dir = Path(out_dir)
    cats = cfg.classes()
    sizes = {"train": cfg.train_images, "val": cfg.val_images}
    with atomic_dir(out_dir) as tmp:
        for split_idx, (split, count) in enumerate(sizes.items()):
            (tmp / split).mkdir()
            png_dir = tmp / "annotations" / f"panoptic_{split}"
            png_dir.mkdir(parents=True)
            images, anns = [], []
            for i in range(count):
                rng = np.random.default_rng([cfg.seed, split_idx, i])
                image_id = split_idx * 1_000_000 + i + 1
                rgb, ids, segments = render_image(cfg, cats, rng)
                stem = f"{image_id:012d}"
                Image.fromarray(rgb).save(tmp / split / f"{stem}.jpg", quality=cfg.jpeg_quality)
                write_ids(png_dir / f"{stem}.png", ids)
                written()  # the test hook: one image + PNG done in the temporary folder
                images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": cfg.image_size,
                               "width": cfg.image_size, "license": 1})
                anns.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
            write_json(tmp / "annotations" / f"panoptic_{split}.json", {
                "info": {"description": f"zeroseg embedded benchmark ({split})", "version": "1.0", "seed": cfg.seed},
                "licenses": [{"id": 1, "name": "CC0 1.0 (synthetic)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
                "images": images, "annotations": anns, "categories": cats,
            }, indent=None)
    return BenchmarkResult(out_dir, {s: out_dir / "annotations" / f"panoptic_{s}.json" for s in sizes}, len(cats))
