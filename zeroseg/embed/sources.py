"""Class-name embedding sources: params ``embed.source`` -> the function that embeds classes.

The one mapping :data:`SOURCES` is read by the config's validation (:meth:`EmbedConfig.parts`)
and by the embedding itself (:func:`zeroseg.embed.vectors.embed_categories`; ``a+b`` concatenates
two sources). A new source is a function ``(categories, cfg) -> (N, D) float32``, one
L2-normalised row per category (``categories[i]["name"]``; the embedded benchmark's also carry
``attributes``), and one entry here; its settings, if any, are new keys of :class:`EmbedConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zeroseg.embed.table import load_table, match_table
from zeroseg.embed.text import DEFAULT_TEMPLATES, clip_encoder, ensemble, l2n, minilm_encoder
from zeroseg.embed.words import embed_words, load_keyed_vectors, packaged_glove
from zeroseg.errors import ConfigError, DataError


@dataclass(frozen=True)
class EmbedConfig:
    """params.yaml section ``embed``."""

    # an entry of SOURCES: minilm | clip | word2vec | glove | table | attributes; "a+b" concatenates
    source: str = "minilm"
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # prompt ensemble for the sentence encoders
    minilm_model: str = ""  # sentence-transformers folder; "" = the packaged offline MiniLM
    clip_model: str = ""  # local CLIP folder or hub name (online users)
    word_vectors: str = ""  # gensim KeyedVectors file for word2vec (or a GloVe file for glove)
    table: str = ""  # precomputed matrix (.npy/.pkl/.txt)
    table_names: str = ""  # its class names, one a line
    oov: str = "error"  # out-of-vocabulary words: error | skip
    attribute_words: str = "minilm"  # encoder of attribute words for source 'attributes': minilm | glove

    def __post_init__(self) -> None:
        self.parts()  # an unknown source fails when params are read

    def parts(self) -> list[str]:
        """The sources of ``source``, each an entry of :data:`SOURCES`."""
        parts = [p.strip() for p in self.source.split("+")]
        bad = [p for p in parts if p not in SOURCES]
        if bad or not parts:
            raise ConfigError(f"embed.source: unknown source(s) {bad}; choose from {list(SOURCES)} (join two with '+')")
        return parts


Source = Callable[[list[dict], EmbedConfig], np.ndarray]


def minilm(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """The sentence encoder MiniLM over the prompt ensemble ``cfg.templates``."""
    return ensemble([c["name"] for c in categories], cfg.templates, minilm_encoder(cfg.minilm_model))


def clip(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """CLIP's text encoder over the prompt ensemble ``cfg.templates``."""
    return ensemble([c["name"] for c in categories], cfg.templates, clip_encoder(cfg.clip_model))


def word2vec(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """Word vectors of ``cfg.word_vectors`` (gensim KeyedVectors), averaged over a name's words."""
    if not cfg.word_vectors:
        raise ConfigError("embed.word_vectors: give a word2vec/GloVe file (gensim KeyedVectors, .bin or text)")
    return embed_words([c["name"] for c in categories], load_keyed_vectors(cfg.word_vectors), cfg.oov)


def glove(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """:func:`word2vec` with a GloVe file; the packaged GloVe 6B 50-d when ``cfg.word_vectors`` is empty."""
    vectors = load_keyed_vectors(cfg.word_vectors) if cfg.word_vectors else packaged_glove()
    return embed_words([c["name"] for c in categories], vectors, cfg.oov)


def table(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """Rows of a precomputed matrix (``cfg.table``), matched by class name (``cfg.table_names``)."""
    if not cfg.table or not cfg.table_names:
        raise ConfigError("embed.table and embed.table_names: both are needed for source 'table'")
    names = [c["name"] for c in categories]
    tnames, matrix = load_table(cfg.table, cfg.table_names)
    found, missing = match_table(names, tnames, matrix)
    if missing:
        raise DataError(f"{cfg.table}: no row for class(es) {missing} (matched by name against {cfg.table_names})")
    return l2n(np.stack([found[n] for n in names])).astype(np.float32)


def attributes(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
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
    vec_of = dict(zip(words, vecs))
    blocks = [np.stack([vec_of[c["attributes"][k]] for c in categories]) for k in range(n_pos.pop())]
    return l2n(np.concatenate(blocks, 1)).astype(np.float32)


SOURCES: dict[str, Source] = {
    "minilm": minilm,
    "clip": clip,
    "word2vec": word2vec,
    "glove": glove,
    "table": table,
    "attributes": attributes,
}
