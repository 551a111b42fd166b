"""Classifier retraining (stage ``retrain_classifier``) and the projection baseline.

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

import os
from collections.abc import Iterator
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

    iterations: int = 3000  # head steps (the joint schedule takes one per generator step instead)
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
        lab, iou = store.labels, store.column("mask_iou")
        pos = {c: i for i, c in enumerate(seen_ids)}
        matched = lab != NO_OBJECT
        unknown = sorted(set(np.unique(lab[matched]).tolist()) - set(pos))
        if unknown:
            raise DataError(f"{store.path}: labels {unknown[:5]} are not seen classes: was this store dumped from "
                            "the seen split?")
        lookup = np.full(max(pos, default=0) + 1, -1, np.int64)
        lookup[list(pos)] = list(pos.values())
        self.y = np.where(matched & (iou >= min_iou), lookup[np.where(matched, lab, 0)], -1)
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


def segmenter_init(head_weight: torch.Tensor, head_bias: torch.Tensor, n_unseen: int) -> tuple[torch.Tensor, torch.Tensor]:
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

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, n_seen: int, n_unseen: int, cfg: ClassifierConfig) -> None:
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

    def step(self, x_real: torch.Tensor, y_real: torch.Tensor, x_unseen: torch.Tensor, unseen_cls: torch.Tensor) -> float:
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


def save_head(path: str | os.PathLike, head: Head, cfg: ClassifierConfig, kind: str) -> None:
    state = {"weight": head.weight, "bias": head.bias, "class_ids": head.class_ids, "isthing": head.isthing,
             "proj_weight": head.proj_weight, "proj_bias": head.proj_bias, "config": asdict(cfg), "kind": kind}
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
                       unseen_store: str | os.PathLike | None = None, projection: bool = False,
                       generator: str | os.PathLike | None = None) -> Head:
    """A head over seen + unseen + no-object, saved to ``out``.

    ``unseen_store``: where unseen features come from (a synthesized store, or the real
    features of the images the split removed: the oracle). ``projection``: the projection
    baseline instead (no unseen features at all). ``generator``: a generator trained with the
    joint schedule carries the head trained alongside it, which is the row's head (nothing is
    retrained); any other generator is ignored."""
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.evaluate.heads import segmenter_head, unseen_from_split
    from zeroseg.generator.train import class_space, joint_head

    sh = segmenter_head(segmenter)
    space = class_space(embeddings, sh.class_ids)
    split_unseen = unseen_from_split(categories_json)
    if set(space.unseen_ids) != split_unseen:
        raise DataError(f"{embeddings}: unseen classes {space.unseen_ids} differ from the split's {sorted(split_unseen)}")
    cats = load_panoptic(categories_json).categories
    isthing = [cats[c].isthing for c in space.all_ids]
    ns, nu = len(space.seen_ids), len(space.unseen_ids)
    joint = joint_head(generator, space.all_ids) if generator is not None and not projection else None
    if joint is not None:
        head, kind = Head(*joint, space.all_ids, isthing), f"trained jointly with {generator}"
        save_head(out, head, cfg, kind)
        return head
    seen = SeenRows(FeatureStore(seen_store), space.seen_ids, cfg.min_iou)
    if seen.x.shape[1] != sh.weight.shape[1]:
        raise DataError(f"{seen_store}: feature dim {seen.x.shape[1]} != segmenter head dim {sh.weight.shape[1]}")
    if projection:
        w, b, pw, pb = train_projection(cfg, seen, space.emb, ns)
        head, kind = Head(w, b, space.all_ids, isthing, pw, pb), "projection"
    else:
        if unseen_store is None:
            raise DataError("retrain_classifier: give the unseen features' store (synthesized, or real for the oracle)")
        pool = UnseenPool(*unseen_rows(FeatureStore(unseen_store), space.unseen_ids, cfg.min_iou), nu)
        w, b = retrain_head(cfg, seen, pool, sh.weight, sh.bias, ns, nu)
        head, kind = Head(w, b, space.all_ids, isthing), f"retrained on {unseen_store}"
    save_head(out, head, cfg, kind)
    return head
