"""Seen-only segmenter training: AdamW, warmup + poly schedule, dvclive curves, atomic
checkpoints with config and class list, resume after interruption, DDP through torchrun."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from zeroseg.atomic import write_json
from zeroseg.config import from_dict
from zeroseg.data.panoptic import load_panoptic
from zeroseg.errors import ConfigError
from zeroseg.segmenter.data import PanopticSegments, collate, seen_classes
from zeroseg.segmenter.distributed import all_reduce_mean, setup_distributed, teardown
from zeroseg.segmenter.model import SegmenterConfig, build_model, load_checkpoint, save_checkpoint


class ShardedInfiniteSampler(torch.utils.data.Sampler):
    """Endless indices: a fresh seeded permutation per epoch, rank r taking every world-th.

    Yields virtual indices ``k + n * epoch`` so the dataset can seed its augmentation by
    epoch; ``start`` skips the draws already consumed (exact resume)."""

    def __init__(self, n: int, rank: int, world: int, seed: int, start: int = 0) -> None:
        self.n, self.rank, self.world, self.seed, self.start = n, rank, world, seed, start

    def __iter__(self) -> Iterator[int]:
        per_epoch = math.ceil(self.n / self.world)
        epoch, skip = divmod(self.start, per_epoch)
        while True:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            perm = np.resize(perm, per_epoch * self.world)[self.rank::self.world]
            for k in perm[skip:]:
                yield int(k) + self.n * epoch
            epoch, skip = epoch + 1, 0


class _EpochView(torch.utils.data.Dataset):
    def __init__(self, ds: PanopticSegments) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, v: int):
        self.ds.epoch, k = divmod(v, len(self.ds))
        return self.ds[k]


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    final_loss: float
    resumed_from: int


def lr_factor(step: int, cfg: SegmenterConfig) -> float:
    """Linear warmup, then poly decay (power 0.9) to zero at ``cfg.iterations``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return max(0.0, 1 - step / cfg.iterations) ** 0.9


def train_segmenter(cfg: SegmenterConfig, seen_json: str | os.PathLike, image_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, png_dir: str | os.PathLike | None = None,
                    live_dir: str | os.PathLike | None = None, show_progress: bool = True) -> TrainResult:
    """Train on the seen split; writes ``out_dir/model.pt`` (+ ``last.pt`` while training)."""
    ctx = setup_distributed()
    try:
        return _train(cfg, seen_json, image_dir, Path(out_dir), png_dir, live_dir, ctx, show_progress)
    finally:
        teardown(ctx)


def _train(cfg, seen_json, image_dir, out_dir, png_dir, live_dir, ctx, show_progress) -> TrainResult:
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"segmenter.batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} processes")
    torch.manual_seed(cfg.seed)
    classes = seen_classes(load_panoptic(seen_json))
    data = PanopticSegments(seen_json, image_dir, classes, cfg.image_size, png_dir, train=True,
                            scale_range=cfg.scale_range, flip=cfg.flip, seed=cfg.seed)
    if len(data) == 0:
        raise ConfigError(f"{seen_json}: no training images")
    model = build_model(cfg, len(classes)).to(ctx.device)
    backbone = [p for n, p in model.named_parameters() if ".pixel_level_module.encoder." in n]
    others = [p for n, p in model.named_parameters() if ".pixel_level_module.encoder." not in n]
    opt = torch.optim.AdamW([{"params": others}, {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]

    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    start = 0
    if last.exists():
        ck = load_checkpoint(last)
        same_run = from_dict(SegmenterConfig, ck["config"]) == cfg and [c["id"] for c in ck["classes"]] == [c["id"] for c in classes]
        if same_run:  # otherwise params changed since: start afresh
            model.load_state_dict(ck["model"])
            if "optimizer" in ck:
                opt.load_state_dict(ck["optimizer"])
            start = int(ck["step"])
    resumed_from = start
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    per_rank = cfg.batch_size // ctx.world_size
    sampler = ShardedInfiniteSampler(len(data), ctx.rank, ctx.world_size, cfg.seed, start * per_rank)
    loader = torch.utils.data.DataLoader(_EpochView(data), batch_size=per_rank, sampler=sampler,
                                         collate_fn=collate, num_workers=cfg.workers)
    live = None
    if ctx.is_main and live_dir is not None:
        from dvclive import Live

        try:
            live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None, report=None)
        except Exception as exc:  # dvclive needs a git repo with a commit; training does not
            print(f"warning: dvclive curves disabled ({exc})", file=sys.stderr)
    model.train()
    loss_avg = float("nan")
    it = iter(loader)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="segmenter",
               disable=not (ctx.is_main and show_progress))
    for step in bar:
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_factor(step, cfg)
        batch = next(it)
        out = model(pixel_values=batch["pixel_values"].to(ctx.device),
                    mask_labels=[m.to(ctx.device) for m in batch["mask_labels"]],
                    class_labels=[c.to(ctx.device) for c in batch["class_labels"]])
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"segmenter loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        lv = float(all_reduce_mean(loss.detach(), ctx))
        loss_avg = lv if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * lv
        bar.set_postfix(loss=f"{loss_avg:.2f}")
        if live is not None and (step % 10 == 0 or step == cfg.iterations - 1):
            live.step = step
            live.log_metric("train/loss", lv)
            live.log_metric("train/loss_smoothed", loss_avg)
            live.log_metric("train/lr", opt.param_groups[0]["lr"])
            live.next_step()
        done = step + 1
        if ctx.is_main and (done % cfg.checkpoint_every == 0 and done < cfg.iterations):
            save_checkpoint(last, _unwrap(model), cfg, classes, done, opt)
    if live is not None:
        live.end()
    final = out_dir / "model.pt"
    if ctx.is_main:
        save_checkpoint(final, _unwrap(model), cfg, classes, cfg.iterations)
        write_json(out_dir / "classes.json", classes)
        last.unlink(missing_ok=True)
    ctx.barrier()
    return TrainResult(final, cfg.iterations, loss_avg, resumed_from)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
