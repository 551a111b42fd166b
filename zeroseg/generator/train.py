"""Train a feature generator on cached real seen features (stage ``train_generator``).

Objective: L = L_G + λ (L_D + L_A) [+ cls_weight · CE through the joint head]: the MMD between
real and synthetic seen features plus (switchable) disentanglement and relationship
alignment, each in the paper's or the official code's form (``generator.config``). With
``schedule: joint`` every generator step is followed by one step of the new class head on the
same whole images (``zeroseg.generator.joint``), and the checkpoint carries that head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from zeroseg.atomic import atomic_file
from zeroseg.config import from_dict
from zeroseg.embed.classes import read_embeddings
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import NO_OBJECT, FeatureStore
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.config import LR_STEPS, POLY_POWER, GeneratorConfig, params_dict
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd, mmd_official
from zeroseg.generator.models import GMMNGenerator, PrimitiveGenerator
from zeroseg.generator.official_structure import OfficialStructure, official_losses
from zeroseg.resume import kill_point, rng_state, set_rng_state


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
    """The generator of a resolved config: (B, sem_dim) -> (B, feat_dim)."""
    if cfg.arch == "gmmn":
        return GMMNGenerator(sem_dim, feat_dim, hidden=cfg.ffn, noise_dim=sem_dim, noise_std=cfg.noise,
                             dropout=cfg.dropout)
    width = cfg.dim or feat_dim
    if cfg.architecture == "official" and width != feat_dim:
        raise ConfigError(f"generator.dim {cfg.dim}: the official architecture has no output Linear, so the "
                          f"primitive width must be the feature dimension {feat_dim} (dim: 0)")
    return PrimitiveGenerator(sem_dim, width, cfg.num_primitives, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout,
                              cfg.noise, cfg.architecture, out_dim=feat_dim)


def lr_factor(cfg: GeneratorConfig, step: int) -> float:
    """The lr multiplier of ``cfg.lr_schedule`` at ``step`` (0-based) of ``cfg.iterations``."""
    if cfg.lr_schedule == "steps":
        return 0.1 ** sum(step >= int(f * cfg.iterations) for f in LR_STEPS)
    if cfg.lr_schedule == "poly":
        return max(0.0, 1 - step / cfg.iterations) ** POLY_POWER
    return 1.0


class GeneratorTrainer:
    """The generator (+ the disentanglement modules) and its optimiser; :meth:`step` is one
    update on a batch of real seen features."""

    def __init__(self, cfg: GeneratorConfig, space: ClassSpace, feat_dim: int) -> None:
        cfg = cfg.resolved()
        self.cfg, self.space = cfg, space
        self.gen = build_generator(cfg, space.emb.shape[1], feat_dim)
        self.dis = self.struct = None
        if cfg.disentangle and cfg.structure == "paper":
            self.dis = Disentangler(feat_dim, space.emb.shape[1])
        if cfg.disentangle and cfg.structure == "official":
            self.struct = OfficialStructure(feat_dim, cfg.dropout)
        params = [p for m in (self.gen, self.dis, self.struct) if m is not None for p in m.parameters()]
        betas = (0.5, 0.999) if cfg.optimizer == "paper" else (0.9, 0.999)
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: lr_factor(cfg, step))
        self.col = {c: i for i, c in enumerate(space.all_ids)}  # category id -> row of space.emb

    def _unseen_rows(self) -> torch.Tensor:
        """Rows of ``space.emb`` whose fakes feed the structure terms (empty when none needs them)."""
        cfg, n_seen = self.cfg, len(self.space.seen_ids)
        needed = cfg.align or (cfg.structure == "official" and cfg.disentangle)
        if not needed:
            return torch.zeros(0, dtype=torch.long)
        return torch.arange(n_seen, len(self.space.emb)).repeat_interleave(cfg.unseen_per_class)

    def step(self, real: torch.Tensor, idx: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> dict[str, float]:
        """real (N, D) float32 seen features, idx (N,) their class rows in ``space.emb``; ``head``:
        the joint head's (K + 1, D) weight and bias for the CE term. Returns the loss terms."""
        cfg, emb = self.cfg, self.space.emb
        u_idx = self._unseen_rows()
        both = self.gen(emb[torch.cat([idx, u_idx])])  # one pass for seen and unseen fakes
        fake, u_fake = both[:len(idx)], both[len(idx):]
        if cfg.mmd == "official":
            l_g = mmd_official(fake, real, cfg.sigmas)  # pooled over the batch, as the official code
        else:
            classes = idx.unique()
            l_g = sum(mmd(real[idx == k], fake[idx == k], cfg.sigmas) for k in classes) / len(classes)
        loss, terms = l_g, {"mmd": float(l_g.detach())}
        if cfg.structure == "official":
            parts = {}
            if len(u_idx):  # the class side: the generator's own learned projection (fc_projection)
                n_seen = len(self.space.seen_ids)
                parts = official_losses(self.struct, fake, idx, u_fake, u_idx - n_seen, self.gen.project(emb), n_seen,
                                        cfg.align)
            for k, v in parts.items():
                loss = loss + cfg.lam * v
                terms[k] = float(v.detach())
        else:
            seen_rel = real
            if self.dis is not None:
                l_dr, seen_rel = self.dis.losses(real, idx, emb, cfg.tau)
                l_df, _ = self.dis.losses(fake, idx, emb, cfg.tau)
                loss = loss + cfg.lam * (l_dr + l_df)
                terms["disentangle"] = float((l_dr + l_df).detach())
            if cfg.align:
                u_rel = self.dis(u_fake)[0] if self.dis is not None else u_fake
                l_a = alignment_loss(seen_rel, emb[idx], u_rel, emb[u_idx], cfg.tau)
                loss = loss + cfg.lam * l_a
                terms["align"] = float(l_a.detach())
        if cfg.cls_weight and head is not None:
            ce = F.cross_entropy(F.linear(fake, head[0].detach(), head[1].detach()), idx)
            loss = loss + cfg.cls_weight * ce
            terms["cls"] = float(ce.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return terms

    def state_dict(self) -> dict:
        return {"generator": self.gen.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "disentangler": self.dis.state_dict() if self.dis is not None else {},
                "structure": self.struct.state_dict() if self.struct is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.gen.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.dis is not None:
            self.dis.load_state_dict(state["disentangler"])
        if self.struct is not None:
            self.struct.load_state_dict(state["structure"])


def matched_rows(store: FeatureStore, col: dict[int, int], min_iou: float) -> np.ndarray:
    """(N,) the class row in the semantic space of each matched query with IoU >= min_iou, else -1."""
    lab, iou = store.labels, store.column("mask_iou")
    keep = (lab != NO_OBJECT) & (iou >= min_iou)
    out = np.full(len(lab), -1, np.int64)
    out[keep] = [col[int(c)] for c in lab[keep]]
    return out


def train_generator(cfg: GeneratorConfig, seen_store: str | os.PathLike, embeddings: str | os.PathLike,
                    out: str | os.PathLike, show_progress: bool = True, segmenter: str | os.PathLike | None = None,
                    head_cfg=None) -> dict[str, float]:
    """Train and save ``out`` (generator weights + resolved config + class space; with the joint
    schedule also the head trained alongside, from ``segmenter``'s seen head with ``head_cfg``,
    the classifier section). Returns the smoothed final losses.

    With ``cfg.checkpoint_every`` the run's whole state (weights, optimisers, RNGs, step) is
    saved to ``<out>.last`` that often; a run of the same config on the same store resumes
    from it and ends with the same weights, bit for bit, as an uninterrupted run."""
    from zeroseg.generator.joint import JointHead

    cfg = cfg.resolved()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    store = FeatureStore(seen_store)
    seen_ids = [c["id"] for c in store.meta["classes"]]
    space = class_space(embeddings, seen_ids)
    col = {c: i for i, c in enumerate(space.all_ids)}
    rows = matched_rows(store, col, cfg.min_iou)
    present = [c for c in seen_ids if (rows == col[c]).any()]
    if len(present) < 2:
        raise DataError(f"{seen_store}: fewer than two seen classes have matched features with IoU >= {cfg.min_iou}")
    store.check_finite()
    trainer = GeneratorTrainer(cfg, space, store.dim)
    joint = None
    if cfg.schedule == "joint":
        if segmenter is None or head_cfg is None:
            raise ConfigError("generator.schedule joint trains the class head too: give the segmenter checkpoint "
                              "and the classifier section")
        joint = JointHead(head_cfg, space, segmenter, store, cfg.seed)
    whole_images = cfg.batch == "images" or joint is not None
    held = None if cfg.batch != "images" else joint.seen.x if joint is not None else store.held_features()
    classes = store.class_batches(present, cfg.per_class, rng, cfg.min_iou) if cfg.batch == "classes" else None
    last: dict[str, float] = {}
    resume_path = Path(f"{out}.last")
    identity = {"config": params_dict(cfg), "store": store.meta.get("checkpoint", ""), "rows": store.num_rows,
                "head": repr(head_cfg) if joint is not None else ""}
    start = 0
    if cfg.checkpoint_every and resume_path.exists():
        ck = torch.load(resume_path, map_location="cpu", weights_only=True)
        if ck["identity"] == identity:  # otherwise params or features changed since: start afresh
            trainer.load_state_dict(ck["trainer"])
            if joint is not None:
                joint.load_state_dict(ck["joint"])
            set_rng_state(ck["rng"], rng)
            start, last = int(ck["step"]), dict(ck["last"])
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"generator[{cfg.arch}]",
               disable=not show_progress)
    for step in bar:
        batch = store.image_batch(step, cfg.images_per_batch, cfg.seed) if whole_images else None
        if held is not None:
            keep = batch[rows[batch] >= 0]
            real, idx = torch.from_numpy(held[keep].astype(np.float32)), torch.from_numpy(rows[keep])
        else:
            chosen = rng.choice(len(present), size=min(cfg.classes_per_batch, len(present)), replace=False)
            real_all, lab_all = next(classes)
            keep = np.isin(lab_all, [present[i] for i in chosen])
            real, idx = torch.from_numpy(real_all[keep]), torch.tensor([col[int(c)] for c in lab_all[keep]])
        terms = trainer.step(real, idx, joint.weights() if joint is not None else None) if len(idx) else {}
        if joint is not None:
            terms["head"] = joint.step(trainer.gen, batch)
        last = {k: 0.9 * last.get(k, v) + 0.1 * v for k, v in terms.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
        done = step + 1
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.iterations:
            with atomic_file(resume_path) as tmp:
                torch.save({"identity": identity, "trainer": trainer.state_dict(), "rng": rng_state(rng),
                            "joint": joint.state_dict() if joint is not None else {}, "step": done, "last": last}, tmp)
        kill_point(done)
    state = {"generator": trainer.gen.state_dict(), "config": params_dict(cfg), "seen_ids": space.seen_ids,
             "unseen_ids": space.unseen_ids, "emb": space.emb, "feat_dim": store.dim}
    if joint is not None:
        w, b = joint.weights()
        state["joint_head"] = {"weight": w, "bias": b, "class_ids": space.all_ids}
    with atomic_file(out) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name
    resume_path.unlink(missing_ok=True)
    return last


def _load(path: str | os.PathLike) -> dict:
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: generator checkpoint not found") from exc
    except Exception as exc:  # corrupt or truncated file, or an object weights_only refuses
        raise DataError(f"{path}: not a readable generator checkpoint: {exc}") from exc
    for key in ("generator", "config", "seen_ids", "unseen_ids", "emb", "feat_dim"):
        if not isinstance(ck, dict) or key not in ck:
            raise DataError(f"{path}: generator checkpoint has no '{key}'")
    return ck


def load_generator(path: str | os.PathLike) -> tuple[torch.nn.Module, GeneratorConfig, ClassSpace]:
    """A saved generator (``torch.load(weights_only=True)``), its resolved config and class space."""
    ck = _load(path)
    cfg = from_dict(GeneratorConfig, ck["config"])
    space = ClassSpace(ck["seen_ids"], ck["unseen_ids"], ck["emb"])
    gen = build_generator(cfg, space.emb.shape[1], ck["feat_dim"])
    gen.load_state_dict(ck["generator"])
    return gen.eval(), cfg, space


def joint_head(path: str | os.PathLike, class_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (K + 1, D) weight and bias of the head trained jointly with the generator at ``path``,
    or None when it was trained alone; its classes must be ``class_ids``."""
    ck = _load(path)
    head = ck.get("joint_head")
    if head is None:
        return None
    if list(head["class_ids"]) != list(class_ids):
        raise DataError(f"{path}: the joint head's classes {list(head['class_ids'])[:5]}... differ from {class_ids[:5]}...")
    return head["weight"], head["bias"]


@torch.no_grad()
def synthesize(gen: torch.nn.Module, emb: torch.Tensor, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(len(emb) * per_class, D) synthetic features and the row index of their class in ``emb``."""
    torch.manual_seed(seed)
    idx = torch.arange(len(emb)).repeat_interleave(per_class)
    return gen(emb[idx]).numpy().astype(np.float32), idx.numpy()
