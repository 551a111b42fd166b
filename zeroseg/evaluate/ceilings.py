"""Transfer checks: can the dumped query features carry zero-shot transfer at all? Measured on
the features alone, before any generator is trained.

* **placement** (leave-one-seen-class-out): a centred ridge map from a class description to
  the class-mean query feature, fitted on the other seen classes of the same kind (things with
  things, stuff with stuff), predicts the held-out class's mean. Its ratio
  ``‖predicted − real mean‖ / ‖real mean − nearest other seen class mean‖`` is below 1 when
  the map places the class nearer its own mean than to any other seen class. Descriptions:
  the IDEAL attributes (one-hot of each attribute slot's word, ``categories[].attributes``)
  and the run's class-name embeddings (the configured semantic source). The same ratio is
  reported for every unseen class (map fitted on all seen classes of its kind, real unseen
  features): reported, never tuned on.
* **nearest-class-mean GZSL**: every matched validation query is labelled with the nearest
  class mean among all classes (Euclidean); per-class accuracy averaged over seen and over
  unseen classes, and their harmonic mean. With the REAL unseen means (from the images the
  split removed) this is the feature ceiling; with the unseen means placed by the maps above
  it is what a linear semantic-to-visual map reaches (DEM-style).

Shapes: class means (C, D); descriptions (C, A); validation features (n, D).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeroseg.data.panoptic import load_panoptic
from zeroseg.embed.space import class_space
from zeroseg.errors import ConfigError, DataError
from zeroseg.evaluate.fidelity import placement_ratio
from zeroseg.features.store import FeatureStore


@dataclass(frozen=True)
class CeilingsConfig:
    """params.yaml section ``ceilings``."""

    min_iou: float = 0.5  # real features: matched queries with mask IoU >= this
    ridge_attributes: float = 1e-2  # ridge λ of the map from one-hot attributes
    ridge_names: float = 1e-3  # ridge λ of the map from the class-name embeddings

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_iou <= 1.0:
            raise ConfigError(f"ceilings.min_iou: in [0, 1], got {self.min_iou}")
        for key in ("ridge_attributes", "ridge_names"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"ceilings.{key}: a positive ridge weight, got {getattr(self, key)}")


def class_means(store: FeatureStore, class_ids: list[int], min_iou: float,
                known: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) float64 mean feature and (C,) row count of each of ``class_ids``' matched queries
    (IoU >= ``min_iou``); a class without rows gets NaN. ``known``: every class the store may
    hold (default ``class_ids``; the removed images also show seen classes)."""
    known = list(known or class_ids)
    pos = store.class_index(known, min_iou, "classes of this run")
    pick = np.full(len(known) + 1, -1)
    pick[[known.index(c) for c in class_ids]] = np.arange(len(class_ids))
    pos = pick[pos]  # -1 (unmatched) indexes the last entry, -1 too
    rows = np.flatnonzero(pos >= 0)
    x = store.features(rows).astype(np.float64) if len(rows) else np.zeros((0, store.dim))
    sums = np.zeros((len(class_ids), store.dim))
    np.add.at(sums, pos[rows], x)
    counts = np.bincount(pos[rows], minlength=len(class_ids))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float):
    """Centred ridge regression of y (n, D) on x (n, A): returns ``predict(x') -> (m, D)``."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - my))
    return lambda z: my + (np.atleast_2d(z) - mx) @ w


def attribute_onehot(attributes: list[list[str]]) -> np.ndarray:
    """(C, A) one-hot of each attribute slot's word: column (slot, word) is 1 where class c has
    that word in that slot."""
    cols = sorted({(k, w) for attrs in attributes for k, w in enumerate(attrs)})
    at = {c: i for i, c in enumerate(cols)}
    out = np.zeros((len(attributes), len(cols)))
    for i, attrs in enumerate(attributes):
        for k, w in enumerate(attrs):
            out[i, at[(k, w)]] = 1.0
    return out


def leave_one_out(desc: np.ndarray, means: np.ndarray, group: np.ndarray, lam: float) -> np.ndarray:
    """(C,) leave-one-class-out placement ratio of each class among the classes of its group
    (NaN where fewer than 3 classes of the group have features)."""
    out = np.full(len(means), np.nan)
    ok = np.isfinite(means).all(1)
    for i in np.flatnonzero(ok):
        rest = np.flatnonzero(ok & (group == group[i]) & (np.arange(len(means)) != i))
        if len(rest) >= 2:
            pred = ridge_fit(desc[rest], means[rest], lam)(desc[i])[0]
            out[i] = placement_ratio(pred, means[i], means[rest])
    return out


def placed_unseen(desc: np.ndarray, means: np.ndarray, group: np.ndarray, n_seen: int, lam: float) -> np.ndarray:
    """(C - n_seen, D) unseen class means predicted by a map fitted on the seen classes of the
    same group (rows: classes n_seen..C-1 of ``desc``; NaN where the group has < 2 seen classes)."""
    out = np.full((len(desc) - n_seen, means.shape[1]), np.nan)
    ok = np.isfinite(means[:n_seen]).all(1)
    for j, i in enumerate(range(n_seen, len(desc))):
        rest = np.flatnonzero(ok & (group[:n_seen] == group[i]))
        if len(rest) >= 2:
            out[j] = ridge_fit(desc[rest], means[rest], lam)(desc[i])[0]
    return out


def ncm_accuracy(means: np.ndarray, x: np.ndarray, y: np.ndarray, n_seen: int) -> tuple[np.ndarray, dict]:
    """Nearest-class-mean labels of x (n, D) among ``means`` (C, D) (classes with NaN means never
    win); y (n,) class positions. Returns per-class accuracy (C,) (NaN without test rows) and
    ``{"seen", "unseen", "hm"}`` (means of the per-class accuracies, in %)."""
    m = np.where(np.isfinite(means), means, np.inf)
    d = ((x[:, None, :] - m[None]) ** 2).sum(-1) if len(x) else np.zeros((0, len(means)))
    pred = d.argmin(1)
    acc = np.full(len(means), np.nan)
    for c in range(len(means)):
        sel = y == c
        if sel.any():
            acc[c] = float((pred[sel] == c).mean())
    s, u = np.nanmean(acc[:n_seen]) * 100, np.nanmean(acc[n_seen:]) * 100
    return acc, {"seen": s, "unseen": u, "hm": 2 * s * u / (s + u) if s + u > 0 else 0.0}


def _median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def _share_below_one(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float((v < 1).mean()) if len(v) else float("nan")


@dataclass(frozen=True)
class Ceilings:
    metrics: dict[str, float | None]  # flat keys for metrics/ceilings/s<seed>.json (None: no data)
    per_class: pd.DataFrame  # one row a class


def transfer_checks(cfg: CeilingsConfig, seen_store: str | os.PathLike, unseen_store: str | os.PathLike,
                    val_store: str | os.PathLike, embeddings: str | os.PathLike,
                    categories_json: str | os.PathLike) -> Ceilings:
    """The transfer checks of one run (module docstring). ``categories_json``: the split's
    ``*_all.json`` (seen/unseen recorded on every category, attributes where the dataset has them)."""
    seen_st = FeatureStore(seen_store)
    space = class_space(embeddings, _seen_ids(seen_st))
    ids, ns = space.all_ids, len(space.seen_ids)
    cats = load_panoptic(categories_json).categories
    group = np.array([cats[c].isthing for c in ids], np.int64)
    seen_means, seen_n = class_means(seen_st, space.seen_ids, cfg.min_iou)
    unseen_means, unseen_n = class_means(FeatureStore(unseen_store), space.unseen_ids, cfg.min_iou, ids)
    means, counts = np.concatenate([seen_means, unseen_means]), np.concatenate([seen_n, unseen_n])
    if not np.isfinite(seen_means).all(1).any():
        raise DataError(f"{seen_store}: no seen class has matched queries with mask IoU >= {cfg.min_iou}")
    descs = {"names": (space.emb.numpy().astype(np.float64), cfg.ridge_names)}
    attrs = [cats[c].raw.get("attributes") for c in ids]
    if all(attrs):
        descs = {"attr": (attribute_onehot(attrs), cfg.ridge_attributes), **descs}

    val = FeatureStore(val_store)
    vpos = val.class_index(ids, cfg.min_iou, "classes of this run")
    vrows = np.flatnonzero(vpos >= 0)
    vx, vy = val.features(vrows).astype(np.float64), vpos[vrows]

    m: dict[str, float] = {"seen_classes": ns, "unseen_classes": len(ids) - ns, "val_queries": int(len(vrows))}
    table = pd.DataFrame({"category_id": ids, "name": [cats[c].name for c in ids], "isthing": group.astype(bool),
                          "split": ["seen"] * ns + ["unseen"] * (len(ids) - ns), "train_rows": counts})
    acc, real = ncm_accuracy(means, vx, vy, ns)
    m.update({f"ncm_real_{k}": v for k, v in real.items()})
    table["ncm_real_acc"] = acc
    for name, (desc, lam) in descs.items():
        loo = leave_one_out(desc[:ns], seen_means, group[:ns], lam)
        placed = placed_unseen(desc, seen_means, group, ns, lam)
        ratio_u = np.array([placement_ratio(p, r, seen_means[group[:ns] == group[ns + j]])
                            if np.isfinite(p).all() and np.isfinite(r).all() else np.nan
                            for j, (p, r) in enumerate(zip(placed, unseen_means))])
        ratios = np.concatenate([loo, ratio_u])
        things = group[:ns] == 1
        m.update({f"loo_{name}_median": _median(loo), f"loo_{name}_below_1": _share_below_one(loo),
                  f"loo_{name}_median_things": _median(loo[things]), f"loo_{name}_median_stuff": _median(loo[~things]),
                  f"unseen_{name}_median": _median(ratio_u), f"unseen_{name}_below_1": _share_below_one(ratio_u)})
        acc, placed_scores = ncm_accuracy(np.concatenate([seen_means, placed]), vx, vy, ns)
        m.update({f"ncm_{name}_{k}": v for k, v in placed_scores.items()})
        table[f"ratio_{name}"] = ratios
        table[f"ncm_{name}_acc"] = acc
    # a check without data (e.g. no unseen class has matched queries) is null, never NaN (strict JSON)
    return Ceilings({k: round(float(v), 4) if np.isfinite(v) else None for k, v in m.items()}, table)


def _seen_ids(store: FeatureStore) -> list[int]:
    """The seen category ids a store's segmenter was trained on (``meta.classes``)."""
    classes = store.meta.get("classes")
    if not classes:
        raise DataError(f"{store.path}: meta.json lists no classes")
    try:
        return [int(c["id"]) for c in classes]
    except (TypeError, KeyError) as e:
        raise DataError(f"{store.path}: meta.json classes are not category records ({e})") from e
