"""Stage ``synthesize``: features of every class drawn from a trained generator, written as a
feature store (one pseudo-image per class: ``image_id`` = category id, ``label`` = category id).
Unseen rows train the new classifier; seen rows are kept for the t-SNE picture."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store
from zeroseg.generator.checkpoint import load_generator, synthesize


@dataclass(frozen=True)
class SynthesizeConfig:
    """params.yaml section ``synthesize``."""

    per_class: int = 1000  # synthetic features per class (seen and unseen)
    seed: int = 0


def synthesize_store(generator: str | os.PathLike, cfg: SynthesizeConfig, out: str | os.PathLike) -> FeatureStore:
    gen, gcfg, space = load_generator(generator)
    feats, idx = synthesize(gen, space.emb, cfg.per_class, cfg.seed)
    ids = np.array(space.all_ids)[idx]
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    w = ShardWriter(tmp, "rank-000", feats.shape[1], "float32", chunk_rows=4096)
    for c in space.all_ids:
        rows = ids == c
        n = int(rows.sum())
        w.add_image(int(c), feats[rows], {"label": np.full(n, c, np.int32), "mask_iou": np.ones(n, np.float32),
                                          "score": np.ones(n, np.float32), "query_index": np.arange(n, dtype=np.int16)})
    w.close()
    finalize_store(tmp, out, {"dim": int(feats.shape[1]), "dtype": "float32", "synthetic": True,
                              "generator": str(generator), "seen_ids": space.seen_ids, "unseen_ids": space.unseen_ids,
                              "classes": [{"id": c} for c in space.all_ids]})
    return FeatureStore(out)
