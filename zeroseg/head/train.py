"""Classifier retraining: the official batch, its SGD step and the retraining loop (used by stage
``retrain_classifier`` through ``zeroseg.head.retrain``, by the joint schedule and by ``zeroseg
predict``; the baseline rows are ``zeroseg.head.baselines``).

The new head is linear over N_s + N_u + 1 outputs (seen, unseen, no-object), initialised
from the segmenter's seen head. Every step sees the official PADing batch composition
(``forward_train_classifier``): EVERY query row of ``images_per_batch`` whole seen training
images (Hungarian-matched -> its class, any other query -> no-object) plus ONE unseen feature
for each of ``unseen_per_step`` unseen classes drawn at random; weighted cross-entropy (unseen
classes ``unseen_weight``, no-object ``no_object_weight``), SGD with momentum. The unseen
features are synthetic (a generator's store, or fresh draws in the joint schedule) or real
(the oracle). So synthetic rows are a few per step against ~200 real rows (COCO: 5 against
1,200), and the seen classes keep the segmenter's accuracy. At inference the head replaces the
segmenter's; masks are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import FeatureStore


@dataclass(frozen=True)
class ClassifierConfig:
    """params.yaml section ``classifier``."""

    iterations: int = 2000  # head steps (the joint schedule takes one per generator step instead)
    images_per_batch: int = 12  # every query row of this many whole images per step (official: 12)
    unseen_per_step: int = 5  # unseen classes drawn per step, one unseen feature each (official NUM_CHOOSE: 5)
    lr: float = 0.01  # SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    unseen_weight: float = 5.0  # CE weight of unseen classes (official CLASS_ECO: 5; 2 for instance)
    no_object_weight: float = 0.1  # CE weight of no-object (official: 0.1)
    min_iou: float = 0.0  # matched queries below this IoU train as no-object (official: no floor)
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("iterations", "images_per_batch", "unseen_per_step"):
            if getattr(self, key) < 1:
                raise ConfigError(f"classifier.{key}: at least 1, got {getattr(self, key)}")
        if not 0.0 <= self.min_iou < 1.0:
            raise ConfigError(f"classifier.min_iou: in [0, 1), got {self.min_iou}")


class SeenRows:
    """Every query row of a seen store, held in memory with its training label: the seen class
    index (order of ``seen_ids``) of a matched query with IoU >= ``min_iou``, else -1
    (no-object); :meth:`batches` yields whole images."""

    def __init__(self, store: FeatureStore, seen_ids: list[int], min_iou: float) -> None:
        self.y = store.class_index(seen_ids, min_iou, "seen classes: was this store dumped from the seen split?")
        self.x = store.held_features()
        self.store = store

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (n, D) float32, y (n,)) of the store rows ``rows``."""
        return torch.from_numpy(self.x[rows].astype(np.float32)), torch.from_numpy(self.y[rows])

    def batches(self, images_per_batch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless :meth:`batch` of every query of ``images_per_batch`` whole images a step."""
        step = 0
        while True:
            yield self.batch(self.store.image_batch(step, images_per_batch, seed))
            step += 1


class UnseenPool:
    """Unseen features by class, one drawn per requested class and step."""

    def __init__(self, x: np.ndarray, y: np.ndarray, n_unseen: int) -> None:
        """x (M, D), y (M,) class index 0..n_unseen-1."""
        if not np.isfinite(x).all():
            raise DataError("unseen training features contain NaN/inf")
        self.rows = [np.flatnonzero(y == k) for k in range(n_unseen)]
        missing = [k for k, r in enumerate(self.rows) if not len(r)]
        if missing:
            raise DataError(f"unseen training features cover {n_unseen - len(missing)} of {n_unseen} unseen classes")
        self.x = x

    def draw(self, classes: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(k,) class indices -> (k, D) one random feature of each."""
        return torch.from_numpy(np.stack([self.x[rng.choice(self.rows[int(k)])] for k in classes]).astype(np.float32))


def segmenter_init(head_weight: torch.Tensor, head_bias: torch.Tensor,
                   n_unseen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K + 1, D) weights from the seen head (C + 1, D): seen rows and the no-object row copied,
    unseen rows start at the mean seen row."""
    seen_w, no_w = head_weight[:-1], head_weight[-1:]
    seen_b, no_b = head_bias[:-1], head_bias[-1:]
    uw = seen_w.mean(0, keepdim=True).repeat(n_unseen, 1)
    ub = seen_b.mean().repeat(n_unseen)
    return torch.cat([seen_w, uw, no_w]).clone(), torch.cat([seen_b, ub, no_b]).clone()


class HeadTrainer:
    """The new head (K + 1 = n_seen + n_unseen + 1 outputs) and its SGD; :meth:`step` is one
    update on one official batch."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, n_seen: int, n_unseen: int,
                 cfg: ClassifierConfig) -> None:
        self.layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.layer.weight.copy_(weight)
            self.layer.bias.copy_(bias)
        self.n_seen, self.n_unseen = n_seen, n_unseen
        self.opt = torch.optim.SGD(self.layer.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.class_weight = torch.ones(weight.shape[0])
        self.class_weight[n_seen:n_seen + n_unseen] = cfg.unseen_weight
        self.class_weight[-1] = cfg.no_object_weight

    def batch(self, x_real: torch.Tensor, y_real: torch.Tensor, x_unseen: torch.Tensor,
              unseen_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's rows (n + k, D) and targets: real rows (y_real: seen index, -1 = no-object)
        then one unseen feature per drawn class (``unseen_cls``: 0..n_unseen-1)."""
        no_object = self.class_weight.shape[0] - 1
        y = torch.cat([torch.where(y_real < 0, torch.full_like(y_real, no_object), y_real), unseen_cls + self.n_seen])
        return torch.cat([x_real, x_unseen.detach()]), y

    def step(self, x_real: torch.Tensor, y_real: torch.Tensor, x_unseen: torch.Tensor,
             unseen_cls: torch.Tensor) -> float:
        x, y = self.batch(x_real, y_real, x_unseen, unseen_cls)
        loss = F.cross_entropy(self.layer(x), y, weight=self.class_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer.weight.detach().clone(), self.layer.bias.detach().clone()

    def state_dict(self) -> dict:
        return {"layer": self.layer.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.layer.load_state_dict(state["layer"])
        self.opt.load_state_dict(state["optimizer"])


def draw_unseen(n_unseen: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``k`` distinct unseen class indices (all of them when k >= n_unseen), as randperm[:k]."""
    return torch.randperm(n_unseen, generator=g)[:k]


def retrain_head(cfg: ClassifierConfig, seen: SeenRows, pool: UnseenPool, init_w: torch.Tensor, init_b: torch.Tensor,
                 n_seen: int, n_unseen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cfg.iterations`` official steps from the segmenter's head (``init_w`` (C + 1, D)).
    Returns (K + 1, D), (K + 1,)."""
    rng, g = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    trainer = HeadTrainer(*segmenter_init(init_w, init_b, n_unseen), n_seen, n_unseen, cfg)
    batches = seen.batches(cfg.images_per_batch, cfg.seed)
    for _ in range(cfg.iterations):
        x, y = next(batches)
        classes = draw_unseen(n_unseen, cfg.unseen_per_step, g)
        trainer.step(x, y, pool.draw(classes, rng), classes)
    return trainer.weights()


def unseen_rows(store: FeatureStore, unseen_ids: list[int], min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``store`` labelled with an unseen class (IoU >= min_iou) and their class index."""
    lab, iou = store.labels, store.column("mask_iou")
    rows = np.flatnonzero(np.isin(lab, unseen_ids) & (iou >= min_iou))
    if not len(rows):
        raise DataError(f"{store.path}: no features of the unseen classes {unseen_ids}")
    pos = {c: i for i, c in enumerate(unseen_ids)}
    return store.features(rows), np.array([pos[int(c)] for c in lab[rows]])
