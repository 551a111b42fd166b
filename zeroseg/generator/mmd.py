"""Multi-bandwidth maximum mean discrepancy (the GMMN generation loss)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mmd(x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """MMD² between x (n, d) and y (m, d) with k(f, f') = Σ_σ exp(−‖f − f'‖² / (2σ²)).

    Means over pairs (the biased estimator): exactly 0 when the two sets are identical,
    > 0 otherwise (the Gaussian kernel is characteristic)."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()
