"""The ``linear`` row: the bar every generator must clear (DEM-style, as in the GZSL literature).

No training loop: a centred ridge regression from the class-name embedding to the seen class
means, fitted in closed form, and Gaussian draws around the predicted mean with the seen
classes' pooled within-class covariance. A generator that does not beat this row has learnt
nothing a linear map of the semantics does not already give.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from zeroseg.errors import DataError

#: Added to the covariance's diagonal (times its mean variance) so its Cholesky factor exists.
JITTER = 1e-4


class LinearGenerator(nn.Module):
    """(B, E) semantic -> (B, D) features: ``b + (a - ā) W + L z`` with z ~ N(0, I_D).

    Buffers: ``sem_mean`` ā (E,), ``weight`` W (E, D), ``bias`` b (D,), ``chol`` L (D, D) lower
    triangular with L Lᵀ = the pooled within-class covariance of the real seen features."""

    def __init__(self, sem_dim: int, feat_dim: int, noise_std: float = 1.0) -> None:
        super().__init__()
        self.noise_std = noise_std
        self.register_buffer("sem_mean", torch.zeros(sem_dim))
        self.register_buffer("weight", torch.zeros(sem_dim, feat_dim))
        self.register_buffer("bias", torch.zeros(feat_dim))
        self.register_buffer("chol", torch.zeros(feat_dim, feat_dim))

    def mean(self, sem: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, D): the predicted class mean."""
        return self.bias + (sem - self.sem_mean) @ self.weight

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        z = torch.randn(sem.shape[0], self.chol.shape[0], device=sem.device) * self.noise_std
        return self.mean(sem) + z @ self.chol.T

    @torch.no_grad()
    def fit(self, real: torch.Tensor, idx: torch.Tensor, emb: torch.Tensor, ridge: float) -> dict[str, float]:
        """Closed-form fit on real seen features ``real`` (N, D) of classes ``idx`` (N,) (rows of
        ``emb`` (K, E)): W, b from the class means of the classes present, L from the pooled
        within-class covariance. Returns {"classes", "residual"} (mean distance of the fitted
        class means to the real ones)."""
        if ridge <= 0:
            raise DataError(f"generator.ridge: a positive ridge weight, got {ridge}")
        x, classes = real.double(), idx.unique()
        if len(classes) < 2:
            raise DataError("the linear row needs real features of at least two seen classes")
        means = torch.stack([x[idx == k].mean(0) for k in classes])  # (C, D)
        a = emb[classes].double()  # (C, E)
        a_mean, m_mean = a.mean(0), means.mean(0)
        ac = a - a_mean
        # dual form of the ridge solution: W = Acᵀ (Ac Acᵀ + λ I)⁻¹ (M − m̄), exact for any E
        w = ac.T @ torch.linalg.solve(ac @ ac.T + ridge * torch.eye(len(classes), dtype=torch.float64), means - m_mean)
        centred = x - means[torch.searchsorted(classes, idx)]
        cov = centred.T @ centred / max(len(x) - len(classes), 1)
        cov += JITTER * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=torch.float64)
        self.sem_mean.copy_(a_mean.float())
        self.weight.copy_(w.float())
        self.bias.copy_(m_mean.float())
        self.chol.copy_(torch.linalg.cholesky(cov).float())
        fitted = m_mean + ac @ w
        return {"classes": float(len(classes)), "residual": float((fitted - means).norm(dim=1).mean())}

