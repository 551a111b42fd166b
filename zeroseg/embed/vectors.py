"""The embed stage: one L2-normalised vector per class, written as Parquet (each class's vector
comes from the source(s) of ``embed.source``: :mod:`zeroseg.embed.sources`).

Columns ``category_id``, ``name``, ``split`` (seen / unseen / unknown), ``vector`` (float32);
the Parquet metadata key ``zeroseg`` holds the source and its settings as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zeroseg.atomic import atomic_file, read_json
from zeroseg.embed.sources import SOURCES, EmbedConfig
from zeroseg.embed.text import l2n
from zeroseg.errors import DataError


def read_categories(path: str | os.PathLike) -> list[dict]:
    """``categories`` of any COCO-format JSON, checked for empty and duplicate names."""
    p = Path(path)
    raw = read_json(p, "categories file")
    cats = raw.get("categories") if isinstance(raw, dict) else None
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{p}: no 'categories' list")
    seen: set[str] = set()
    for i, c in enumerate(cats):
        if "id" not in c or "name" not in c:
            raise DataError(f"{p}: categories[{i}] needs 'id' and 'name'")
        if not str(c["name"]).strip():
            raise DataError(f"{p}: categories[{i}] (id {c['id']}) has an empty name")
        if c["name"] in seen:
            raise DataError(f"{p}: categories[{i}]: duplicate class name {c['name']!r}")
        seen.add(c["name"])
    return cats


def embed_classes(categories_json: str | os.PathLike, cfg: EmbedConfig, out: str | os.PathLike) -> pd.DataFrame:
    """Embed every class of ``categories_json`` and write ``out`` (Parquet, atomically)."""
    cats = read_categories(categories_json)
    vecs, dims = embed_categories(cats, cfg)
    if not np.isfinite(vecs).all():
        raise DataError(f"source {cfg.source!r} produced non-finite vectors")
    df = pd.DataFrame({
        "category_id": [int(c["id"]) for c in cats],
        "name": [c["name"] for c in cats],
        "split": [c.get("split", "unknown") for c in cats],
        "vector": list(vecs),
    })
    meta = {"source": cfg.source, "dim": int(vecs.shape[1]), "dims": dims,
            "config": asdict(cfg), "categories_json": str(categories_json)}
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"zeroseg": json.dumps(meta).encode()})
    with atomic_file(out) as tmp:
        pq.write_table(table, tmp)
    return df


def embed_categories(categories: list[dict], cfg: EmbedConfig) -> tuple[np.ndarray, list[int]]:
    """(N, D) float32 vectors of ``categories`` (sources concatenated, then normalised) and each
    source's dimension. Also serves free class names: ``[{"id": i, "name": n}, ...]``."""
    blocks = [SOURCES[p](categories, cfg) for p in cfg.parts()]
    vecs = l2n(np.concatenate(blocks, 1)).astype(np.float32) if len(blocks) > 1 else blocks[0]
    return vecs, [int(b.shape[1]) for b in blocks]
