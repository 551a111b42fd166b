"""The baseline rows (params ``baselines``): name -> the function that makes the row's head.

A generator row's head is retrained on its synthetic unseen features; a baseline row has no
generator. The one mapping :data:`BASELINES` is read by stage ``retrain_classifier``
(``--baseline NAME``), by ``zeroseg retrain-classifier --baseline`` and by the params check of
tests/test_architecture.py. A new baseline is a function ``(HeadInputs) -> (Head, kind)`` and one
entry here; the report lists it before the generator rows (after them when it is an upper bound:
``zeroseg.stage.UPPER_BOUNDS``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from zeroseg.embed.space import ClassSpace
from zeroseg.errors import DataError
from zeroseg.features.store import FeatureStore
from zeroseg.head.model import Head
from zeroseg.head.projection import train_projection
from zeroseg.head.train import ClassifierConfig, SeenRows, UnseenPool, retrain_head, unseen_rows


@dataclass(frozen=True)
class HeadInputs:
    """What a row's head is made from, loaded once by :func:`zeroseg.head.retrain.retrain_classifier`."""

    cfg: ClassifierConfig
    space: ClassSpace  # seen then unseen class ids and their class-name embeddings (K, E)
    isthing: list[bool]  # per class of ``space.all_ids``
    segmenter: Head  # the segmenter's own seen head (C + 1 outputs): a retrained head starts from it
    seen: SeenRows  # every query of the seen training store with its label
    unseen_store: str | os.PathLike | None = None  # unseen features: synthetic (a generator row) or real (the oracle)

    def retrained(self, store: str | os.PathLike) -> tuple[Head, str]:
        """The official retraining (:func:`~zeroseg.head.train.retrain_head`) from the segmenter's
        head, with the unseen features of ``store``."""
        ns, nu = len(self.space.seen_ids), len(self.space.unseen_ids)
        pool = UnseenPool(*unseen_rows(FeatureStore(store), self.space.unseen_ids, self.cfg.min_iou), nu)
        w, b = retrain_head(self.cfg, self.seen, pool, self.segmenter.weight, self.segmenter.bias, ns, nu)
        return Head(w, b, self.space.all_ids, self.isthing), f"retrained on {store}"


Baseline = Callable[[HeadInputs], tuple[Head, str]]


def projection(inputs: HeadInputs) -> tuple[Head, str]:
    """ZegFormer-seg-like: a projection of the query features onto the class-name embeddings,
    trained on seen features only (:func:`~zeroseg.head.projection.train_projection`)."""
    w, b, pw, pb = train_projection(inputs.cfg, inputs.seen, inputs.space.emb, len(inputs.space.seen_ids))
    return Head(w, b, inputs.space.all_ids, inputs.isthing, pw, pb), "projection"


def oracle(inputs: HeadInputs) -> tuple[Head, str]:
    """The upper bound: the official retraining with the REAL unseen features of the images the
    split removed (``--unseen-features``) in place of synthetic ones."""
    if inputs.unseen_store is None:
        raise DataError("baseline oracle: give the store of the real unseen features (--unseen-features)")
    return inputs.retrained(inputs.unseen_store)


BASELINES: dict[str, Baseline] = {
    "projection": projection,
    "oracle": oracle,
}
