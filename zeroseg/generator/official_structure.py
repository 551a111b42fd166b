"""The official code's disentanglement and alignment terms (``generator.structure: official``),
written from PADing's ``forward_train_generator`` as documented in docs/parity.md.

They act on the SYNTHETIC features only: fake seen x' (one per real matched query) and fake
unseen x'_u (one per unseen class). The class side is v_c = ``fc_projection``(a_c), the
generator's own learned semantic projection (not detached). With E_R, E_U (two Linear, LeakyReLU
0.2, dropout; d -> d), a relation network r(x̂, v) = sigmoid(fc2(relu(fc1([x̂; v])))) and a decoder
(two Linear + LeakyReLU + dropout, 2d -> d):

- L_R = 0.2 · ½ [CE(r(x̂'_s, v_all), y_s) + CE(r(x̂'_u, v_u), arange(N_u))] (the sigmoid scores
  used as logits);
- L_U = 0.5 · ½ [KL_T(ẍ'_s ‖ z) + KL_T(ẍ'_u ‖ z')], z ~ N(0, I) drawn afresh;
- L_rec = ½ [|D([x̂'_s; ẍ'_s]) − x'_s|₁ + |D([x̂'_u; ẍ'_u]) − x'_u|₁] (means over elements);
- L_A = ⅓ [KL_T(cos(x̂'_s, x̂'_s), cos(v_s, v_s)) + KL_T(cos(x̂'_u, x̂'_u), cos(v_u, v_u))
  + KL_T(cos(x̂'_s, x̂'_u), cos(v_s, v_u))];

where KL_T(p, t) = Σ softmax(t/T) (log softmax(t/T) − log softmax(p/T)) / numel, rows softmaxed,
T = 0.1, diagonals included. Structure loss = W1 (L_A + L_U) + W2 L_R + W3 L_rec with W1 = W2 = 1,
W3 = 0.5 (the three PADing configs)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

KL_T = 0.1  # the official kl_loss temperature
W_ALIGN_UNRELATED, W_RELATION, W_RECON = 1.0, 1.0, 0.5  # WEIGHT_1, WEIGHT_2, WEIGHT_3


def kl_t(pred: torch.Tensor, target: torch.Tensor, temperature: float = KL_T) -> torch.Tensor:
    """KL(softmax(target/T) ‖ softmax(pred/T)) row-wise, summed and divided by pred.numel()."""
    log_p = F.log_softmax(pred / temperature, dim=1)
    log_t = F.log_softmax(target / temperature, dim=1)
    return (log_t.exp() * (log_t - log_p)).sum() / pred.numel()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) cosine similarities."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def encoder(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.Linear(dim, dim), nn.LeakyReLU(0.2), nn.Dropout(dropout))


class RelationNet(nn.Module):
    """(n, d) features, (C, d) class vectors -> (n, C) relation scores in (0, 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2 * dim, dim), nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        pairs = torch.cat([x[:, None].expand(-1, len(v), -1), v[None].expand(len(x), -1, -1)], -1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pairs))))[..., 0]


class OfficialStructure(nn.Module):
    """E_R, E_U, the relation network and the decoder over d-dimensional features."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.related, self.unrelated = encoder(dim, dropout), encoder(dim, dropout)
        self.relation = RelationNet(dim)
        self.decoder = nn.Sequential(nn.Linear(2 * dim, dim), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                     nn.Linear(dim, dim), nn.LeakyReLU(0.2), nn.Dropout(dropout))

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, d) -> x̂ = E_R(x) (n, d), KL_T(E_U(x) ‖ z) and the L1 reconstruction error."""
        rel, unrel = self.related(x), self.unrelated(x)
        u = kl_t(unrel, torch.randn_like(unrel))
        rec = (self.decoder(torch.cat([rel, unrel], -1)) - x).abs().mean()
        return rel, u, rec


def official_losses(struct: OfficialStructure | None, fake_seen: torch.Tensor, seen_cls: torch.Tensor,
                    fake_unseen: torch.Tensor, unseen_cls: torch.Tensor, v_all: torch.Tensor, n_seen: int,
                    align: bool) -> dict[str, torch.Tensor]:
    """fake_seen (n, d) of classes ``seen_cls`` (n,) indexing ``v_all`` (C, d) = fc_projection of
    every class (seen first, then the N_u unseen); fake_unseen (m, d) of unseen classes
    ``unseen_cls`` (m,) indexing the unseen rows 0..N_u-1 (official: m = N_u, one per class in
    order). ``struct`` None: no disentanglement (alignment acts on the raw fake features). Returns
    the weighted terms (``relation``, ``unrelated``, ``recon`` with ``struct``; ``align``)."""
    v_u = v_all[n_seen:]
    out: dict[str, torch.Tensor] = {}
    rel_s, rel_u = fake_seen, fake_unseen
    if struct is not None:
        rel_s, u_s, rec_s = struct.parts(fake_seen)
        rel_u, u_u, rec_u = struct.parts(fake_unseen)
        r_s = F.cross_entropy(struct.relation(rel_s, v_all), seen_cls)
        r_u = F.cross_entropy(struct.relation(rel_u, v_u), unseen_cls)
        out["relation"] = W_RELATION * 0.2 * (r_s + r_u) / 2
        out["unrelated"] = W_ALIGN_UNRELATED * 0.5 * (u_s + u_u) / 2
        out["recon"] = W_RECON * (rec_s + rec_u) / 2
    if align:
        v_s, v_uc = v_all[seen_cls], v_u[unseen_cls]
        out["align"] = W_ALIGN_UNRELATED * (kl_t(cosine(rel_s, rel_s), cosine(v_s, v_s))
                                            + kl_t(cosine(rel_u, rel_u), cosine(v_uc, v_uc))
                                            + kl_t(cosine(rel_s, rel_u), cosine(v_s, v_uc))) / 3
    return out
