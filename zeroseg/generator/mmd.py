"""Multi-bandwidth maximum mean discrepancy (the GMMN generation loss), in the paper's form
and in the official code's form (``generator.mmd``: paper | official)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _mmd2(x: torch.Tensor, y: torch.Tensor, widths: Sequence[float]) -> torch.Tensor:
    """Biased MMD² between x (n, d) and y (m, d) with k(f, f') = Σ_w exp(−‖f − f'‖² / w)."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / w) for w in widths)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def mmd(x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """MMD² between x (n, d) and y (m, d) with k(f, f') = Σ_σ exp(−‖f − f'‖² / (2σ²)) (the paper).

    Means over pairs (the biased estimator): exactly 0 when the two sets are identical,
    > 0 otherwise (the Gaussian kernel is characteristic)."""
    return _mmd2(x, y, [2 * s * s for s in sigmas])


def mmd_official(x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """The official code's MMD (PADing ``GMMNLoss.moment_loss``) between x (n, d) and y (m, d):
    sqrt(Σ_σ [mean k_σ(x, x) + mean k_σ(y, y) − 2 mean k_σ(x, y)]) with k_σ(f, f') =
    exp(−‖f − f'‖² / (2σ)): σ divides the squared distance once (a Gaussian of variance σ)."""
    # the floor only keeps the gradient finite for identical sets
    return _mmd2(x, y, [2 * s for s in sigmas]).clamp(min=1e-12).sqrt()
