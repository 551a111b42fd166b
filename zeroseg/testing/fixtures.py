"""Official-format COCO-Stuff label maps and COCO instances files made from a COCO panoptic set.

The CPU smoke runs of the ZSS and ZSI pipelines need files in those official formats; the
shared real data (coco-mini) has panoptic annotations only. These converters write what the
official releases contain for the same images: a label map (value = COCO-Stuff id - 1, 255
unlabelled; a merged panoptic class takes the COCO-Stuff class of the same name, e.g.
``tree-merged`` -> ``tree``) and an instances JSON with RLE masks of the thing segments.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from zeroseg.atomic import atomic_dir, atomic_file, write_json
from zeroseg.data.cocostuff import UNLABELLED, USED
from zeroseg.data.instances import panoptic_instances
from zeroseg.data.names import match_key
from zeroseg.data.panoptic import PanopticDataset, default_png_dir, load_panoptic, read_id_png
from zeroseg.errors import DataError

_KEYED = {match_key(n): v for n, v in USED.items()}


def cocostuff_value(name: str) -> int:
    """The label-map value of a panoptic class name (exact COCO-Stuff name, else the cleaned one)."""
    value = USED.get(name, _KEYED.get(match_key(name)))
    if value is None:
        raise DataError(f"panoptic class {name!r} has no COCO-Stuff counterpart")
    return value


def _load(panoptic_json: str | os.PathLike) -> tuple[PanopticDataset, Path]:
    ds = load_panoptic(panoptic_json)
    return ds, default_png_dir(panoptic_json)


def panoptic_to_stuffmaps(panoptic_json: str | os.PathLike, out_dir: str | os.PathLike) -> int:
    """One ``<image id:012d>.png`` label map per image into ``out_dir``; returns the count."""
    ds, png_dir = _load(panoptic_json)
    value = {cid: cocostuff_value(c.name) for cid, c in ds.categories.items()}
    with atomic_dir(out_dir) as tmp:
        for iid, ann in ds.annotations.items():
            ids = read_id_png(png_dir, ann, ds.images[iid])
            lut = {0: UNLABELLED} | {s["id"]: value[s["category_id"]] for s in ann["segments_info"]}
            keys = np.array(sorted(lut), np.int64)
            lab = np.array([lut[k] for k in keys], np.uint8)[np.searchsorted(keys, ids)]
            Image.fromarray(lab).save(tmp / f"{Path(ds.images[iid]['file_name']).stem}.png")
    return len(ds.annotations)


def panoptic_to_instances(panoptic_json: str | os.PathLike, out_json: str | os.PathLike) -> int:
    """A COCO instances JSON of the thing segments (crowd ones with iscrowd 1); returns the count."""
    ds, png_dir = _load(panoptic_json)
    out = panoptic_instances(ds, png_dir)
    with atomic_file(out_json) as tmp:
        write_json(tmp, out, indent=None)
    return len(out["annotations"])
