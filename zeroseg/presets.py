"""Named unseen-class sets: the paper's COCO splits and the embedded benchmark's default.

Names are those of the dataset each split is defined on (COCO panoptic 2017 for ZSP,
COCO-Stuff 171 for ZSS, COCO 2014 instances for ZSI); see ``../shared/docs/method.md``.
"""

from __future__ import annotations

from zeroseg.errors import ConfigError

from zeroseg.synth import DEFAULT_UNSEEN

PRESETS: dict[str, tuple[str, ...]] = {
    # ZSP 119/14 on COCO panoptic 2017 (panoptic ids 21 25 33 34 41 57 87 100 145 148 149 184 187 193)
    "coco-zsp": (
        "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard",
        "sky-other-merged", "grass-merged", "playingfield", "river", "road", "tree-merged",
    ),
    # ZSS 156/15 on COCO-Stuff (171 classes)
    "coco-zss": (
        "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard",
        "clouds", "grass", "playingfield", "river", "road", "tree", "wall-concrete",
    ),
    # ZSI 48/17 on COCO 2014 instances (15 further COCO classes belong to neither side)
    "coco-zsi-48-17": (
        "bus", "dog", "cow", "elephant", "umbrella", "tie", "skateboard", "cup", "knife", "cake",
        "couch", "keyboard", "sink", "scissors", "airplane", "cat", "snowboard",
    ),
    # ZSI 65/15 on COCO 2014 instances
    "coco-zsi-65-15": (
        "airplane", "train", "parking meter", "cat", "bear", "suitcase", "frisbee", "snowboard",
        "fork", "sandwich", "hot dog", "toilet", "mouse", "toaster", "hair drier",
    ),
    # the embedded benchmark's default unseen classes
    "synth-default": DEFAULT_UNSEEN,
}


#: Splits that leave some classes of their dataset out entirely: the classes they use (seen +
#: unseen). ZSI 48/17 ignores 15 of COCO's 80 thing classes; the other presets use them all.
SPLIT_CLASSES: dict[str, tuple[str, ...]] = {
    "coco-zsi-48-17": (
        "person", "bicycle", "car", "motorcycle", "truck", "boat", "bench", "bird", "horse", "sheep", "zebra",
        "giraffe", "backpack", "handbag", "skis", "kite", "surfboard", "bottle", "spoon", "bowl", "banana", "apple",
        "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed", "tv", "laptop", "remote", "microwave",
        "oven", "refrigerator", "book", "clock", "vase", "toothbrush", "train", "bear", "suitcase", "frisbee", "fork",
        "sandwich", "toilet", "mouse", "toaster",
    ) + PRESETS["coco-zsi-48-17"],
}


def split_classes(spec: str) -> tuple[str, ...] | None:
    """The classes a preset uses (seen + unseen), or None when it uses every class of its dataset
    ("" or a preset without an entry in :data:`SPLIT_CLASSES`)."""
    spec = spec.strip()
    if spec and spec not in PRESETS:
        raise ConfigError(f"unknown preset {spec!r}; presets: {sorted(PRESETS)}")
    return SPLIT_CLASSES.get(spec)


def resolve_unseen(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A preset name, or comma-separated class names, or a list of names -> class names."""
    if isinstance(spec, (list, tuple)):
        names = [str(n).strip() for n in spec]
    elif spec.strip() in PRESETS:
        return PRESETS[spec.strip()]
    else:
        names = [n.strip() for n in spec.split(",")]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"no unseen classes given in {spec!r}; presets: {sorted(PRESETS)}")
    return tuple(dict.fromkeys(names))
