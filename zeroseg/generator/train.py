"""Train a feature generator on cached real seen features (stage ``train_generator``).

Objective: L = L_G + λ (L_D + L_A) — class-conditional multi-bandwidth MMD between real and
synthetic seen features, plus (switchable) disentanglement and relationship alignment.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from zeroseg.atomic import atomic_file
from zeroseg.config import from_dict
from zeroseg.embed.classes import read_embeddings
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import FeatureStore
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd
from zeroseg.generator.models import GMMNGenerator, PrimitiveGenerator


@dataclass(frozen=True)
class GeneratorConfig:
    """params.yaml section ``generator`` (the ablation rows override arch/align/disentangle)."""

    arch: str = "primitive"  # primitive | gmmn
    num_primitives: int = 400
    layers: int = 3
    heads: int = 4
    dim: int = 0  # primitive width d_k; 0 = the feature dimension
    ffn: int = 1024
    noise: float = 1.0  # std of the Gaussian noise
    align: bool = True
    disentangle: bool = True
    lam: float = field(default=0.1, metadata={"key": "lambda"})
    tau: float = 0.1
    sigmas: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 60.0)
    lr: float = 2e-4
    iterations: int = 1000
    classes_per_batch: int = 8
    per_class: int = 16
    unseen_per_class: int = 8
    min_iou: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ("primitive", "gmmn"):
            raise ConfigError(f"generator.arch: primitive or gmmn, got {self.arch!r}")


def params_dict(cfg: GeneratorConfig) -> dict:
    """The config as params.yaml keys (``lam`` -> ``lambda``)."""
    d = asdict(cfg)
    d["lambda"] = d.pop("lam")
    return d


@dataclass
class ClassSpace:
    """Classes known to the semantic space: seen (from the segmenter) then unseen."""

    seen_ids: list[int]
    unseen_ids: list[int]
    emb: torch.Tensor  # (len(seen) + len(unseen), E), L2-normalised, in that order

    @property
    def all_ids(self) -> list[int]:
        return self.seen_ids + self.unseen_ids


def class_space(embeddings: str | os.PathLike, seen_ids: list[int]) -> ClassSpace:
    """Check the embeddings file against the seen classes and order it seen-then-unseen."""
    df, vecs, _ = read_embeddings(embeddings)
    by_id = {int(c): i for i, c in enumerate(df["category_id"])}
    missing = [c for c in seen_ids if c not in by_id]
    if missing:
        raise DataError(f"{embeddings}: no embedding for seen class id(s) {missing}")
    split = dict(zip(df["category_id"].astype(int), df["split"]))
    unseen = sorted(c for c in by_id if split[c] == "unseen")
    if not unseen:
        raise DataError(f"{embeddings}: no class has split 'unseen' (embed the split stage's *_all.json)")
    extra = [c for c in by_id if split[c] == "seen" and c not in seen_ids]
    if extra:
        raise DataError(f"{embeddings}: seen classes {extra[:5]} are not among the segmenter's classes")
    if not np.isfinite(vecs).all():
        raise DataError(f"{embeddings}: non-finite embedding values")
    order = [by_id[c] for c in seen_ids + unseen]
    return ClassSpace(list(seen_ids), unseen, F.normalize(torch.from_numpy(vecs[order]).float(), dim=-1))


def build_generator(cfg: GeneratorConfig, sem_dim: int, feat_dim: int) -> torch.nn.Module:
    if cfg.arch == "gmmn":
        return GMMNGenerator(sem_dim, feat_dim, hidden=cfg.ffn, noise_dim=sem_dim, noise_std=cfg.noise)
    gen = PrimitiveGenerator(sem_dim, cfg.dim or feat_dim, cfg.num_primitives, cfg.layers, cfg.heads, cfg.ffn,
                             noise_std=cfg.noise)
    if cfg.dim and cfg.dim != feat_dim:
        gen.out = torch.nn.Linear(cfg.dim, feat_dim)
    return gen


def train_generator(cfg: GeneratorConfig, seen_store: str | os.PathLike, embeddings: str | os.PathLike,
                    out: str | os.PathLike, show_progress: bool = True) -> dict[str, float]:
    """Train and save ``out`` (generator weights + config + class space). Returns final losses."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    store = FeatureStore(seen_store)
    seen_ids = [c["id"] for c in store.meta["classes"]]
    space = class_space(embeddings, seen_ids)
    labels, iou = store.labels, store.column("mask_iou")
    present = [c for c in seen_ids if ((labels == c) & (iou >= cfg.min_iou)).any()]
    if len(present) < 2:
        raise DataError(f"{seen_store}: fewer than two seen classes have matched features with IoU >= {cfg.min_iou}")
    store.check_finite()
    D, E = store.dim, space.emb.shape[1]
    gen = build_generator(cfg, E, D)
    dis = Disentangler(D, E) if cfg.disentangle else None
    params = list(gen.parameters()) + (list(dis.parameters()) if dis else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.999))
    col = {c: i for i, c in enumerate(space.all_ids)}
    n_seen = len(space.seen_ids)
    batches = store.class_batches(present, cfg.per_class, rng, cfg.min_iou)
    last: dict[str, float] = {}
    bar = tqdm(range(cfg.iterations), desc=f"generator[{cfg.arch}]", disable=not show_progress)
    for _ in bar:
        chosen = rng.choice(len(present), size=min(cfg.classes_per_batch, len(present)), replace=False)
        real_all, lab_all = next(batches)
        keep = np.isin(lab_all, [present[i] for i in chosen])
        real = torch.from_numpy(real_all[keep])
        idx = torch.tensor([col[int(c)] for c in lab_all[keep]])
        fake = gen(space.emb[idx])
        l_g = sum(mmd(real[idx == k], fake[idx == k], cfg.sigmas) for k in idx.unique()) / len(idx.unique())
        loss, terms = l_g, {"mmd": float(l_g.detach())}
        seen_rel = real
        if dis is not None:
            l_dr, seen_rel = dis.losses(real, idx, space.emb, cfg.tau)
            l_df, _ = dis.losses(fake, idx, space.emb, cfg.tau)
            loss = loss + cfg.lam * (l_dr + l_df)
            terms["disentangle"] = float((l_dr + l_df).detach())
        if cfg.align:
            u_idx = torch.arange(n_seen, len(space.all_ids)).repeat_interleave(cfg.unseen_per_class)
            u_fake = gen(space.emb[u_idx])
            u_rel = dis(u_fake)[0] if dis is not None else u_fake
            l_a = alignment_loss(seen_rel, space.emb[idx], u_rel, space.emb[u_idx], cfg.tau)
            loss = loss + cfg.lam * l_a
            terms["align"] = float(l_a.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = {k: 0.9 * last.get(k, v) + 0.1 * v for k, v in terms.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
    state = {"generator": gen.state_dict(), "config": params_dict(cfg), "seen_ids": space.seen_ids,
             "unseen_ids": space.unseen_ids, "emb": space.emb, "feat_dim": D}
    with atomic_file(out) as tmp:
        torch.save(state, tmp)
    return last


def load_generator(path: str | os.PathLike) -> tuple[torch.nn.Module, GeneratorConfig, ClassSpace]:
    """A saved generator (``torch.load(weights_only=True)``), its config and class space."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: generator checkpoint not found") from exc
    cfg = from_dict(GeneratorConfig, ck["config"])
    space = ClassSpace(ck["seen_ids"], ck["unseen_ids"], ck["emb"])
    gen = build_generator(cfg, space.emb.shape[1], ck["feat_dim"])
    gen.load_state_dict(ck["generator"])
    return gen.eval(), cfg, space


@torch.no_grad()
def synthesize(gen: torch.nn.Module, emb: torch.Tensor, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(len(emb) * per_class, D) synthetic features and the row index of their class in ``emb``."""
    torch.manual_seed(seed)
    idx = torch.arange(len(emb)).repeat_interleave(per_class)
    return gen(emb[idx]).numpy().astype(np.float32), idx.numpy()
