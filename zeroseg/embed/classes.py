"""The embed stage: one L2-normalised vector per class, written as Parquet.

Columns ``category_id``, ``name``, ``split`` (seen / unseen / unknown), ``vector`` (float32);
the Parquet metadata key ``zeroseg`` holds the source and its settings as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zeroseg.atomic import atomic_file, read_json
from zeroseg.embed.table import load_table, match_table
from zeroseg.embed.text import DEFAULT_TEMPLATES, clip_encoder, ensemble, l2n, minilm_encoder
from zeroseg.embed.words import embed_words, load_keyed_vectors, packaged_glove
from zeroseg.errors import ConfigError, DataError

SOURCES = ("minilm", "clip", "word2vec", "glove", "table", "attributes")


@dataclass(frozen=True)
class EmbedConfig:
    """params.yaml section ``embed``."""

    source: str = "minilm"  # minilm | clip | word2vec | glove | table | attributes; "clip+word2vec" concatenates
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # prompt ensemble for the sentence encoders
    minilm_model: str = ""  # sentence-transformers folder; "" = the packaged offline MiniLM
    clip_model: str = ""  # local CLIP folder or hub name (online users)
    word_vectors: str = ""  # gensim KeyedVectors file for word2vec (or a GloVe file for glove)
    table: str = ""  # precomputed matrix (.npy/.pkl/.txt)
    table_names: str = ""  # its class names, one a line
    oov: str = "error"  # out-of-vocabulary words: error | skip
    attribute_words: str = "minilm"  # encoder of attribute words for source 'attributes': minilm | glove

    def parts(self) -> list[str]:
        parts = [p.strip() for p in self.source.split("+")]
        bad = [p for p in parts if p not in SOURCES]
        if bad or not parts:
            raise ConfigError(f"embed.source: unknown source(s) {bad}; choose from {list(SOURCES)} (join two with '+')")
        return parts


def _word_source(cfg: EmbedConfig, kind: str):
    if kind == "glove" and not cfg.word_vectors:
        return packaged_glove()
    if not cfg.word_vectors:
        raise ConfigError("embed.word_vectors: give a word2vec/GloVe file (gensim KeyedVectors, .bin or text)")
    return load_keyed_vectors(cfg.word_vectors)


def embed_part(part: str, categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """(N, D) float32 L2-normalised vectors of one source for ``categories``."""
    names = [c["name"] for c in categories]
    if part == "minilm":
        return ensemble(names, cfg.templates, minilm_encoder(cfg.minilm_model))
    if part == "clip":
        return ensemble(names, cfg.templates, clip_encoder(cfg.clip_model))
    if part in ("word2vec", "glove"):
        return embed_words(names, _word_source(cfg, part), cfg.oov)
    if part == "table":
        if not cfg.table or not cfg.table_names:
            raise ConfigError("embed.table and embed.table_names: both are needed for source 'table'")
        tnames, matrix = load_table(cfg.table, cfg.table_names)
        found, missing = match_table(names, tnames, matrix)
        if missing:
            raise DataError(f"{cfg.table}: no row for class(es) {missing} (matched by name against {cfg.table_names})")
        return l2n(np.stack([found[n] for n in names])).astype(np.float32)
    if part == "attributes":
        return embed_attributes(categories, cfg)
    raise ConfigError(f"embed.source: unknown source {part!r}")


def embed_attributes(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """Each class = concatenation of its attribute words' embeddings (one block per attribute
    position, each normalised), normalised. Needs ``categories[].attributes`` (the embedded
    benchmark writes them)."""
    lacking = [c["name"] for c in categories if not c.get("attributes")]
    if lacking:
        raise DataError(f"source 'attributes' needs categories[].attributes; missing for {lacking[:5]}")
    n_pos = {len(c["attributes"]) for c in categories}
    if len(n_pos) != 1:
        raise DataError(f"source 'attributes': every class needs the same number of attributes, got {sorted(n_pos)}")
    words = sorted({w for c in categories for w in c["attributes"]})
    if cfg.attribute_words == "glove":
        vecs = embed_words(words, packaged_glove(), "error")
    elif cfg.attribute_words == "minilm":
        vecs = ensemble(words, ("{}",), minilm_encoder(cfg.minilm_model))
    else:
        raise ConfigError(f"embed.attribute_words: minilm or glove, got {cfg.attribute_words!r}")
    table = dict(zip(words, vecs))
    blocks = [np.stack([table[c["attributes"][k]] for c in categories]) for k in range(n_pos.pop())]
    return l2n(np.concatenate(blocks, 1)).astype(np.float32)


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
    blocks = [embed_part(p, categories, cfg) for p in cfg.parts()]
    vecs = l2n(np.concatenate(blocks, 1)).astype(np.float32) if len(blocks) > 1 else blocks[0]
    return vecs, [int(b.shape[1]) for b in blocks]
