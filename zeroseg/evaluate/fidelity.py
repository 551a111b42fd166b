"""Generator fidelity: how good a generator's synthetic unseen features are, measured on the
features alone (no masks, no segmentation).

* ``feature_gzsl``: a linear softmax classifier trained on real seen + synthetic unseen
  features, tested (generalised: over all classes) on held-out real seen and real unseen ones;
* ``mmd2``: squared MMD between synthetic and real features of a class;
* ``placement_ratio``: how far the synthetic class mean lands from the real one, relative to
  the distance between the real one and its nearest seen class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeroseg.errors import ConfigError, DataError


@dataclass(frozen=True)
class FidelityConfig:
    """params.yaml section ``fidelity``."""

    # share of the seen training IMAGES held out to test seen classes (images, not rows: no near-duplicate leaks)
    holdout: float = 0.3
    min_iou: float = 0.5  # real features: queries matched with mask IoU >= this (as the generator trains)
    max_per_class: int = 300  # real rows per class kept for training/testing (bounds time on COCO)
    mmd_samples: int = 200  # rows per side in each class's MMD (cost grows with its square)
    top_predictions: int = 3  # predicted classes listed per unseen class in the report
    seed: int = 0  # image hold-out, row sampling, MMD subsampling

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"fidelity.holdout: a share in (0, 1), got {self.holdout}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ConfigError(f"fidelity.min_iou: in [0, 1], got {self.min_iou}")
        for key in ("max_per_class", "mmd_samples", "top_predictions"):
            if getattr(self, key) < 1:
                raise ConfigError(f"fidelity.{key}: at least 1, got {getattr(self, key)}")


def _check(x: np.ndarray, y: np.ndarray, what: str, dim: int | None = None) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{what}: features (n, D) and labels (n,) expected, got {x.shape} and {y.shape}")
    if not len(x):
        raise DataError(f"{what}: empty")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"{what}: features have dim {x.shape[1]}, training features {dim}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: non-finite feature values")


def feature_gzsl(train: tuple[np.ndarray, np.ndarray], test_seen: tuple[np.ndarray, np.ndarray],
                 test_unseen: tuple[np.ndarray, np.ndarray], seen_ids, unseen_ids, seed: int = 0) -> dict:
    """Generalised zero-shot accuracy of a multinomial logistic regression on features.

    Each set is (x, y): train x (n, D), y (n,) category ids (real seen + synthetic unseen);
    test_seen and test_unseen x (m, D), y (m,). Features are standardised with the training mean/std; the classifier
    predicts over every class of the training set. Returns ``{"seen", "unseen", "hm",
    "per_class": {category id: {"acc", "n"}}}`` where seen/unseen average the per-class
    accuracies of the classes present in each test set and hm is their harmonic mean."""
    from sklearn.linear_model import LogisticRegression  # slow import (~1 s): only when used

    (train_x, train_y), (test_seen_x, test_seen_y), (test_unseen_x, test_unseen_y) = train, test_seen, test_unseen
    train_x, test_seen_x, test_unseen_x = (np.asarray(a, np.float64) for a in (train_x, test_seen_x, test_unseen_x))
    train_y, test_seen_y, test_unseen_y = (np.asarray(a, np.int64) for a in (train_y, test_seen_y, test_unseen_y))
    seen, unseen = {int(c) for c in seen_ids}, {int(c) for c in unseen_ids}
    _check(train_x, train_y, "training set")
    _check(test_seen_x, test_seen_y, "seen test set", train_x.shape[1])
    _check(test_unseen_x, test_unseen_y, "unseen test set", train_x.shape[1])
    classes = set(np.unique(train_y).tolist())
    if classes - seen - unseen:
        raise DataError(f"training set: labels {sorted(classes - seen - unseen)[:5]} are neither seen nor unseen ids")
    if len(classes) < 2:
        raise DataError(f"training set: at least 2 classes needed, got {sorted(classes)}")
    for name, y, ids in (("seen", test_seen_y, seen), ("unseen", test_unseen_y, unseen)):
        present = set(np.unique(y).tolist())
        if present - ids:
            raise DataError(f"{name} test set: labels {sorted(present - ids)[:5]} are not {name} ids")
        if present - classes:
            raise DataError(f"{name} test set: classes {sorted(present - classes)[:5]} have no training features")
    mu, sd = train_x.mean(0), train_x.std(0)
    sd[sd < 1e-8] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((train_x - mu) / sd, train_y)
    per_class, means = {}, {}
    for name, x, y in (("seen", test_seen_x, test_seen_y), ("unseen", test_unseen_x, test_unseen_y)):
        pred = model.predict((x - mu) / sd)
        accs = []
        for c in np.unique(y):
            hit = pred[y == c] == c
            per_class[int(c)] = {"acc": float(hit.mean()), "n": int(len(hit))}
            accs.append(hit.mean())
        means[name] = float(np.mean(accs))
    s, u = means["seen"], means["unseen"]
    return {"seen": s, "unseen": u, "hm": 2 * s * u / (s + u) if s > 0 and u > 0 else 0.0, "per_class": per_class}


def mmd2(x: np.ndarray, y: np.ndarray, max_samples: int = 200, seed: int = 0) -> float:
    """Squared MMD between samples x (n, D) and y (m, D), biased V-statistic:

        MMD² = 1/n² Σ_ij k(x_i, x_j) + 1/m² Σ_ij k(y_i, y_j) − 2/(nm) Σ_ij k(x_i, y_j),
        k(a, b) = exp(−‖a − b‖² / γ),  γ = median of ‖z_i − z_j‖² (i < j) over the pooled z = x ∪ y.

    Each side is first subsampled to at most ``max_samples`` rows (without replacement, RNG
    seeded by ``seed`` for each side alike, so mmd2(x, y) == mmd2(y, x)). 0 for identical samples."""
    from scipy.spatial.distance import cdist, pdist

    def sub(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        if a.ndim != 2 or not len(a):
            raise DataError(f"mmd2: a non-empty (n, D) sample expected, got shape {a.shape}")
        return a[np.sort(np.random.default_rng(seed).choice(len(a), max_samples,
                                                            replace=False))] if len(a) > max_samples else a

    x, y = sub(x), sub(y)
    if x.shape[1] != y.shape[1]:
        raise DataError(f"mmd2: samples of dim {x.shape[1]} and {y.shape[1]}")
    z = np.concatenate([x, y])
    gamma = float(np.median(pdist(z, "sqeuclidean"))) if len(z) > 1 else 0.0
    k = np.exp(-cdist(z, z, "sqeuclidean") / (gamma if gamma > 0 else 1.0))
    n = len(x)
    return max(0.0, float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()))


def placement_ratio(mean_synth: np.ndarray, mean_real: np.ndarray, seen_means: np.ndarray) -> float:
    """‖mean_synth − mean_real‖ / min_s ‖mean_real − seen_means[s]‖; vectors (D,), seen_means (S, D).
    < 1: the synthetic class sits nearer its real class than that class is to any seen class."""
    ms, mr, sm = (np.asarray(a, np.float64) for a in (mean_synth, mean_real, seen_means))
    if ms.shape != mr.shape or ms.ndim != 1 or sm.ndim != 2 or sm.shape[1] != mr.shape[0] or not len(sm):
        raise DataError(f"placement_ratio: shapes (D,), (D,), (S, D) expected, got {ms.shape}, {mr.shape}, {sm.shape}")
    nearest = float(np.linalg.norm(sm - mr, axis=1).min())
    gap = float(np.linalg.norm(ms - mr))
    return gap / nearest if nearest > 0 else float("inf")


def _take(rows: np.ndarray, labels: np.ndarray, ids, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` of ``rows`` per class in ``ids`` (seeded choice), sorted."""
    keep = [rng.choice(r, cap, replace=False) if len(r) > cap else r for c in ids if len(r := rows[labels[rows] == c])]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def _predicted(head, feats: np.ndarray, names: dict, top: int) -> str:
    """"name 62%, other 20%, no-object 9%": where ``feats`` (n, D) go under ``head`` (argmax)."""
    import torch

    want = (head.proj_weight if head.proj_weight is not None else head.weight).shape[1]
    if feats.shape[1] != want:
        raise DataError(f"head expects features of dim {want}, the stores have {feats.shape[1]}")
    with torch.no_grad():
        idx = head.logits(torch.from_numpy(feats.astype(np.float32))).argmax(-1).numpy()
    labels = [names.get(c, str(c)) for c in head.class_ids] + ["no-object"]
    counts = np.bincount(idx, minlength=len(labels))
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))[:top]
    return ", ".join(f"{labels[i]} {100 * counts[i] / len(idx):.0f}%" for i in order)


def generator_fidelity(cfg: FidelityConfig, seen_store: str | os.PathLike, unseen_store: str | os.PathLike,
                       synthetic_store: str | os.PathLike, head=None,
                       names: dict | None = None) -> tuple[dict, pd.DataFrame]:
    """Flat metrics ``feat_acc_seen/unseen/hm`` and ``mmd_unseen`` (mean over unseen classes of
    mmd2(synthetic, real)), and a per-class table (category_id, name, split, acc, n_test; unseen
    rows also mmd, ratio and, with ``head`` (a ``Head``), ``predicted``)."""
    from zeroseg.features.store import NO_OBJECT, VIEW_STRIDE, FeatureStore

    seen, unseen, synth = FeatureStore(seen_store), FeatureStore(unseen_store), FeatureStore(synthetic_store)
    if "seen_ids" not in synth.meta or "unseen_ids" not in synth.meta:
        raise DataError(f"{synth.path}: meta.json lacks seen_ids/unseen_ids (not a synthesized store?)")
    seen_ids, unseen_ids = [int(c) for c in synth.meta["seen_ids"]], [int(c) for c in synth.meta["unseen_ids"]]
    names = names or {}
    for st in (seen, unseen):
        if st.dim != synth.dim:
            raise DataError(f"{st.path}: features of dim {st.dim}, {synth.path} has {synth.dim}")
    rng = np.random.default_rng(cfg.seed)
    # real seen: a seeded share of the images held out, capped rows per class on each side
    images = pd.unique(seen.index["image_id"].to_numpy() % VIEW_STRIDE)  # augmented views go with their image
    held = images[rng.permutation(len(images))[:max(1, round(cfg.holdout * len(images)))]]
    lab, iou = seen.labels, seen.column("mask_iou")
    ok = np.flatnonzero(np.isin(lab, seen_ids) & (lab != NO_OBJECT) & (iou >= cfg.min_iou))
    is_test = np.isin(seen.source_image_ids()[ok], held)
    tr_rows, te_rows = (_take(ok[~is_test], lab, seen_ids, cfg.max_per_class, rng),
                        _take(ok[is_test], lab, seen_ids, cfg.max_per_class, rng))
    if not len(tr_rows) or not len(te_rows):
        raise DataError(f"{seen.path}: no matched seen features (IoU >= {cfg.min_iou}) for "
                        f"{'training' if not len(tr_rows) else 'testing'}")
    # a seen class whose every image was held out cannot be learnt: its test rows are left out (n_test 0)
    te_rows = te_rows[np.isin(lab[te_rows], lab[tr_rows])]
    if not len(te_rows):
        raise DataError(f"{seen.path}: no held-out seen features of a class that also has training features")
    tr_x, tr_y, te_x, te_y = seen.features(tr_rows), lab[tr_rows], seen.features(te_rows), lab[te_rows]
    # real unseen (test) and synthetic unseen (train)
    ulab, uiou = unseen.labels, unseen.column("mask_iou")
    u_rows = _take(np.flatnonzero(np.isin(ulab, unseen_ids) & (uiou >= cfg.min_iou)), ulab, unseen_ids,
                   cfg.max_per_class, rng)
    if not len(u_rows):
        raise DataError(f"{unseen.path}: no real features of the unseen classes {unseen_ids} (IoU >= {cfg.min_iou})")
    u_x, u_y = unseen.features(u_rows), ulab[u_rows]
    s_rows = _take(np.flatnonzero(np.isin(synth.labels, unseen_ids)), synth.labels, unseen_ids, cfg.max_per_class, rng)
    missing = sorted(set(unseen_ids) - set(synth.labels[s_rows].tolist()))
    if missing:
        raise DataError(f"{synth.path}: no synthetic features of the unseen classes {missing}")
    s_x, s_y = synth.features(s_rows), synth.labels[s_rows]
    res = feature_gzsl((np.concatenate([tr_x, s_x]), np.concatenate([tr_y, s_y])), (te_x, te_y), (u_x, u_y),
                       seen_ids, unseen_ids, cfg.seed)
    seen_present = [c for c in seen_ids if (tr_y == c).any()]
    seen_means = np.stack([tr_x[tr_y == c].mean(0) for c in seen_present])
    rows, mmds = [], []
    for split, ids in (("seen", seen_ids), ("unseen", unseen_ids)):
        for c in ids:
            pc = res["per_class"].get(c, {"acc": float("nan"), "n": 0})
            row = {"category_id": c, "name": names.get(c, str(c)), "split": split, "acc": pc["acc"], "n_test": pc["n"],
                   "mmd": float("nan"), "ratio": float("nan")}
            if head is not None:
                row["predicted"] = ""
            real = u_x[u_y == c]
            if split == "unseen" and len(real):
                synth_c = s_x[s_y == c]
                row["mmd"] = mmd2(synth_c, real, cfg.mmd_samples, cfg.seed)
                row["ratio"] = placement_ratio(synth_c.mean(0), real.mean(0), seen_means)
                mmds.append(row["mmd"])
                if head is not None:
                    row["predicted"] = _predicted(head, real, names, cfg.top_predictions)
            rows.append(row)
    flat = {"feat_acc_seen": res["seen"], "feat_acc_unseen": res["unseen"], "feat_acc_hm": res["hm"],
            "mmd_unseen": float(np.mean(mmds))}
    return flat, pd.DataFrame(rows)
