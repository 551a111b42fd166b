"""Class sets: which classes are unseen. The paper's COCO splits and the embedded benchmark's
default as named presets, the classes a split uses, class-name matching with close-name hints,
the attribute check of an unseen set, and the unseen ids a split recorded (the ``split`` field
``zeroseg split`` writes on every category). Every module that needs an unseen set asks here.

Names are those of the dataset each split is defined on (COCO panoptic 2017 for ZSP,
COCO-Stuff 171 for ZSS, COCO 2014 instances for ZSI); see ``../shared/docs/method.md``.
"""

from __future__ import annotations

import difflib
import os

from zeroseg.data.panoptic import Category, load_panoptic
from zeroseg.errors import ConfigError, DataError

#: The embedded benchmark's default unseen classes (preset ``benchmark-default``): each shares
#: every attribute with some seen class (zeroseg/benchmark.py).
BENCHMARK_UNSEEN = ("red triangle", "green square", "blue circle", "yellow triangle", "sand")

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
    "benchmark-default": BENCHMARK_UNSEEN,
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


def unseen_ids(categories: dict[int, Category], spec: str | list[str] | tuple[str, ...], source: object) -> set[int]:
    """The category ids of an unseen set: a preset name, comma-separated names or a list."""
    return set(match_class_names(categories, resolve_unseen(spec), source).values())


def unseen_ids_of(categories: dict[int, Category], spec: str | None,
                  source: object = "ground truth") -> set[int] | None:
    """Unseen category ids from a preset/name list, else from the categories' ``split`` field,
    else None (no seen/unseen distinction)."""
    if spec:
        return unseen_ids(categories, spec, source)
    if categories and all("split" in c.raw for c in categories.values()):
        return {cid for cid, c in categories.items() if c.raw["split"] == "unseen"}
    return None


def unseen_from_split(split_categories_json: str | os.PathLike) -> set[int]:
    """Unseen category ids from the ``split`` field written by ``zeroseg split``."""
    unseen = unseen_ids_of(load_panoptic(split_categories_json).categories, None)
    if unseen is None:
        raise DataError(f"{split_categories_json}: categories lack the 'split' field (use zeroseg split's *_all.json)")
    return unseen


def check_attribute_coverage(categories: list[dict], unseen: tuple[str, ...]) -> None:
    """Each unseen class must share every attribute (by position) with some seen class of
    its kind (thing/stuff); otherwise zero-shot transfer to it is impossible by design."""
    by_name = {c["name"]: c for c in categories}
    seen = [c for c in categories if c["name"] not in unseen]
    for u in unseen:
        cat = by_name[u]
        for pos, attr in enumerate(cat["attributes"]):
            if not any(s["isthing"] == cat["isthing"] and s["attributes"][pos] == attr for s in seen):
                raise ConfigError(
                    f"unseen class {u!r} has attribute {attr!r} that no seen "
                    f"{'thing' if cat['isthing'] else 'stuff'} class shares: zero-shot transfer impossible"
                )
