"""Stage ``retrain_classifier``: the class head of one ablation row, saved as a head checkpoint
(a generator row's head retrained on its synthetic features, the joint schedule's head, or a
baseline's: :mod:`zeroseg.head.baselines`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from zeroseg.data.classes import unseen_from_split
from zeroseg.data.panoptic import load_panoptic
from zeroseg.embed.space import class_space
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import FeatureStore
from zeroseg.head.baselines import BASELINES, HeadInputs
from zeroseg.head.model import Head, JointHead, save_head, segmenter_head
from zeroseg.head.train import ClassifierConfig, SeenRows


@dataclass(frozen=True)
class HeadFiles:
    """The files a row's head is made from, and where it is saved."""

    segmenter: str | os.PathLike  # segmenter checkpoint: its seen head initialises the new one
    seen_store: str | os.PathLike  # query features of the seen training images
    embeddings: str | os.PathLike  # class-name embeddings (stage embed's Parquet)
    categories_json: str | os.PathLike  # the split's *_all.json (seen / unseen, thing / stuff)
    out: str | os.PathLike  # the head checkpoint to write
    unseen_store: str | os.PathLike | None = None  # unseen features: synthetic, or real (the oracle)


def retrain_classifier(cfg: ClassifierConfig, files: HeadFiles, baseline: str | None = None,
                       joint: JointHead | None = None) -> Head:
    """A head over seen + unseen + no-object, saved to ``files.out``.

    A generator row (``baseline`` None) retrains the head on the unseen features of
    ``files.unseen_store``, unless ``joint`` holds the head its generator trained alongside itself
    (schedule joint; :func:`zeroseg.generator.checkpoint.joint_head`), which is the row's head:
    nothing is retrained. ``baseline``: an entry of :data:`~zeroseg.head.baselines.BASELINES`."""
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"baseline: one of {', '.join(BASELINES)}, got {baseline!r}")
    if baseline is not None and joint is not None:
        raise ConfigError(f"baseline {baseline}: a baseline row has no generator, so no joint head")
    sh = segmenter_head(files.segmenter)
    space = class_space(files.embeddings, sh.class_ids)
    split_unseen = unseen_from_split(files.categories_json)
    if set(space.unseen_ids) != split_unseen:
        raise DataError(f"{files.embeddings}: unseen classes {space.unseen_ids} differ from the split's "
                        f"{sorted(split_unseen)}")
    cats = load_panoptic(files.categories_json).categories
    isthing = [cats[c].isthing for c in space.all_ids]
    if joint is not None:
        if list(joint.class_ids) != space.all_ids:
            raise DataError(f"{joint.source}: the joint head's classes {list(joint.class_ids)[:5]}... differ from "
                            f"{space.all_ids[:5]}... ({files.embeddings})")
        head = Head(joint.weight, joint.bias, space.all_ids, isthing)
        save_head(files.out, head, cfg, f"trained jointly with {joint.source}")
        return head
    seen = SeenRows(FeatureStore(files.seen_store), space.seen_ids, cfg.min_iou)
    if seen.x.shape[1] != sh.weight.shape[1]:
        raise DataError(f"{files.seen_store}: feature dim {seen.x.shape[1]} != segmenter head dim {sh.weight.shape[1]}")
    inputs = HeadInputs(cfg, space, isthing, sh, seen, files.unseen_store)
    if baseline is not None:
        head, kind = BASELINES[baseline](inputs)
    elif files.unseen_store is None:
        raise DataError("retrain_classifier: give the unseen features' store (synthesized, or real for the oracle)")
    else:
        head, kind = inputs.retrained(files.unseen_store)
    save_head(files.out, head, cfg, kind)
    return head
