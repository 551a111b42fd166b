"""Classifier retraining (stage ``retrain_classifier``) and the projection baseline.

The new head is linear over N_s + N_u + 1 outputs (seen, unseen, no-object), initialised
from the segmenter's seen head, trained on real query features of seen images (matched ->
their class, unmatched -> no-object) plus unseen features: synthetic from a generator, or
real ones (the oracle). At inference it replaces the segmenter's head; masks are unchanged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.atomic import atomic_file
from zeroseg.errors import ConfigError, DataError
from zeroseg.evaluate.heads import Head
from zeroseg.features.store import NO_OBJECT, FeatureStore


@dataclass(frozen=True)
class ClassifierConfig:
    """params.yaml section ``classifier``."""

    epochs: int = 30  # passes over the training features
    batch_size: int = 256
    lr: float = 0.01  # SGD (paper: 1e-3 for 20k iterations; we run far fewer steps)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    unseen_weight: float = 5.0  # CE weight of unseen classes (official: 5)
    no_object_weight: float = 0.1  # CE weight of no-object (official: 0.1)
    min_iou: float = 0.5  # matched queries below this IoU count as no-object
    no_object_keep: float = 1.0  # share of no-object queries trained on (COCO: 0.1 keeps memory and time bounded)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.no_object_keep <= 1.0:
            raise ConfigError(f"classifier.no_object_keep: a share in (0, 1], got {self.no_object_keep}")


@dataclass
class TrainingSet:
    x: torch.Tensor  # (n, D)
    y: torch.Tensor  # (n,) index into seen + unseen + [no-object]


def real_seen_set(store: FeatureStore, seen_ids: list[int], min_iou: float, no_object_keep: float = 1.0,
                  seed: int = 0) -> TrainingSet:
    """The queries of the seen images: matched (IoU >= min_iou) -> class, others -> no-object.
    ``no_object_keep`` < 1 keeps that random share of the no-object queries (at COCO scale
    they are ~90% of 4.5M rows); features are read chunk by chunk, only kept rows are held."""
    lab, iou = store.labels, store.column("mask_iou")
    ids = np.asarray(seen_ids)
    order = np.argsort(ids)
    matched = lab != NO_OBJECT
    pos = np.searchsorted(ids[order], lab[matched]).clip(max=len(ids) - 1)
    known = ids[order][pos] == lab[matched]
    if not known.all():
        bad = sorted(set(lab[matched][~known].tolist()))
        raise DataError(f"{store.path}: labels {bad[:5]} are not seen classes: was this store dumped from the seen split?")
    y = np.full(len(lab), -1, np.int64)
    y[matched] = np.where(iou[matched] >= min_iou, order[pos], -1)
    keep = (y >= 0) | (np.random.default_rng(seed).random(len(y)) < no_object_keep)
    parts, start = [], 0
    for f, _ in store.iter_sequential():
        parts.append(f[keep[start:start + len(f)]])
        start += len(f)
    return TrainingSet(torch.from_numpy(np.concatenate(parts)), torch.from_numpy(y[keep]))


def segmenter_init(head_weight: torch.Tensor, head_bias: torch.Tensor, n_unseen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K + 1, D) weights from the seen head (C + 1, D): seen rows and the no-object row copied,
    unseen rows start at the mean seen row."""
    seen_w, no_w = head_weight[:-1], head_weight[-1:]
    seen_b, no_b = head_bias[:-1], head_bias[-1:]
    uw = seen_w.mean(0, keepdim=True).repeat(n_unseen, 1)
    ub = seen_b.mean().repeat(n_unseen)
    return torch.cat([seen_w, uw, no_w]).clone(), torch.cat([seen_b, ub, no_b]).clone()


def train_linear(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 class_weight: torch.Tensor, cfg: ClassifierConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD on weighted cross-entropy; y uses -1 for no-object (the last output)."""
    g = torch.Generator().manual_seed(cfg.seed)
    K1 = weight.shape[0]
    y = torch.where(y < 0, torch.full_like(y, K1 - 1), y)
    layer = torch.nn.Linear(weight.shape[1], K1)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    opt = torch.optim.SGD(layer.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        for a in range(0, len(x), cfg.batch_size):
            b = perm[a:a + cfg.batch_size]
            loss = F.cross_entropy(layer(x[b]), y[b], weight=class_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return layer.weight.detach().clone(), layer.bias.detach().clone()


def retrain_head(cfg: ClassifierConfig, seen: TrainingSet, unseen_x: np.ndarray, unseen_y: np.ndarray,
                 init_w: torch.Tensor, init_b: torch.Tensor, n_seen: int, n_unseen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """unseen_y: class index 0..n_unseen-1 of each unseen feature. Returns (K + 1, D), (K + 1,)."""
    if not np.isfinite(unseen_x).all():
        raise DataError("unseen training features contain NaN/inf")
    if len(set(unseen_y.tolist())) < n_unseen:
        raise DataError(f"unseen training features cover {len(set(unseen_y.tolist()))} of {n_unseen} unseen classes")
    x = torch.cat([seen.x, torch.from_numpy(unseen_x)])
    y = torch.cat([seen.y, torch.from_numpy(unseen_y.astype(np.int64) + n_seen)])
    w0, b0 = segmenter_init(init_w, init_b, n_unseen)
    cw = torch.ones(n_seen + n_unseen + 1)
    cw[n_seen:n_seen + n_unseen] = cfg.unseen_weight
    cw[-1] = cfg.no_object_weight
    return train_linear(x, y, w0, b0, cw, cfg)


def train_projection(cfg: ClassifierConfig, seen: TrainingSet, emb: torch.Tensor, n_seen: int,
                     tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projection baseline (ZegFormer-seg-like): logits = cos(P x, a_c) / τ with a learned
    no-object vector, trained on seen features only; unseen classes enter at test time by
    their embeddings ``emb`` (seen rows first). Returns the :class:`Head` tensors
    (weight (K + 1, E), bias (K + 1,), P (E, D), p (E,))."""
    torch.manual_seed(cfg.seed)
    D, E = seen.x.shape[1], emb.shape[1]
    proj = torch.nn.Linear(D, E)
    no_obj = torch.nn.Parameter(torch.randn(1, E) * 0.1)
    opt = torch.optim.Adam(list(proj.parameters()) + [no_obj], lr=1e-3)
    y = torch.where(seen.y < 0, torch.full_like(seen.y, n_seen), seen.y)
    cw = torch.ones(n_seen + 1)
    cw[-1] = cfg.no_object_weight
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=g)
        for a in range(0, len(y), cfg.batch_size):
            b = perm[a:a + cfg.batch_size]
            z = F.normalize(proj(seen.x[b]), dim=-1)
            cls = torch.cat([emb[:n_seen], F.normalize(no_obj, dim=-1)])
            loss = F.cross_entropy(z @ cls.T / tau, y[b], weight=cw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    weight = torch.cat([emb, F.normalize(no_obj, dim=-1)]).detach() / tau
    return weight, torch.zeros(len(weight)), proj.weight.detach().clone(), proj.bias.detach().clone()


def save_head(path: str | os.PathLike, head: Head, cfg: ClassifierConfig, kind: str, extra: dict | None = None) -> None:
    state = {"weight": head.weight, "bias": head.bias, "class_ids": head.class_ids, "isthing": head.isthing,
             "proj_weight": head.proj_weight, "proj_bias": head.proj_bias, "config": asdict(cfg), "kind": kind,
             **(extra or {})}
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name


def load_head(path: str | os.PathLike) -> Head:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: classifier head not found") from exc
    except Exception as exc:  # corrupt or truncated file, or an object weights_only refuses
        raise DataError(f"{path}: not a readable classifier head: {exc}") from exc
    for key in ("weight", "bias", "class_ids", "isthing"):
        if not isinstance(ck, dict) or key not in ck:
            raise DataError(f"{path}: classifier head has no '{key}'")
    return Head(ck["weight"], ck["bias"], list(ck["class_ids"]), list(ck["isthing"]), ck.get("proj_weight"),
                ck.get("proj_bias"))


def unseen_rows(store: FeatureStore, unseen_ids: list[int], min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``store`` labelled with an unseen class (IoU >= min_iou) and their class index."""
    lab, iou = store.labels, store.column("mask_iou")
    rows = np.flatnonzero(np.isin(lab, unseen_ids) & (iou >= min_iou))
    if not len(rows):
        raise DataError(f"{store.path}: no features of the unseen classes {unseen_ids}")
    pos = {c: i for i, c in enumerate(unseen_ids)}
    return store.features(rows), np.array([pos[int(c)] for c in lab[rows]])


def retrain_classifier(cfg: ClassifierConfig, segmenter: str | os.PathLike, seen_store: str | os.PathLike,
                       embeddings: str | os.PathLike, categories_json: str | os.PathLike, out: str | os.PathLike,
                       unseen_store: str | os.PathLike | None = None, projection: bool = False) -> Head:
    """A head over seen + unseen + no-object, saved to ``out``.

    ``unseen_store``: where unseen features come from (a synthesized store, or the real
    features of the images the split removed: the oracle). ``projection``: the projection
    baseline instead (no unseen features at all)."""
    from zeroseg.evaluate.heads import segmenter_head, unseen_from_split
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.generator.train import class_space

    torch.manual_seed(cfg.seed)
    sh = segmenter_head(segmenter)
    space = class_space(embeddings, sh.class_ids)
    split_unseen = unseen_from_split(categories_json)
    if set(space.unseen_ids) != split_unseen:
        raise DataError(f"{embeddings}: unseen classes {space.unseen_ids} differ from the split's {sorted(split_unseen)}")
    cats = load_panoptic(categories_json).categories
    isthing = [cats[c].isthing for c in space.all_ids]
    seen = real_seen_set(FeatureStore(seen_store), space.seen_ids, cfg.min_iou, cfg.no_object_keep, cfg.seed)
    if seen.x.shape[1] != sh.weight.shape[1]:
        raise DataError(f"{seen_store}: feature dim {seen.x.shape[1]} != segmenter head dim {sh.weight.shape[1]}")
    ns, nu = len(space.seen_ids), len(space.unseen_ids)
    if projection:
        w, b, pw, pb = train_projection(cfg, seen, space.emb, ns)
        head = Head(w, b, space.all_ids, isthing, pw, pb)
        kind = "projection"
    else:
        if unseen_store is None:
            raise DataError("retrain_classifier: give the unseen features' store (synthesized, or real for the oracle)")
        ux, uy = unseen_rows(FeatureStore(unseen_store), space.unseen_ids, cfg.min_iou)
        w, b = retrain_head(cfg, seen, ux, uy, sh.weight, sh.bias, ns, nu)
        head = Head(w, b, space.all_ids, isthing)
        kind = f"retrained on {unseen_store}"
    save_head(out, head, cfg, kind)
    return head
