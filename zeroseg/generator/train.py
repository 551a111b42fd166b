"""Train a feature generator on cached real seen features (stage ``train_generator``).

Objective: L = L_G + λ (L_D + L_A) [+ cls_weight · CE through the joint head]: the MMD between
real and synthetic seen features plus (switchable) disentanglement and relationship
alignment, each in the paper's or the official code's form (``generator.config``). With
``schedule: joint`` every generator step is followed by one step of the new class head on the
same whole images (``zeroseg.generator.joint``), and the checkpoint carries that head.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from zeroseg.atomic import atomic_file
from zeroseg.embed.space import ClassSpace, class_space
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import FeatureStore
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.architectures import ARCHITECTURES
from zeroseg.generator.checkpoint import build_generator
from zeroseg.generator.config import LR_STEPS, POLY_POWER, GeneratorConfig, params_dict
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd, mmd_official
from zeroseg.generator.official_structure import OfficialStructure, official_losses
from zeroseg.resume import changed_keys, kill_point, read_resume_file, rng_state, set_rng_state, start_afresh


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
        return {"generator": self.gen.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
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


def train_generator(cfg: GeneratorConfig, seen_store: str | os.PathLike, embeddings: str | os.PathLike,
                    out: str | os.PathLike, show_progress: bool = True, segmenter: str | os.PathLike | None = None,
                    head_cfg=None) -> dict[str, float]:
    """Train and save ``out`` (generator weights + resolved config + class space; with the joint
    schedule also the head trained alongside, from ``segmenter``'s seen head with ``head_cfg``,
    the classifier section). Returns the smoothed final losses.

    With ``cfg.checkpoint_every`` the run's whole state (weights, optimisers, RNGs, step) is
    saved to ``<out>.last`` that often; a run of the same config on the same store resumes
    from it and ends with the same weights, bit for bit, as an uninterrupted run."""
    from zeroseg.generator.joint import JointSchedule

    cfg = cfg.resolved()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    store = FeatureStore(seen_store)
    seen_ids = [c["id"] for c in store.meta["classes"]]
    space = class_space(embeddings, seen_ids)
    col = {c: i for i, c in enumerate(space.all_ids)}
    rows = store.class_index(space.all_ids, cfg.min_iou, f"classes of {embeddings}")  # (N,) rows of space.emb
    present = [c for c in seen_ids if (rows == col[c]).any()]
    if len(present) < 2:
        raise DataError(f"{seen_store}: fewer than two seen classes have matched features with IoU >= {cfg.min_iou}")
    store.check_finite()
    if ARCHITECTURES[cfg.arch].fit is not None:  # closed form (the linear row): no loop, nothing to resume
        gen = build_generator(cfg, space.emb.shape[1], store.dim)
        keep = np.flatnonzero(rows >= 0)
        last = ARCHITECTURES[cfg.arch].fit(gen, cfg, torch.from_numpy(store.features(keep)),
                                           torch.from_numpy(rows[keep]), space.emb)
        _save(out, gen, cfg, space, store.dim)
        return last
    trainer = GeneratorTrainer(cfg, space, store.dim)
    joint = None
    if cfg.schedule == "joint":
        if segmenter is None or head_cfg is None:
            raise ConfigError("generator.schedule joint trains the class head too: give the segmenter checkpoint "
                              "and the classifier section")
        joint = JointSchedule(head_cfg, space, segmenter, store, cfg.seed)
    whole_images = cfg.batch == "images" or joint is not None
    held = None if cfg.batch != "images" else joint.seen.x if joint is not None else store.held_features()
    classes = store.class_batches(present, cfg.per_class, rng, cfg.min_iou) if cfg.batch == "classes" else None
    last: dict[str, float] = {}
    resume_path = Path(f"{out}.last")
    identity = {"config": params_dict(cfg), "store": store.meta.get("checkpoint", ""), "rows": store.num_rows,
                "head": repr(head_cfg) if joint is not None else ""}
    start = 0
    if cfg.checkpoint_every and resume_path.exists():
        ck = read_resume_file(resume_path, ("identity", "trainer", "rng", "joint", "step", "last"))
        old = ck["identity"] if isinstance(ck["identity"], dict) else {}
        changed = changed_keys(old, identity)
        if not changed:
            trainer.load_state_dict(ck["trainer"])
            if joint is not None:
                joint.load_state_dict(ck["joint"])
            set_rng_state(ck["rng"], rng)
            start, last = int(ck["step"]), dict(ck["last"])
        else:  # params or features changed since
            why = [f"params {changed_keys(old.get(k), identity[k])}" if k == "config" else k for k in changed]
            start_afresh(resume_path, f"changed: {', '.join(why)}")
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
    _save(out, trainer.gen, cfg, space, store.dim, joint.weights() if joint is not None else None)
    resume_path.unlink(missing_ok=True)
    return last


def _save(out: str | os.PathLike, gen: torch.nn.Module, cfg: GeneratorConfig, space: ClassSpace, feat_dim: int,
          joint_weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """The generator checkpoint: weights, resolved config, class space (+ the joint head)."""
    state = {"generator": gen.state_dict(), "config": params_dict(cfg), "seen_ids": space.seen_ids,
             "unseen_ids": space.unseen_ids, "emb": space.emb, "feat_dim": feat_dim}
    if joint_weights is not None:
        state["joint_head"] = {"weight": joint_weights[0], "bias": joint_weights[1], "class_ids": space.all_ids}
    with atomic_file(out) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name
