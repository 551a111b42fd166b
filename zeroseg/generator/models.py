"""Feature generators: semantic embedding a_c (+ noise) -> synthetic class embedding x'.

GMMN (ZS3Net): an MLP over [a_c; z].
Primitive generator (PADing): N learnable primitives P (N, d); L layers of
self-attention over the primitives, cross-attention from the projected semantic query
q = Linear(a_c) (Q = q, K = ω_K(P), V = ω_V(P)), Gaussian noise added after the
cross-attention (before its norm), FFN, dropout; a final LayerNorm and output Linear ω_1.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class GMMNGenerator(nn.Module):
    """(B, E) semantic -> (B, D) features; noise z ~ N(0, I) of size ``noise_dim``."""

    def __init__(self, sem_dim: int, feat_dim: int, hidden: int = 512, noise_dim: int = 300, noise_std: float = 1.0) -> None:
        super().__init__()
        self.noise_dim, self.noise_std = noise_dim, noise_std
        self.net = nn.Sequential(nn.Linear(sem_dim + noise_dim, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.1),
                                 nn.Linear(hidden, feat_dim))

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        z = torch.randn(sem.shape[0], self.noise_dim, device=sem.device) * self.noise_std
        return self.net(torch.cat([sem, z], -1))


class PrimitiveLayer(nn.Module):
    """Self-attention over primitives, then cross-attention from the semantic queries.

    prims (N, d) are shared by the batch; queries (B, d). All B queries attend the same
    primitives independently, so they go through one attention call as a length-B query
    sequence (keys and values are projected once, not once per query)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, noise_std: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_p = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm_f = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.noise_std = noise_std

    def forward(self, prims: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prims (N, d), q (B, d) -> updated (N, d), (B, d)."""
        p = prims[None]
        p = self.norm_p(p + self.drop(self.self_attn(p, p, p, need_weights=False)[0]))
        x = self.cross(q[None], p, p, need_weights=False)[0][0]
        x = x + torch.randn_like(x) * self.noise_std  # different draws -> different features
        q = self.norm_q(q + self.drop(x))
        q = self.norm_f(q + self.drop(self.ffn(q)))
        return p[0], q


class PrimitiveGenerator(nn.Module):
    """(B, E) semantic -> (B, D) features through ``num_primitives`` learnable primitives."""

    def __init__(self, sem_dim: int, feat_dim: int, num_primitives: int = 400, layers: int = 3, heads: int = 4,
                 ffn: int = 1024, dropout: float = 0.1, noise_std: float = 1.0) -> None:
        super().__init__()
        self.primitives = nn.Parameter(torch.randn(num_primitives, feat_dim) * 0.02)
        self.query = nn.Linear(sem_dim, feat_dim)
        self.layers = nn.ModuleList(PrimitiveLayer(feat_dim, heads, ffn, dropout, noise_std) for _ in range(layers))
        self.norm = nn.LayerNorm(feat_dim)
        self.out = nn.Linear(feat_dim, feat_dim)

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        q = self.query(sem)
        p = self.primitives
        for layer in self.layers:
            p, q = layer(p, q)
        return self.out(self.norm(q))
