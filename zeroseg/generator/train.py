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
from zeroseg.resume import kill_point, rng_state, set_rng_state


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
    checkpoint_every: int = 0  # save <out>.last every this many steps to resume an interrupted run (0: never)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ConfigError(f"generator.checkpoint_every: 0 (never) or a number of steps, got {self.checkpoint_every}")
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


class GeneratorTrainer:
    """The generator (+ disentangler) and its optimiser; :meth:`step` is one update of
    L = L_G + λ (L_D + L_A) on a batch of real seen features."""

    def __init__(self, cfg: GeneratorConfig, space: ClassSpace, feat_dim: int) -> None:
        self.cfg, self.space = cfg, space
        self.gen = build_generator(cfg, space.emb.shape[1], feat_dim)
        self.dis = Disentangler(feat_dim, space.emb.shape[1]) if cfg.disentangle else None
        params = list(self.gen.parameters()) + (list(self.dis.parameters()) if self.dis else [])
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.999))
        self.col = {c: i for i, c in enumerate(space.all_ids)}  # category id -> row of space.emb

    def step(self, real: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        """real (N, D) float32 seen features, idx (N,) their class rows in ``space.emb``.
        Returns the loss terms of this step."""
        cfg, emb, gen, dis = self.cfg, self.space.emb, self.gen, self.dis
        u_idx = (torch.arange(len(self.space.seen_ids), len(emb)).repeat_interleave(cfg.unseen_per_class) if cfg.align
                 else torch.zeros(0, dtype=torch.long))  # unseen fakes only feed the alignment loss
        both = gen(emb[torch.cat([idx, u_idx])])  # one pass: the primitives' self-attention is computed once
        fake, u_fake = both[:len(idx)], both[len(idx):]
        classes = idx.unique()
        l_g = sum(mmd(real[idx == k], fake[idx == k], cfg.sigmas) for k in classes) / len(classes)
        loss, terms = l_g, {"mmd": float(l_g.detach())}
        seen_rel = real
        if dis is not None:
            l_dr, seen_rel = dis.losses(real, idx, emb, cfg.tau)
            l_df, _ = dis.losses(fake, idx, emb, cfg.tau)
            loss = loss + cfg.lam * (l_dr + l_df)
            terms["disentangle"] = float((l_dr + l_df).detach())
        if cfg.align:
            u_rel = dis(u_fake)[0] if dis is not None else u_fake
            l_a = alignment_loss(seen_rel, emb[idx], u_rel, emb[u_idx], cfg.tau)
            loss = loss + cfg.lam * l_a
            terms["align"] = float(l_a.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return terms

    def state_dict(self) -> dict:
        return {"generator": self.gen.state_dict(), "optimizer": self.opt.state_dict(),
                "disentangler": self.dis.state_dict() if self.dis is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.gen.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["optimizer"])
        if self.dis is not None:
            self.dis.load_state_dict(state["disentangler"])


def train_generator(cfg: GeneratorConfig, seen_store: str | os.PathLike, embeddings: str | os.PathLike,
                    out: str | os.PathLike, show_progress: bool = True) -> dict[str, float]:
    """Train and save ``out`` (generator weights + config + class space). Returns final losses.

    With ``cfg.checkpoint_every`` the run's whole state (weights, optimiser, RNGs, step) is
    saved to ``<out>.last`` that often; a run of the same config on the same store resumes
    from it and ends with the same weights, bit for bit, as an uninterrupted run."""
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
    trainer = GeneratorTrainer(cfg, space, store.dim)
    batches = store.class_batches(present, cfg.per_class, rng, cfg.min_iou)  # lazy: draws nothing yet
    last: dict[str, float] = {}
    resume_path = Path(f"{out}.last")
    identity = {"config": params_dict(cfg), "store": store.meta.get("checkpoint", ""), "rows": store.num_rows}
    start = 0
    if cfg.checkpoint_every and resume_path.exists():
        ck = torch.load(resume_path, map_location="cpu", weights_only=True)
        if ck["identity"] == identity:  # otherwise params or features changed since: start afresh
            trainer.load_state_dict(ck["trainer"])
            set_rng_state(ck["rng"], rng)
            start, last = int(ck["step"]), dict(ck["last"])
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"generator[{cfg.arch}]",
               disable=not show_progress)
    for step in bar:
        chosen = rng.choice(len(present), size=min(cfg.classes_per_batch, len(present)), replace=False)
        real_all, lab_all = next(batches)
        keep = np.isin(lab_all, [present[i] for i in chosen])
        idx = torch.tensor([trainer.col[int(c)] for c in lab_all[keep]])
        terms = trainer.step(torch.from_numpy(real_all[keep]), idx)
        last = {k: 0.9 * last.get(k, v) + 0.1 * v for k, v in terms.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
        done = step + 1
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.iterations:
            with atomic_file(resume_path) as tmp:
                torch.save({"identity": identity, "trainer": trainer.state_dict(), "rng": rng_state(rng),
                            "step": done, "last": last}, tmp)
        kill_point(done)
    gen, D = trainer.gen, store.dim
    state = {"generator": gen.state_dict(), "config": params_dict(cfg), "seen_ids": space.seen_ids,
             "unseen_ids": space.unseen_ids, "emb": space.emb, "feat_dim": D}
    with atomic_file(out) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name
    resume_path.unlink(missing_ok=True)
    return last


def load_generator(path: str | os.PathLike) -> tuple[torch.nn.Module, GeneratorConfig, ClassSpace]:
    """A saved generator (``torch.load(weights_only=True)``), its config and class space."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: generator checkpoint not found") from exc
    except Exception as exc:  # corrupt or truncated file, or an object weights_only refuses
        raise DataError(f"{path}: not a readable generator checkpoint: {exc}") from exc
    for key in ("generator", "config", "seen_ids", "unseen_ids", "emb", "feat_dim"):
        if not isinstance(ck, dict) or key not in ck:
            raise DataError(f"{path}: generator checkpoint has no '{key}'")
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
