"""Feature disentanglement: x -> semantic-related x̂ = E_R(x) and semantic-unrelated
ẍ = E_U(x); a decoder D([x̂; ẍ]) reconstructs x.

L_R: cosine-softmax cross-entropy of x̂ against ALL class-name embeddings at temperature τ;
L_U: KL(N(μ, σ²) ‖ N(0, I)) of E_U's Gaussian; L_recon: L1 reconstruction."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(i: int, h: int, o: int, dropout: float = 0.1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(h, o))


class Disentangler(nn.Module):
    """E_R: (B, D) -> (B, E) (the semantic space); E_U: (B, D) -> μ, log σ² (B, U); D: (B, E + U) -> (B, D)."""

    def __init__(self, feat_dim: int, sem_dim: int, unrelated_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.er = mlp(feat_dim, hidden, sem_dim)
        self.eu = mlp(feat_dim, hidden, 2 * unrelated_dim)
        self.dec = nn.Sequential(nn.Linear(sem_dim + unrelated_dim, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.1),
                                 nn.Linear(hidden, feat_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns x̂ (B, E), μ (B, U), log σ² (B, U), reconstruction (B, D)."""
        related = self.er(x)
        mu, logvar = self.eu(x).chunk(2, -1)
        u = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return related, mu, logvar, self.dec(torch.cat([related, u], -1))

    def losses(self, x: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor, tau: float) -> tuple[torch.Tensor,
                                                                                                          torch.Tensor]:
        """L_D = L_R + L_U + L_recon for features x (B, D) of classes ``labels`` (B,) indexing
        ``class_emb`` (C, E, L2-normalised). Returns (L_D, x̂)."""
        related, mu, logvar, recon = self(x)
        logits = F.normalize(related, dim=-1) @ class_emb.T / tau
        l_r = F.cross_entropy(logits, labels)
        l_u = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), -1))
        l_rec = (recon - x).abs().mean()
        return l_r + l_u + l_rec, related
