"""Class names as text: COCO's machine names made readable, synonyms split.

``tree-merged`` -> ``tree``; ``sky-other-merged`` -> ``sky``; ``playingfield`` ->
``playing field``; ``wall-brick`` -> ``brick wall``; ``"couch, sofa"`` -> two synonyms
whose embeddings are averaged.
"""

from __future__ import annotations

import re

from zeroseg.errors import DataError

_SUFFIXES = ("-merged", "-other", "-stuff")
_COMPOUNDS = {"playingfield": "playing field", "waterdrops": "water drops", "tv": "tv monitor"}


def clean_name(name: str) -> str:
    """One readable phrase for a machine class name (no synonyms)."""
    n = name.strip().lower()
    changed = True
    while changed:
        changed = False
        for suf in _SUFFIXES:
            if n.endswith(suf):
                n, changed = n[: -len(suf)], True
    n = _COMPOUNDS.get(n, n)
    parts = [p for p in re.split(r"[-_]", n) if p]
    if len(parts) == 2 and "-" in n:
        n = f"{parts[1]} {parts[0]}"  # wall-brick -> brick wall, floor-wood -> wood floor
    else:
        n = " ".join(parts)
    return re.sub(r"\s+", " ", n).strip()


def synonyms(name: str) -> list[str]:
    """Readable synonyms of a class name ("a, b" lists several); errors on an empty name."""
    out = [clean_name(s) for s in name.split(",")]
    out = [s for s in out if s]
    if not out:
        raise DataError(f"class name {name!r} is empty after cleaning")
    return list(dict.fromkeys(out))


def match_key(name: str) -> str:
    """Key for matching names across tables: ``tree-merged`` and ``tree`` match."""
    return clean_name(name.split(",")[0])
