"""The paper recipe's generator losses (generator.structure / mmd: paper) checked against direct
transcriptions of the formulas in docs/method.md (and the paper's text), written here as scalar
loops over pairs, rows and classes, not from the library code:

- L_G: MMD² with k(f, f') = Σ_σ exp(−‖f − f'‖² / 2σ²), means over the pairs of each block;
- L_R = −log softmax_c(cos(x̂, a_c) / τ)[y] over ALL classes, mean over rows;
- L_U = KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_u (σ² + μ² − 1 − log σ²), mean over rows (>= 0, 0 at N(0, I));
- L_rec = mean |D([x̂; ẍ]) − x| over elements;
- L_A = Σ_blocks mean_i KL(softmax_j(cos(a_i, a_j)/τ) ‖ softmax_j(cos(x̂_i, x̂_j)/τ)), blocks seen×seen,
  unseen×unseen (self-pairs j = i left out of both softmaxes) and seen×unseen;
- the trainer's objective: mean over the batch's classes of the per-class MMD² + λ (L_D(real) +
  L_D(fake) + L_A) + cls_weight · CE(fake seen through the joint head), value and gradients.

The per-row mean of L_A and the element mean of L_rec are zeroseg's reductions (docs/parity.md:
"/rows, summed" over the three blocks); the paper's Σ differs by a constant absorbed in λ."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zeroseg.embed.space import ClassSpace
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.config import GeneratorConfig
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd
from zeroseg.generator.train import GeneratorTrainer

D64 = torch.float64


# ---- transcriptions (scalar loops; torch scalars so that gradients can be compared too) ----------------

def _dot(a, b):
    return sum(a[k] * b[k] for k in range(len(a)))


def _cos(a, b):
    return _dot(a, b) / (torch.sqrt(_dot(a, a)) * torch.sqrt(_dot(b, b)))


def _k(a, b, sigmas):
    d2 = sum((a[k] - b[k]) ** 2 for k in range(len(a)))
    return sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)


def t_mmd(x, y, sigmas):
    """MMD² of the sets x (n, d), y (m, d): mean k over x×x + mean over y×y − 2 mean over x×y."""
    n, m = len(x), len(y)
    xx = sum(_k(x[i], x[j], sigmas) for i in range(n) for j in range(n)) / (n * n)
    yy = sum(_k(y[i], y[j], sigmas) for i in range(m) for j in range(m)) / (m * m)
    xy = sum(_k(x[i], y[j], sigmas) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def t_official_mmd(x, y, sigmas):
    """The official form: sqrt of the MMD² whose kernels are exp(−d² / 2σ) (σ a variance)."""
    return torch.sqrt(t_mmd(x, y, [math.sqrt(s) for s in sigmas]))


def t_lr(related, labels, class_emb, tau):
    total = 0.0
    for i in range(len(related)):
        s = [_cos(related[i], class_emb[c]) / tau for c in range(len(class_emb))]
        total = total - torch.log(torch.exp(s[int(labels[i])]) / sum(torch.exp(v) for v in s))
    return total / len(related)


def t_lu(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row, mean over rows."""
    total = 0.0
    for i in range(len(mu)):
        total = total + sum(0.5 * (torch.exp(logvar[i, u]) + mu[i, u] ** 2 - 1 - logvar[i, u])
                            for u in range(mu.shape[1]))
    return total / len(mu)


def t_lrec(recon, x):
    return sum(abs(recon[i, k] - x[i, k]) for i in range(len(x)) for k in range(x.shape[1])) / x.numel()


def t_block(xa, xb, sa, sb, tau, same):
    """mean_i KL(P_i ‖ Q_i) with P_i = softmax_j cos(sa_i, sb_j)/τ (semantic, the target) and
    Q_i = softmax_j cos(xa_i, xb_j)/τ (visual), j over xb without j = i when ``same``."""
    total = 0.0
    for i in range(len(xa)):
        js = [j for j in range(len(xb)) if not (same and j == i)]
        ps = [torch.exp(_cos(sa[i], sb[j]) / tau) for j in js]
        qs = [torch.exp(_cos(xa[i], xb[j]) / tau) for j in js]
        zp, zq = sum(ps), sum(qs)
        total = total + sum((p / zp) * torch.log((p / zp) / (q / zq)) for p, q in zip(ps, qs))
    return total / len(xa)


def t_align(seen_x, seen_sem, unseen_x, unseen_sem, tau):
    return (t_block(seen_x, seen_x, seen_sem, seen_sem, tau, True)
            + t_block(unseen_x, unseen_x, unseen_sem, unseen_sem, tau, True)
            + t_block(seen_x, unseen_x, seen_sem, unseen_sem, tau, False))


def t_ce(logits, labels):
    total = 0.0
    for i in range(len(logits)):
        total = total - torch.log(torch.exp(logits[i, int(labels[i])]) / sum(torch.exp(v) for v in logits[i]))
    return total / len(logits)


def _close(got, want, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(torch.as_tensor(got, dtype=D64), torch.as_tensor(want, dtype=D64).detach(),
                               rtol=rtol, atol=atol)


# ---- MMD --------------------------------------------------------------------------------------------

def test_paper_mmd_is_the_mean_kernel_mmd2_with_widths_two_sigma_squared():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=D64) * 1.5
    y = torch.randn(6, 3, generator=g, dtype=D64) + 0.8  # unequal sizes: each block its own mean
    for sigmas in [(0.5,), (0.7, 1.5, 3.0), (2.0, 5.0)]:
        want = t_mmd(x, y, sigmas)
        _close(mmd(x, y, sigmas), want)
        _close(mmd(y, x, sigmas), want)
    _close(mmd(x, x.clone(), (0.7, 1.5)), 0.0, atol=1e-12)


# ---- disentanglement: L_R, L_U, L_rec ---------------------------------------------------------------

def _dis_inputs(seed=0, n=6, feat=8, sem=4, unrel=3, classes=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, feat, generator=g, dtype=D64)
    related = torch.randn(n, sem, generator=g, dtype=D64) * 4  # far from unit norm: cos must normalise it
    mu, logvar = torch.randn(n, unrel, generator=g, dtype=D64), torch.randn(n, unrel, generator=g, dtype=D64) * 0.7
    recon = torch.randn(n, feat, generator=g, dtype=D64)
    emb = F.normalize(torch.randn(classes, sem, generator=g, dtype=D64), dim=-1)
    labels = torch.tensor([0, 3, 1, 4, 2, 0][:n])  # unseen rows 3, 4 among the candidate classes too
    return x, related, mu, logvar, recon, emb, labels


def _losses_with(monkeypatch, dis, outputs, x, labels, emb, tau):
    """Disentangler.losses with its forward replaced by the given (x̂, μ, log σ², recon)."""
    monkeypatch.setattr(dis, "forward", lambda inp: outputs)
    total, related = dis.losses(x, labels, emb, tau)
    assert related is outputs[0]
    return total


@pytest.mark.parametrize("tau", [0.1, 0.35])
def test_relevant_loss_is_the_cosine_softmax_cross_entropy_over_all_classes(monkeypatch, tau):
    x, related, mu, logvar, _, emb, labels = _dis_inputs()
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16)
    zero = torch.zeros_like(mu)
    total = _losses_with(monkeypatch, dis, (related, zero, zero, x.clone()), x, labels, emb, tau)  # L_U = L_rec = 0
    _close(total, t_lr(related, labels, emb, tau))
    # scaling x̂ leaves a cosine loss unchanged
    _close(_losses_with(monkeypatch, dis, (related * 0.01, zero, zero, x.clone()), x, labels, emb, tau), total)


def test_unrelated_loss_is_the_kl_to_the_standard_normal(monkeypatch):
    x, related, mu, logvar, _, emb, labels = _dis_inputs(1)
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16)
    zero = torch.zeros_like(mu)
    base = _losses_with(monkeypatch, dis, (related, zero, zero, x.clone()), x, labels, emb, 0.1)  # at N(0, I)
    _close(base, t_lr(related, labels, emb, 0.1))  # KL(N(0, I) ‖ N(0, I)) = 0
    for m, lv in [(mu, logvar), (mu, zero), (zero, logvar), (zero, -logvar.abs() - 0.5), (zero, logvar.abs() + 0.5)]:
        l_u = _losses_with(monkeypatch, dis, (related, m, lv, x.clone()), x, labels, emb, 0.1) - base
        want = t_lu(m, lv)
        assert want > 0.01
        _close(l_u, want, rtol=1e-9, atol=1e-10)


def test_reconstruction_loss_is_the_mean_absolute_error(monkeypatch):
    x, related, mu, logvar, recon, emb, labels = _dis_inputs(2)
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16)
    zero = torch.zeros_like(mu)
    base = t_lr(related, labels, emb, 0.1)
    for r in (recon, x + 0.5, x - 2 * (x > 0).to(D64)):
        total = _losses_with(monkeypatch, dis, (related, zero, zero, r), x, labels, emb, 0.1)
        _close(total - base, t_lrec(r, x))


def test_all_three_terms_together(monkeypatch):
    x, related, mu, logvar, recon, emb, labels = _dis_inputs(3)
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16)
    total = _losses_with(monkeypatch, dis, (related, mu, logvar, recon), x, labels, emb, 0.2)
    _close(total, t_lr(related, labels, emb, 0.2) + t_lu(mu, logvar) + t_lrec(recon, x))


def test_disentangler_forward_encodes_samples_and_decodes():
    """x̂ = E_R(x), (μ, log σ²) = E_U(x), recon = D([x̂; ẍ]) with ẍ = μ + σ ε in training, μ in eval."""
    torch.manual_seed(0)
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16).double()
    x = torch.randn(5, 8, dtype=D64)
    dis.eval()
    related, mu, logvar, recon = dis(x)
    h = dis.eu(x)
    _close(related, dis.er(x))
    _close(mu, h[:, :3])
    _close(logvar, h[:, 3:])
    _close(recon, dis.dec(torch.cat([related, mu], 1)))
    dis.train()
    for m in dis.modules():  # dropout off, the sampling on
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch.manual_seed(4)
    related, mu, logvar, recon = dis(x)
    torch.manual_seed(4)
    eps = torch.randn(5, 3, dtype=D64)
    _close(recon, dis.dec(torch.cat([related, mu + eps * torch.exp(0.5 * logvar)], 1)))


# ---- relationship alignment -------------------------------------------------------------------------

def _align_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(5, 4, generator=g, dtype=D64), dim=-1)
    s_cls, u_cls = torch.tensor([0, 2, 1, 1, 0]), torch.tensor([3, 4, 4])
    seen_x = torch.randn(5, 4, generator=g, dtype=D64) * 3
    unseen_x = torch.randn(3, 4, generator=g, dtype=D64) * 0.5
    return seen_x, emb[s_cls], unseen_x, emb[u_cls]


@pytest.mark.parametrize("tau", [0.1, 0.4])
def test_alignment_is_the_semantic_to_visual_kl_over_three_blocks(tau):
    sx, ss, ux, us = _align_inputs()
    _close(alignment_loss(sx, ss, ux, us, tau), t_align(sx, ss, ux, us, tau))
    _close(alignment_loss(sx, ss, ux, us, tau) - alignment_loss(sx, ss, None, None, tau),
           t_block(ux, ux, us, us, tau, True) + t_block(sx, ux, ss, us, tau, False))


def test_alignment_seen_block_alone_and_its_self_pair_mask():
    sx, ss, _, _ = _align_inputs(1)
    _close(alignment_loss(sx, ss, None, None, 0.1), t_block(sx, sx, ss, ss, 0.1, True))
    # self-pairs out: the same features with the diagonal of both softmaxes kept give another value
    assert abs(float(t_block(sx, sx, ss, ss, 0.1, False)) - float(t_block(sx, sx, ss, ss, 0.1, True))) > 1e-3


def test_alignment_single_unseen_feature_adds_nothing():
    """With one unseen feature its block has no pair and the cross softmax has one column: KL 0."""
    sx, ss, ux, us = _align_inputs(2)
    _close(alignment_loss(sx, ss, ux[:1], us[:1], 0.2), t_align(sx, ss, ux[:1], us[:1], 0.2))
    _close(alignment_loss(sx, ss, ux[:1], us[:1], 0.2), t_block(sx, sx, ss, ss, 0.2, True))


# ---- the trainer's combined objective ---------------------------------------------------------------

# the four paper ablation rows (joint head, CE on), the official MMD, the paper schedule (no head)
CASES = {"gmmn": dict(arch="gmmn", align=False, disentangle=False),
         "primitive": dict(arch="primitive", align=False, disentangle=False),
         "primitive_align": dict(arch="primitive", align=True, disentangle=False),
         "pading": dict(arch="primitive", align=True, disentangle=True),
         "official_mmd": dict(arch="primitive", align=False, disentangle=False, recipe="official"),
         "pading_after": dict(arch="primitive", align=True, disentangle=True, schedule="after", cls_weight=0.0)}
TINY = dict(num_primitives=8, layers=1, heads=2, ffn=16, unseen_per_class=2, sigmas=(1.0, 3.0), tau=0.2, lam=0.3,
            schedule="joint", cls_weight=0.5)


class _Spy:
    """Records the calls of a module's forward: (input, output)."""

    def __init__(self, monkeypatch, module):
        self.calls, self._fwd = [], module.forward
        monkeypatch.setattr(module, "forward", self)

    def __call__(self, x):
        out = self._fwd(x)
        self.calls.append((x, out))
        return out


def _classes_of(sem, emb):
    """The row of ``emb`` each semantic input is (exactly one)."""
    hits = [[c for c in range(len(emb)) if torch.equal(s, emb[c])] for s in sem]
    assert all(len(h) == 1 for h in hits), "a generator input that is no class embedding"
    return torch.tensor([h[0] for h in hits])


def _expected_objective(cfg, emb, n_seen, real, idx, head, gen_calls, dis_calls):
    """The objective of one step from what the generator and disentangler produced (float64):
    (total, {term: value} as the step reports them)."""
    sem = torch.cat([c[0] for c in gen_calls])
    out = torch.cat([c[1] for c in gen_calls]).double()
    cls = _classes_of(sem, emb)
    seen_rows, unseen_rows = cls < n_seen, cls >= n_seen
    fake, f_cls, u_fake, u_cls = out[seen_rows], cls[seen_rows], out[unseen_rows], cls[unseen_rows]
    for c in range(n_seen):  # one fake per real feature of its class
        assert int((f_cls == c).sum()) == int((idx == c).sum())
    want_u = torch.arange(n_seen, len(emb)).repeat_interleave(cfg.unseen_per_class) if cfg.align else torch.zeros(0)
    assert sorted(u_cls.tolist()) == sorted(want_u.tolist())
    r, e = real.double(), emb.double()
    if cfg.mmd == "official":
        terms = {"mmd": t_official_mmd(r, fake, cfg.sigmas)}
    else:
        present = sorted(set(idx.tolist()))
        terms = {"mmd": sum(t_mmd(r[idx == c], fake[f_cls == c], cfg.sigmas) for c in present) / len(present)}
    loss = terms["mmd"]
    seen_rel, unseen_rel = r, u_fake
    if cfg.disentangle:
        def out_of(x):
            hit = [o for i, o in dis_calls if i.shape == x.shape and torch.equal(i.double(), x)]
            assert len(hit) == 1, "one disentangler pass per feature set (real, fake seen, fake unseen)"
            return [t.double() for t in hit[0]]

        l_d = 0.0  # L_D of the real and of the fake seen features
        for x, y in ((r, idx), (fake, f_cls)):
            related, mu, logvar, recon = out_of(x)
            l_d = l_d + t_lr(related, y, e, cfg.tau) + t_lu(mu, logvar) + t_lrec(recon, x)
        terms["disentangle"] = l_d
        loss = loss + cfg.lam * terms["disentangle"]
        seen_rel, unseen_rel = out_of(r)[0], out_of(u_fake)[0]
    if cfg.align:
        terms["align"] = t_align(seen_rel, e[idx], unseen_rel, e[u_cls], cfg.tau)
        loss = loss + cfg.lam * terms["align"]
    if cfg.cls_weight and head is not None:
        terms["cls"] = t_ce(fake @ head[0].double().T + head[1].double(), f_cls)
        loss = loss + cfg.cls_weight * terms["cls"]
    return loss, terms


@pytest.mark.parametrize("case", list(CASES))
def test_trainer_objective_value_and_gradients_match_the_transcription(monkeypatch, case):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n_seen, emb = 3, F.normalize(torch.randn(5, 6, generator=g), dim=-1)
    space = ClassSpace([1, 2, 3], [4, 5], emb)
    trainer = GeneratorTrainer(GeneratorConfig(**{**TINY, **CASES[case]}), space, 8)
    cfg = trainer.cfg
    idx = torch.tensor([2, 0, 2, 1, 0, 2, 0, 2, 1])  # classes of 4, 3 and 2 rows, interleaved
    real = (torch.randn(9, 8, generator=g) + 2 * emb[idx, :1]).float()
    head = (torch.randn(6, 8, generator=g), torch.randn(6, generator=g)) if cfg.schedule == "joint" else None
    gen_spy = _Spy(monkeypatch, trainer.gen)
    dis_spy = _Spy(monkeypatch, trainer.dis) if trainer.dis is not None else None
    params = [p for m in (trainer.gen, trainer.dis) if m is not None for p in m.parameters()]
    seen = {}
    backward = torch.Tensor.backward

    def spy_backward(loss, *a, **kw):  # the objective and its gradients before the library's backward frees the graph
        want, parts = _expected_objective(cfg, emb, n_seen, real, idx, head, gen_spy.calls,
                                          dis_spy.calls if dis_spy else [])
        seen["terms"] = {k: float(v.detach()) for k, v in parts.items()}
        seen["loss"], seen["want"] = loss.detach(), want.detach()
        seen["grads"] = torch.autograd.grad(want, params, retain_graph=True, allow_unused=True)
        return backward(loss, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "backward", spy_backward)
    terms = trainer.step(real, idx, head)
    assert "loss" in seen, "the step did not call backward on its objective"
    torch.testing.assert_close(seen["loss"].double(), seen["want"], rtol=2e-5, atol=1e-6)
    assert set(terms) == set(seen["terms"])  # the reported terms, each the transcription's value
    for k, v in seen["terms"].items():
        assert terms[k] == pytest.approx(v, rel=2e-5, abs=1e-6), k
    for p, want in zip(params, seen["grads"]):
        want = torch.zeros_like(p) if want is None else want.float()
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
    assert any(float(w.abs().max()) > 0 for w in seen["grads"] if w is not None)
