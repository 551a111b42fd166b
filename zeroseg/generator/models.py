"""Feature generators: semantic embedding a_c (+ noise) -> synthetic query feature x'.

GMMN (ZS3Net): an MLP over [a_c; z].
Primitive generator (PADing): N learnable primitives P (N, d) and a projected semantic query
q = Linear(a_c) (the official code's ``fc_projection``), L layers, a final LayerNorm. Two
layouts (``generator.primitive_layout``):

- ``paper``: each layer self-attends over the primitives (the relationship graph the paper
  describes), then the query cross-attends to them (Q = q, K = ω_K(P), V = ω_V(P)); Gaussian
  noise is added to the cross-attention output inside the residual dropout; output Linear ω_1;
  primitives start at 0.02·N(0, 1).
- ``official`` (PADing's ``TransformerDecoderLayer.forward_post``): each layer self-attends over
  the query alone (a sequence of one token: ``out_proj(v_proj(q))`` with attention dropout), then
  cross-attends to the raw primitives, which are never updated; the noise is added after the
  residual dropout, before the norm; no output Linear (the fake feature is the LayerNorm
  output); primitives start at N(0, 1) (``nn.Embedding``).

The params section builds them through :mod:`zeroseg.generator.architectures` (``generator.arch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

LAYOUTS = ("paper", "official")


@dataclass(frozen=True)
class PrimitiveSpec:
    """The primitive generator's sizes and layout (params ``generator``: num_primitives, layers,
    heads, ffn, dropout, noise, primitive_layout)."""

    num_primitives: int = 400
    layers: int = 3
    heads: int = 4
    ffn: int = 1024
    dropout: float = 0.1
    noise_std: float = 1.0
    layout: str = "paper"  # one of LAYOUTS


class GMMNGenerator(nn.Module):
    """(B, E) semantic -> (B, D) features; noise z ~ N(0, I) of size ``noise_dim``."""

    def __init__(self, sem_dim: int, feat_dim: int, hidden: int = 512, noise_dim: int = 300, noise_std: float = 1.0,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.noise_dim, self.noise_std = noise_dim, noise_std
        self.net = nn.Sequential(nn.Linear(sem_dim + noise_dim, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                 nn.Linear(hidden, feat_dim))

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        z = torch.randn(sem.shape[0], self.noise_dim, device=sem.device) * self.noise_std
        return self.net(torch.cat([sem, z], -1))


class PrimitiveLayer(nn.Module):
    """One layer of either layout. prims (N, d) are shared by the batch; queries (B, d). All B
    queries attend the same primitives independently, so they go through one attention call as
    a length-B query sequence (keys and values are projected once, not once per query)."""

    def __init__(self, dim: int, spec: PrimitiveSpec) -> None:
        super().__init__()
        self.layout = spec.layout
        self.self_attn = nn.MultiheadAttention(dim, spec.heads, dropout=spec.dropout, batch_first=True)
        self.norm_s = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, spec.heads, dropout=spec.dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, spec.ffn), nn.ReLU(), nn.Dropout(spec.dropout),
                                 nn.Linear(spec.ffn, dim))
        self.norm_f = nn.LayerNorm(dim)
        self.drop = nn.Dropout(spec.dropout)
        self.noise_std = spec.noise_std

    def forward(self, prims: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prims (N, d), q (B, d) -> primitives for the next layer (N, d), queries (B, d)."""
        if self.layout == "paper":
            p = prims[None]
            p = self.norm_s(p + self.drop(self.self_attn(p, p, p, need_weights=False)[0]))
            prims = p[0]
            x = self.cross(q[None], p, p, need_weights=False)[0][0]
            x = x + torch.randn_like(x) * self.noise_std  # different draws -> different features
            q = self.norm_q(q + self.drop(x))
        else:
            t = q[:, None]  # (B, 1, d): each query is its own sequence of one token
            q = self.norm_s(q + self.drop(self.self_attn(t, t, t, need_weights=False)[0][:, 0]))
            x = self.cross(q[None], prims[None], prims[None], need_weights=False)[0][0]
            q = q + self.drop(x)
            q = self.norm_q(q + torch.randn_like(q) * self.noise_std)
        q = self.norm_f(q + self.drop(self.ffn(q)))
        return prims, q


class PrimitiveGenerator(nn.Module):
    """(B, E) semantic -> (B, D) features through ``spec.num_primitives`` learnable primitives of
    width ``feat_dim`` (the paper layout maps them to ``out_dim`` with ω_1; default ``feat_dim``)."""

    def __init__(self, sem_dim: int, feat_dim: int, spec: PrimitiveSpec = PrimitiveSpec(),
                 out_dim: int | None = None) -> None:
        super().__init__()
        if spec.layout not in LAYOUTS:
            raise ValueError(f"layout: one of {LAYOUTS}, got {spec.layout!r}")
        scale = 0.02 if spec.layout == "paper" else 1.0
        self.primitives = nn.Parameter(torch.randn(spec.num_primitives, feat_dim) * scale)
        self.query = nn.Linear(sem_dim, feat_dim)
        self.layers = nn.ModuleList(PrimitiveLayer(feat_dim, spec) for _ in range(spec.layers))
        self.norm = nn.LayerNorm(feat_dim)
        out_dim = out_dim or feat_dim
        if spec.layout == "official" and out_dim != feat_dim:
            raise ValueError("the official layout has no output Linear: the primitive width must be the feature dim")
        self.out = nn.Linear(feat_dim, out_dim) if spec.layout == "paper" else nn.Identity()

    def project(self, sem: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, d): the semantic query (the official code's ``fc_projection``)."""
        return self.query(sem)

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        q = self.query(sem)
        p = self.primitives
        for layer in self.layers:
            p, q = layer(p, q)
        return self.out(self.norm(q))
