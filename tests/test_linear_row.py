"""The `linear` row (zeroseg/generator/linear.py) against an independent numpy transcription."""

import numpy as np
import pytest
import torch

from zeroseg.errors import DataError
from zeroseg.generator.linear import LinearGenerator


def _toy(seed=0, n_classes=5, sem=7, dim=4, per_class=400):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_classes + 2, sem))  # two extra rows: "unseen" classes
    means = rng.normal(size=(n_classes, dim)) * 3
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T / dim + 0.1 * np.eye(dim)
    x = np.concatenate([rng.multivariate_normal(m, cov, per_class) for m in means])
    idx = np.repeat(np.arange(n_classes), per_class)
    return emb, x, idx, cov


def _ridge_numpy(emb_seen, means, lam):
    """Primal centred ridge: W = (AcᵀAc + λI)⁻¹ Acᵀ (M − m̄)."""
    ac = emb_seen - emb_seen.mean(0)
    w = np.linalg.solve(ac.T @ ac + lam * np.eye(ac.shape[1]), ac.T @ (means - means.mean(0)))
    return lambda a: means.mean(0) + (a - emb_seen.mean(0)) @ w


def _pooled(x, idx):
    out = np.zeros((x.shape[1], x.shape[1]))
    for c in np.unique(idx):
        d = x[idx == c] - x[idx == c].mean(0)
        out += d.T @ d
    return out / (len(x) - len(np.unique(idx)))


def test_fit_matches_the_primal_ridge_and_the_pooled_covariance():
    emb, x, idx, _ = _toy()
    gen = LinearGenerator(emb.shape[1], x.shape[1])
    info = gen.fit(torch.from_numpy(x).float(), torch.from_numpy(idx), torch.from_numpy(emb).float(), ridge=0.5)
    means = np.stack([x[idx == c].mean(0) for c in range(5)])
    ref = _ridge_numpy(emb[:5], means, 0.5)
    got = gen.mean(torch.from_numpy(emb).float()).numpy()
    np.testing.assert_allclose(got, ref(emb), rtol=1e-4, atol=1e-4)  # seen AND unseen rows
    chol = gen.chol.numpy()
    cov = _pooled(x, idx)
    np.testing.assert_allclose(chol @ chol.T, cov + 1e-4 * np.trace(cov) / len(cov) * np.eye(len(cov)), rtol=1e-4,
                               atol=1e-5)
    assert info["classes"] == 5.0


def test_samples_have_the_predicted_mean_and_the_pooled_covariance():
    emb, x, idx, _ = _toy(seed=1)
    gen = LinearGenerator(emb.shape[1], x.shape[1])
    gen.fit(torch.from_numpy(x).float(), torch.from_numpy(idx), torch.from_numpy(emb).float(), ridge=1e-3)
    torch.manual_seed(0)
    a = torch.from_numpy(emb[5:6]).float().repeat(20000, 1)  # an unseen class
    s = gen(a).numpy()
    np.testing.assert_allclose(s.mean(0), gen.mean(a[:1]).numpy()[0], atol=0.05)
    np.testing.assert_allclose(np.cov(s.T), _pooled(x, idx), atol=0.06)


def test_small_ridge_reproduces_the_seen_class_means():
    emb, x, idx, _ = _toy(seed=2, n_classes=4, sem=10)  # more semantic dims than classes: interpolates
    gen = LinearGenerator(emb.shape[1], x.shape[1])
    info = gen.fit(torch.from_numpy(x).float(), torch.from_numpy(idx), torch.from_numpy(emb).float(), ridge=1e-8)
    means = np.stack([x[idx == c].mean(0) for c in range(4)])
    np.testing.assert_allclose(gen.mean(torch.from_numpy(emb[:4]).float()).numpy(), means, atol=1e-3)
    assert info["residual"] < 1e-3


def test_fit_refuses_one_class_and_a_bad_ridge():
    emb, x, idx, _ = _toy()
    gen = LinearGenerator(emb.shape[1], x.shape[1])
    one = idx == 0
    with pytest.raises(DataError, match="at least two seen classes"):
        gen.fit(torch.from_numpy(x[one]).float(), torch.from_numpy(idx[one]), torch.from_numpy(emb).float(), 1.0)
    with pytest.raises(DataError, match="generator.ridge"):
        gen.fit(torch.from_numpy(x).float(), torch.from_numpy(idx), torch.from_numpy(emb).float(), 0.0)


def test_state_dict_round_trip_keeps_the_fit():
    emb, x, idx, _ = _toy()
    gen = LinearGenerator(emb.shape[1], x.shape[1])
    gen.fit(torch.from_numpy(x).float(), torch.from_numpy(idx), torch.from_numpy(emb).float(), ridge=0.1)
    other = LinearGenerator(emb.shape[1], x.shape[1])
    other.load_state_dict(gen.state_dict())
    a = torch.from_numpy(emb).float()
    torch.testing.assert_close(other.mean(a), gen.mean(a))
