"""The projection baseline (ZegFormer-seg-like): no unseen features at all."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zeroseg.head.train import ClassifierConfig, SeenRows


def train_projection(cfg: ClassifierConfig, seen: SeenRows, emb: torch.Tensor, n_seen: int,
                     tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projection baseline (ZegFormer-seg-like): logits = cos(P x, a_c) / τ with a learned
    no-object vector, trained for ``cfg.iterations`` steps on the same whole-image batches of
    seen features only (Adam 1e-3); unseen classes enter at test time by their embeddings
    ``emb`` (seen rows first). Returns the :class:`Head` tensors (weight (K + 1, E),
    bias (K + 1,), P (E, D), p (E,))."""
    torch.manual_seed(cfg.seed)
    D, E = seen.x.shape[1], emb.shape[1]
    proj = torch.nn.Linear(D, E)
    no_obj = torch.nn.Parameter(torch.randn(1, E) * 0.1)
    opt = torch.optim.Adam(list(proj.parameters()) + [no_obj], lr=1e-3)
    cw = torch.ones(n_seen + 1)
    cw[-1] = cfg.no_object_weight
    batches = seen.batches(cfg.images_per_batch, cfg.seed)
    for _ in range(cfg.iterations):
        x, y = next(batches)
        z = F.normalize(proj(x), dim=-1)
        cls = torch.cat([emb[:n_seen], F.normalize(no_obj, dim=-1)])
        loss = F.cross_entropy(z @ cls.T / tau, torch.where(y < 0, torch.full_like(y, n_seen), y), weight=cw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    weight = torch.cat([emb, F.normalize(no_obj, dim=-1)]).detach() / tau
    return weight, torch.zeros(len(weight)), proj.weight.detach().clone(), proj.bias.detach().clone()
