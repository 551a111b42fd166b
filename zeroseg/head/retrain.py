"""Stage ``retrain_classifier``: the class head of one ablation row, saved as a head checkpoint
(a generator row's head retrained on its synthetic features, the joint schedule's head, the
oracle's or the projection baseline's)."""

from __future__ import annotations

import os

from zeroseg.data.classes import unseen_from_split
from zeroseg.data.panoptic import load_panoptic
from zeroseg.embed.space import class_space
from zeroseg.errors import DataError
from zeroseg.features.store import FeatureStore
from zeroseg.head.model import Head, JointHead, save_head, segmenter_head
from zeroseg.head.projection import train_projection
from zeroseg.head.train import ClassifierConfig, SeenRows, UnseenPool, retrain_head, unseen_rows


def retrain_classifier(cfg: ClassifierConfig, segmenter: str | os.PathLike, seen_store: str | os.PathLike,
                       embeddings: str | os.PathLike, categories_json: str | os.PathLike, out: str | os.PathLike,
                       unseen_store: str | os.PathLike | None = None, projection: bool = False,
                       joint: JointHead | None = None) -> Head:
    """A head over seen + unseen + no-object, saved to ``out``.

    ``unseen_store``: where unseen features come from (a synthesized store, or the real
    features of the images the split removed: the oracle). ``projection``: the projection
    baseline instead (no unseen features at all). ``joint``: the head a generator trained
    alongside itself (schedule joint; :func:`zeroseg.generator.train.joint_head`), which is the
    row's head: nothing is retrained."""
    sh = segmenter_head(segmenter)
    space = class_space(embeddings, sh.class_ids)
    split_unseen = unseen_from_split(categories_json)
    if set(space.unseen_ids) != split_unseen:
        raise DataError(f"{embeddings}: unseen classes {space.unseen_ids} differ from the split's {sorted(split_unseen)}")
    cats = load_panoptic(categories_json).categories
    isthing = [cats[c].isthing for c in space.all_ids]
    ns, nu = len(space.seen_ids), len(space.unseen_ids)
    if joint is not None and not projection:
        if list(joint.class_ids) != space.all_ids:
            raise DataError(f"{joint.source}: the joint head's classes {list(joint.class_ids)[:5]}... differ from "
                            f"{space.all_ids[:5]}... ({embeddings})")
        head, kind = Head(joint.weight, joint.bias, space.all_ids, isthing), f"trained jointly with {joint.source}"
        save_head(out, head, cfg, kind)
        return head
    seen = SeenRows(FeatureStore(seen_store), space.seen_ids, cfg.min_iou)
    if seen.x.shape[1] != sh.weight.shape[1]:
        raise DataError(f"{seen_store}: feature dim {seen.x.shape[1]} != segmenter head dim {sh.weight.shape[1]}")
    if projection:
        w, b, pw, pb = train_projection(cfg, seen, space.emb, ns)
        head, kind = Head(w, b, space.all_ids, isthing, pw, pb), "projection"
    else:
        if unseen_store is None:
            raise DataError("retrain_classifier: give the unseen features' store (synthesized, or real for the oracle)")
        pool = UnseenPool(*unseen_rows(FeatureStore(unseen_store), space.unseen_ids, cfg.min_iou), nu)
        w, b = retrain_head(cfg, seen, pool, sh.weight, sh.bias, ns, nu)
        head, kind = Head(w, b, space.all_ids, isthing), f"retrained on {unseen_store}"
    save_head(out, head, cfg, kind)
    return head
