"""COCO-Stuff 164k semantic maps (``stuffthingmaps_trainval2017``) -> the COCO panoptic format.

Official layout (https://github.com/nightrome/cocostuff): ``stuffthingmaps_trainval2017/
{train2017,val2017}/<12-digit image id>.png``, single-channel uint8, value ``v`` in 0..181 is
COCO-Stuff class ``v + 1`` (0 = person) and 255 is unlabelled. 11 thing ids are defined but
never used, which leaves the 171 classes of the ZSS benchmark.

Semantic maps have no instances, so every class present in an image becomes ONE segment and
every category is written with ``isthing: 0`` (Mask2Former's semantic setting: one mask per
class). Category ids are the COCO-Stuff ids (1..182), so things keep their COCO ids.
"""

from __future__ import annotations

import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pyspng

from zeroseg.data.panoptic import segment_info, write_ids
from zeroseg.errors import DataError

#: COCO-Stuff class names; index = pixel value in the official maps (class id - 1).
COCOSTUFF_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster",
    "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush", "banner", "blanket", "branch", "bridge", "building-other",
    "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth",
    "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff",
    "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other",
    "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
#: Thing classes defined by COCO but never annotated (absent from the 171-class benchmark).
UNUSED: frozenset[str] = frozenset({
    "street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door", "blender", "hair brush",
})
#: The 171 classes in use: name -> pixel value.
USED: dict[str, int] = {n: v for v, n in enumerate(COCOSTUFF_NAMES) if n not in UNUSED}
UNLABELLED = 255  # the pixel value of unlabelled pixels in COCO-Stuff's label maps (not a class)
NUM_THINGS = 91  # values 0..90 are COCO's thing ids 1..91; 91.. are stuff


def cocostuff_categories() -> list[dict]:
    """The 171 used COCO-Stuff classes as panoptic categories (id = COCO-Stuff id, isthing 0)."""
    return [{"id": v + 1, "name": n, "isthing": 0, "supercategory": "thing" if v < NUM_THINGS else "stuff"}
            for n, v in USED.items()]


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) uint8 COCO-Stuff label map; clear errors for missing, corrupt or RGB files."""
    try:
        arr = pyspng.load(path.read_bytes())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: label map missing") from exc
    except Exception as exc:
        raise DataError(f"{path}: unreadable label map: {exc}") from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise DataError(f"{path}: a COCO-Stuff label map is single-channel 8-bit, got shape {arr.shape} {arr.dtype}")
    return arr


_VALID = np.zeros(256, bool)
_VALID[list(USED.values())] = True
_VALID[UNLABELLED] = True


def convert_map(args: tuple[Path, Path, str]) -> tuple[dict, dict]:
    """One label map -> (image entry, annotation entry); writes the segment PNG."""
    src, png_dir, image_ext = args
    lab = read_label_map(src)
    bad = np.unique(lab[~_VALID[lab]])
    if bad.size:
        raise DataError(f"{src}: pixel values {bad.tolist()[:5]} are not COCO-Stuff classes (0..181 in use, 255 "
                        "unlabelled)")
    try:
        image_id = int(src.stem)
    except ValueError as exc:
        raise DataError(f"{src}: file name is not a COCO image id (expected e.g. 000000000139.png)") from exc
    ids = np.where(lab == UNLABELLED, 0, lab.astype(np.int64) + 1)
    segments = [segment_info(v, v, ids == v) for v in np.unique(ids).tolist() if v]
    write_ids(png_dir / f"{src.stem}.png", ids)
    h, w = lab.shape
    image = {"id": image_id, "file_name": src.stem + image_ext, "height": h, "width": w}
    return image, {"image_id": image_id, "file_name": f"{src.stem}.png", "segments_info": segments}


def stuffmaps_to_panoptic(map_dir: str | os.PathLike, png_dir: str | os.PathLike, image_ext: str = ".jpg",
                          workers: int = 1) -> dict:
    """Convert every ``*.png`` of ``map_dir`` into ``png_dir``; returns the panoptic JSON dict."""
    map_dir, png_dir = Path(map_dir), Path(png_dir)
    if not map_dir.is_dir():
        raise DataError(f"{map_dir}: COCO-Stuff label-map folder not found (expected "
                        "stuffthingmaps_trainval2017/<split>)")
    maps = sorted(map_dir.glob("*.png"))
    if not maps:
        raise DataError(f"{map_dir}: no label maps (*.png) in the folder")
    jobs = [(m, png_dir, image_ext) for m in maps]
    if workers > 1:
        with Pool(workers) as pool:
            done = pool.map(convert_map, jobs, chunksize=64)
    else:
        done = [convert_map(j) for j in jobs]
    return {"info": {"description": f"COCO-Stuff semantic maps from {map_dir} as panoptic segments"},
            "images": [d[0] for d in done], "annotations": [d[1] for d in done], "categories": cocostuff_categories()}
