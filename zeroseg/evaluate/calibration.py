"""Seen–unseen calibration of a class head and the calibration-free comparison of heads.

A head trained on real seen features and synthetic unseen ones is biased one way or the
other; "calibrated stacking" (Chao et al., ECCV 2016) subtracts an offset γ from the
seen-class logits at inference. Sweeping γ traces the head's seen–unseen curve (seen PQ
against unseen PQ); its area (AUSUC) compares heads without picking one operating point.

Our offset never raises a class against no-object (the segmentation heads have one,
GZSL classifiers do not): γ > 0 lowers the seen-class logits by γ, γ < 0 lowers the
unseen-class logits by |γ|. Both ends of the curve are then heads that still reject
background: γ = +∞ is the head restricted to unseen classes + no-object (seen PQ 0),
γ = −∞ the head restricted to seen classes + no-object (unseen PQ 0), and a query flips
from its best seen to its best unseen class at γ = (best seen logit − best unseen logit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


def seen_columns(class_ids: list[int], unseen_ids: Iterable[int]) -> torch.Tensor:
    """(K + 1,) bool: True for the head outputs of seen classes (the last, no-object, False)."""
    unseen = set(unseen_ids)
    return torch.tensor([c not in unseen for c in class_ids] + [False])


def unseen_columns(seen: torch.Tensor) -> torch.Tensor:
    """(K + 1,) bool: the unseen-class outputs of a :func:`seen_columns` mask (no-object excluded)."""
    unseen = ~seen
    unseen[-1] = False
    return unseen


def offset_logits(logits: torch.Tensor, seen: torch.Tensor, gamma: float) -> torch.Tensor:
    """(Q, K + 1) logits, ``seen`` (K + 1,) bool -> calibrated (Q, K + 1) logits: γ > 0 lowers
    the seen columns by γ, γ < 0 the unseen columns by |γ| (±inf drops them); no-object and the
    other side are unchanged. A head without unseen (or without seen) columns is unchanged."""
    unseen = unseen_columns(seen)
    if gamma == 0 or not seen.any() or not unseen.any():
        return logits
    out = logits.clone()
    if gamma > 0:
        out[:, seen] = out[:, seen] - gamma
    else:
        out[:, unseen] = out[:, unseen] + gamma
    return out


def curve_offsets(logits: torch.Tensor, seen: torch.Tensor, points: int, object_threshold: float,
                  include: Iterable[float] = ()) -> list[float]:
    """The γ grid of a head's curve from its (N, K + 1) logits on the evaluated queries (no
    labels): −∞, ``points`` quantiles (0 to 1) of the queries' flip offsets, the ``include``
    values (the main table's γ), +∞; sorted, unique. Only queries that are objects at one end
    of the curve (best class probability above ``object_threshold``) count: the others are
    no-object whatever γ is."""
    unseen = unseen_columns(seen)
    flip = (logits[:, seen].max(1).values - logits[:, unseen].max(1).values).double()
    ends = [offset_logits(logits, seen, g).softmax(-1)[:, :-1].max(1).values for g in (-math.inf, math.inf)]
    objects = (ends[0] > object_threshold) | (ends[1] > object_threshold)
    pool = flip[objects] if objects.any() else flip
    grid = np.quantile(pool.numpy(), np.linspace(0.0, 1.0, points)) if points > 0 and len(pool) else []
    return sorted({-math.inf, math.inf, *map(float, grid), *map(float, include)})


def ausuc(seen: Iterable[float], unseen: Iterable[float]) -> float:
    """Area under the seen–unseen curve, points in γ order (from (unseen 0, seen max) at γ = −∞
    to (unseen max, seen 0) at γ = +∞): the trapezoid sum of seen d(unseen) along the curve,
    so a stretch where unseen PQ falls back counts negatively. In [0, 1] for PQ in [0, 1]."""
    y, x = np.asarray(list(seen), np.float64), np.asarray(list(unseen), np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("ausuc: give at least two (seen, unseen) points of equal count")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
