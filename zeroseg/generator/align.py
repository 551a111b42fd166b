"""Relationship alignment: the distribution of visual similarities between (semantic-related)
features must match that of their classes' semantic similarities.

L_A = the paper's Σ_i KL( softmax_j(cos(a_i, a_j) / τ) ‖ softmax_j(cos(x̂_i, x̂_j) / τ) ) as a mean
over the rows i, summed over three blocks (seen×seen, unseen×unseen, seen×unseen), self-pairs
excluded (docs/parity.md: "/rows, summed")."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _block_kl(xa: torch.Tensor, xb: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, tau: float,
              same: bool) -> torch.Tensor:
    vis = F.normalize(xa, dim=-1) @ F.normalize(xb, dim=-1).T / tau
    sem = F.normalize(sa, dim=-1) @ F.normalize(sb, dim=-1).T / tau
    if same:
        eye = torch.eye(len(xa), dtype=torch.bool, device=xa.device)
        vis, sem = vis.masked_fill(eye, -1e4), sem.masked_fill(eye, -1e4)
    target = sem.softmax(-1)
    return F.kl_div(vis.log_softmax(-1), target, reduction="batchmean")


def alignment_loss(seen_x: torch.Tensor, seen_sem: torch.Tensor, unseen_x: torch.Tensor | None,
                   unseen_sem: torch.Tensor | None, tau: float = 0.1) -> torch.Tensor:
    """seen_x (n, E) with class-name embeddings seen_sem (n, E); the same for unseen (m, E) or None."""
    loss = _block_kl(seen_x, seen_x, seen_sem, seen_sem, tau, True)
    if unseen_x is not None and len(unseen_x) > 1:
        loss = loss + _block_kl(unseen_x, unseen_x, unseen_sem, unseen_sem, tau, True)
        loss = loss + _block_kl(seen_x, unseen_x, seen_sem, unseen_sem, tau, False)
    return loss
