"""Reading the class-name embeddings a run wrote (``embed`` stage Parquet) and the class space of a
run: the segmenter's seen classes then the split's unseen ones, with their embeddings in that
order (rows of ``emb``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from zeroseg.errors import DataError


def read_embeddings(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """(table, (N, D) float32 vectors, metadata) of an embed Parquet file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: class-embedding file not found")
    t = pq.read_table(p)
    meta = json.loads((t.schema.metadata or {}).get(b"zeroseg", b"{}"))
    df = t.to_pandas()
    for col in ("category_id", "name", "split", "vector"):
        if col not in df.columns:
            raise DataError(f"{p}: column '{col}' missing")
    dims = sorted({len(v) for v in df["vector"]})
    if len(dims) != 1:
        raise DataError(f"{p}: class vectors have different dimensions {dims}")
    if meta.get("dim") is not None and dims[0] != meta["dim"]:
        raise DataError(f"{p}: vectors are {dims[0]}-d but the metadata says {meta['dim']}-d")
    vecs = np.stack(df["vector"].to_numpy()).astype(np.float32)
    return df, vecs, meta


@dataclass
class ClassSpace:
    """Classes known to the semantic space: seen (from the segmenter) then unseen."""

    seen_ids: list[int]
    unseen_ids: list[int]
    emb: torch.Tensor  # (len(seen) + len(unseen), E), L2-normalised, in that order

    @property
    def all_ids(self) -> list[int]:
        return self.seen_ids + self.unseen_ids


def class_space(embeddings: str | os.PathLike, seen_ids: list[int]) -> ClassSpace:
    """Check the embeddings file against the seen classes and order it seen-then-unseen."""
    df, vecs, _ = read_embeddings(embeddings)
    by_id = {int(c): i for i, c in enumerate(df["category_id"])}
    missing = [c for c in seen_ids if c not in by_id]
    if missing:
        raise DataError(f"{embeddings}: no embedding for seen class id(s) {missing}")
    split = dict(zip(df["category_id"].astype(int), df["split"]))
    unseen = sorted(c for c in by_id if split[c] == "unseen")
    if not unseen:
        raise DataError(f"{embeddings}: no class has split 'unseen' (embed the split stage's *_all.json)")
    extra = [c for c in by_id if split[c] == "seen" and c not in seen_ids]
    if extra:
        raise DataError(f"{embeddings}: seen classes {extra[:5]} are not among the segmenter's classes")
    if not np.isfinite(vecs).all():
        raise DataError(f"{embeddings}: non-finite embedding values")
    order = [by_id[c] for c in seen_ids + unseen]
    return ClassSpace(list(seen_ids), unseen, F.normalize(torch.from_numpy(vecs[order]).float(), dim=-1))
