"""Seen-only segmenter training: AdamW, warmup + poly schedule, dvclive curves, atomic
checkpoints with config and class list, DDP through torchrun, and exact resume: an
interrupted single-process run restarted from ``last.pt`` ends with the same weights, bit for
bit, as an uninterrupted one (weights, optimiser, gradient scaler, every RNG state, the
sampler's position and the smoothed loss are restored; augmentation is seeded per sample).
Under DDP only rank 0's RNG state is saved, so a resumed multi-process run is equivalent,
not bit-identical."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from zeroseg.atomic import atomic_file
from zeroseg.config import from_dict
from zeroseg.data.panoptic import load_panoptic
from zeroseg.errors import ConfigError, DataError
from zeroseg.resume import UNREADABLE_HINT, changed_keys, kill_point, rng_state, set_rng_state, start_afresh
from zeroseg.segmenter.data import Augment, PanopticSegments, collate, seen_classes
from zeroseg.segmenter.distributed import all_reduce_mean, global_num_masks, setup_distributed, teardown
from zeroseg.segmenter.model import SegmenterConfig, autocast, build_model, load_checkpoint, save_checkpoint


class ShardedInfiniteSampler(torch.utils.data.Sampler):
    """Endless indices: the stream of one fresh seeded permutation per epoch, rank r taking
    every world-th item of it (detectron2's TrainingSampler: no padding per epoch, so the
    W ranks' batches of a step make up the 1-process batch of that step, any n).

    Yields virtual indices ``k + n * epoch`` so the dataset can seed its augmentation by
    epoch; ``start`` skips the draws this rank already consumed (exact resume)."""

    def __init__(self, n: int, rank: int, world: int, seed: int, start: int = 0) -> None:
        self.n, self.rank, self.world, self.seed, self.start = n, rank, world, seed, start

    def __iter__(self) -> Iterator[int]:
        pos, epoch, perm = self.start * self.world + self.rank, -1, None
        while True:
            e, k = divmod(pos, self.n)
            if e != epoch:
                epoch, perm = e, np.random.default_rng([self.seed, e]).permutation(self.n)
            yield int(perm[k]) + self.n * epoch
            pos += self.world


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


def trim_curves(live_dir: Path, start: int) -> None:
    """Drop the dvclive curve rows of steps >= ``start`` (logged after the checkpoint an
    interrupted run resumes from), so the resumed run's curves equal an uninterrupted run's."""
    for tsv in sorted((live_dir / "plots" / "metrics").rglob("*.tsv")):
        lines = tsv.read_text().splitlines(keepends=True)
        keep = lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) < start]
        if len(keep) != len(lines):
            with atomic_file(tsv) as tmp:
                tmp.write_text("".join(keep))


def lr_factor(step: int, cfg: SegmenterConfig) -> float:
    """Linear warmup, then poly decay (power 0.9) to zero at ``cfg.iterations``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return max(0.0, 1 - step / cfg.iterations) ** 0.9


def training_loss(model: torch.nn.Module, batch: dict, device: torch.device, amp: str = "off") -> torch.Tensor:
    """Mask2Former's loss of one collated batch. The forward pass runs under ``amp`` autocast;
    the Hungarian matcher and the losses run in float32 (Mask2Former disables autocast there)."""
    with autocast(device, amp):
        out = model(pixel_values=batch["pixel_values"].to(device), output_auxiliary_logits=True)
    net = _unwrap(model)
    aux = [{k: v.float() for k, v in a.items()} for a in out.auxiliary_logits]
    loss_dict = net.get_loss_dict(out.masks_queries_logits.float(), out.class_queries_logits.float(),
                                  [m.to(device) for m in batch["mask_labels"]],
                                  [c.to(device) for c in batch["class_labels"]], aux)
    return net.get_loss(loss_dict)


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
    data = PanopticSegments(seen_json, image_dir, classes, cfg.image_size, png_dir,
                            Augment(cfg.scale_range, cfg.flip, cfg.seed))
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
    start, resume = 0, None
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16")  # fp16 gradients need loss scaling
    ck = _checkpoint_of_this_run(last, cfg, classes, ctx.is_main) if last.exists() else None
    if ck is not None:
        model.load_state_dict(ck["model"])
        if "optimizer" in ck:
            opt.load_state_dict(ck["optimizer"])
        start, resume = int(ck["step"]), ck.get("resume")
        if resume is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
    resumed_from = start
    if ctx.world_size > 1:
        model.criterion.get_num_masks = global_num_masks  # the global batch's mask count, as Mask2Former
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    per_rank = cfg.batch_size // ctx.world_size
    sampler = ShardedInfiniteSampler(len(data), ctx.rank, ctx.world_size, cfg.seed, start * per_rank)
    loader = torch.utils.data.DataLoader(_EpochView(data), batch_size=per_rank, sampler=sampler,
                                         collate_fn=collate, num_workers=cfg.workers)
    live = None
    if ctx.is_main and live_dir is not None:
        from dvclive import Live

        if start > 0:
            trim_curves(Path(live_dir), start)
        try:
            live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None, report=None)
        except Exception as exc:  # dvclive needs a git repo with a commit; training does not
            print(f"warning: dvclive curves disabled ({exc})", file=sys.stderr)
    model.train()
    loss_avg = float("nan")
    it = iter(loader)  # (with workers, this draws their base seed from the torch RNG: before the restore below)
    if resume is not None:
        set_rng_state(resume["rng"])
        loss_avg = float(resume["loss_avg"])
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="segmenter",
               disable=not (ctx.is_main and show_progress))
    for step in bar:
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_factor(step, cfg)
        loss = training_loss(model, next(it), ctx.device, cfg.amp)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"segmenter loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
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
            save_checkpoint(last, _unwrap(model), cfg, classes, done, opt,
                            {"rng": rng_state(), "scaler": scaler.state_dict(), "loss_avg": loss_avg})
        kill_point(done)
    if live is not None:
        live.end()
    final = out_dir / "model.pt"
    if ctx.is_main:
        save_checkpoint(final, _unwrap(model), cfg, classes, cfg.iterations)
        last.unlink(missing_ok=True)
    ctx.barrier()
    return TrainResult(final, cfg.iterations, loss_avg, resumed_from)


def _checkpoint_of_this_run(last: Path, cfg: SegmenterConfig, classes: list[dict], say: bool) -> dict | None:
    """``last``'s checkpoint when a run of the same config on the same classes wrote it, else
    None: the run starts afresh and says why (when ``say``). An unreadable file is an error."""
    try:
        ck = load_checkpoint(last)
    except DataError as exc:
        raise DataError(f"{exc}; {UNREADABLE_HINT}") from exc
    try:
        why = ", ".join(changed_keys(asdict(from_dict(SegmenterConfig, ck["config"])), asdict(cfg)))
        why = why and f"params changed: {why}"
    except (ConfigError, TypeError, AttributeError) as exc:  # written by a version with other keys
        why = f"its config does not read as this version's: {exc}"
    if not why and [c["id"] for c in ck["classes"]] != [c["id"] for c in classes]:
        why = "the seen classes changed"
    if why:
        if say:
            start_afresh(last, why)
        return None
    return ck


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
