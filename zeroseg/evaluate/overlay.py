"""Predicted (or ground-truth) segments drawn over an image, for the report's pictures and
``zeroseg predict``'s overlays."""

from __future__ import annotations

import numpy as np


def overlay(rgb: np.ndarray, ids: np.ndarray, segments: list[dict], names: dict[int, str],
            unseen: set[int]) -> np.ndarray:
    """Blend a random colour per segment over the image; unseen-class segments get a red border."""
    out = rgb.astype(np.float32).copy()
    rng = np.random.default_rng(0)
    for s in segments:
        m = ids == s["id"]
        out[m] = 0.45 * out[m] + 0.55 * rng.integers(40, 255, 3)
        if s["category_id"] in unseen:
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out[edge] = (255, 0, 0)
    return out.clip(0, 255).astype(np.uint8)
