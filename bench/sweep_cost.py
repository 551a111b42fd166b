"""The price of one generator-training step, online vs cached, with the paper's R-50 configuration.

Online (the official PADing code): every step runs the frozen segmenter (backbone + pixel
decoder + transformer decoder) on a batch of images, Hungarian-matches its queries to the
ground truth, and trains the generator on the matched query features. Cached (zeroseg): the
features were dumped once; every step reads rows from the Zarr feature store (held in memory
after one read) and trains the generator. The generator step (400 primitives, 3 layers, 256-d,
133 classes, PADing losses) is the same code on both sides.

    python bench/sweep_cost.py [--image-size 256] [--batch 12] [--steps 2] [--store-images 4000]

CPU runs use a reduced image size (the paper trains at 1024 px: ~16x the pixels of 256 px, so
the online figure here is a lower bound); the output names the device and the size. The last
line is ``online X s/step, cached Y s/step, ratio R``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zeroseg.config import load_section
from zeroseg.embed.space import ClassSpace
from zeroseg.features.dump import match_image
from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store
from zeroseg.generator.config import GeneratorConfig
from zeroseg.generator.train import GeneratorTrainer
from zeroseg.segmenter.model import SegmenterConfig, autocast, build_model, query_features

PARAMS = Path(__file__).resolve().parents[1] / "pipelines" / "coco-panoptic" / "params.yaml"
N_SEEN, N_UNSEEN, QUERIES, DIM, SWEEP_STEPS, COCO_ROWS = 119, 14, 100, 256, 20_000, 45_617 * 100


def ground_truth(rng: np.random.Generator, size: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, size, size) rectangle masks and (n,) seen class indices: a stand-in for COCO segments."""
    masks = torch.zeros(n, size, size)
    for k in range(n):
        y, x = rng.integers(0, size // 2, 2)
        h, w = rng.integers(size // 8, size // 2, 2)
        masks[k, y:y + h, x:x + w] = 1
    return masks, torch.from_numpy(rng.choice(N_SEEN, n, replace=False))


def online_step(model, trainer, device, amp, images, gts) -> int:
    """Segmenter forward on the batch + matching + one generator step; returns the matched rows."""
    with torch.no_grad(), autocast(device, amp):
        out = model(pixel_values=images.to(device))
    feats = query_features(model, out).float().cpu()
    cls, masks = out.class_queries_logits.float().cpu(), out.masks_queries_logits.float().cpu()
    S = images.shape[-1]
    real, idx = [], []
    for b, (gt_masks, gt_cls) in enumerate(gts):
        rec = match_image(cls[b], masks[b], gt_masks, gt_cls, gt_cls, (S, S))
        q = np.flatnonzero(rec["label"] >= 0)
        real.append(feats[b, q])
        idx.append(torch.from_numpy(rec["label"][q].astype(np.int64)))
    trainer.step(torch.cat(real), torch.cat(idx))
    return sum(len(r) for r in real)


def write_store(path: Path, n_images: int, rng: np.random.Generator, matched: int) -> float:
    """A COCO-shaped feature store (float16, 65536-row chunks as pipelines/coco-panoptic):
    ``matched`` queries per image carry a seen label and IoU 0.9, the rest are no-object."""
    t = time.perf_counter()
    w = ShardWriter(path.with_name(".store.tmp"), "rank-000", DIM, "float16", chunk_rows=65536)
    for i in range(n_images):
        label = np.full(QUERIES, -1, np.int32)
        label[:matched] = rng.choice(N_SEEN, matched, replace=False)
        w.add_image(i, rng.normal(size=(QUERIES, DIM)).astype(np.float16),
                    {"label": label, "mask_iou": np.where(label >= 0, 0.9, 0).astype(np.float32),
                     "score": np.zeros(QUERIES, np.float32), "query_index": np.arange(QUERIES, dtype=np.int16)})
    w.close()
    finalize_store(path.with_name(".store.tmp"), path,
                   {"dim": DIM, "dtype": "float16", "classes": [{"id": c} for c in range(N_SEEN)]})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=256, help="segmenter input side (multiple of 32; paper: 1024)")
    ap.add_argument("--batch", type=int, default=12, help="images per generator step (official: 12)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per side (after one warm-up step)")
    ap.add_argument("--store-images", type=int, default=4000, help="images in the feature store (COCO ZSP: 45,617)")
    ap.add_argument("--segments", type=int, default=8, help="ground-truth segments per image (matched queries)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seg_cfg = load_section(PARAMS, "segmenter", SegmenterConfig)
    amp = seg_cfg.amp if device.type == "cuda" else "off"  # fp16 autocast is ~15x slower than fp32 on CPU
    seg_cfg = dataclasses.replace(seg_cfg, pretrained_backbone="", image_size=args.image_size, amp=amp)
    gen_cfg = load_section(PARAMS, "generator", GeneratorConfig).resolved()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    emb = torch.nn.functional.normalize(torch.randn(N_SEEN + N_UNSEEN, 512), dim=-1)  # CLIP ViT-B/32 width
    space = ClassSpace(list(range(N_SEEN)), list(range(N_SEEN, N_SEEN + N_UNSEEN)), emb)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; segmenter: {PARAMS.parent.name} R-50 ({seg_cfg.num_queries} queries, {DIM}-d, "
          f"amp {amp}) at {args.image_size} px; generator: {gen_cfg.num_primitives} primitives, {gen_cfg.layers} "
          "layers, "
          f"{N_SEEN + N_UNSEEN} classes; batch {args.batch} images")

    # (a) online
    model = build_model(seg_cfg, N_SEEN).to(device).eval()
    trainer = GeneratorTrainer(gen_cfg, space, DIM)
    gts = [ground_truth(rng, args.image_size, args.segments) for _ in range(args.batch)]
    images = torch.randn(args.batch, 3, args.image_size, args.image_size)
    online_step(model, trainer, device, amp, images, gts)  # warm-up
    times, rows = [], 0
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        rows = online_step(model, trainer, device, amp, images, gts)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    online = float(np.mean(times))
    print(f"online: {online:.3f} s/step ({rows} matched query rows a step)")
    del model

    # (b) cached: the training loop's own read path (whole-image batches of the store held in memory,
    # FeatureStore.image_batch, for batch: images; FeatureStore.class_batches for batch: classes)
    tmp = Path(tempfile.mkdtemp(prefix="sweep-cost-"))
    try:
        t_write = write_store(tmp / "store", args.store_images, rng, args.segments)
        store = FeatureStore(tmp / "store")
        t = time.perf_counter()
        if gen_cfg.batch == "images":
            held = store.held_features()  # the one read of the store into memory
        else:
            batches = store.class_batches(list(range(N_SEEN)), gen_cfg.per_class, rng, gen_cfg.min_iou)
            next(batches)  # the one read of the matched rows into memory
        t_load = time.perf_counter() - t
        trainer = GeneratorTrainer(gen_cfg, space, DIM)
        step_no = iter(range(10**9))

        def cached_step() -> None:
            if gen_cfg.batch == "images":
                rows = store.image_batch(next(step_no), args.batch, 0)
                rows = rows[store.labels[rows] >= 0]
                trainer.step(torch.from_numpy(held[rows].astype(np.float32)),
                             torch.from_numpy(store.labels[rows].astype(np.int64)))
                return
            chosen = rng.choice(N_SEEN, gen_cfg.classes_per_batch, replace=False)
            real_all, lab_all = next(batches)
            keep = np.isin(lab_all, chosen)
            trainer.step(torch.from_numpy(real_all[keep]), torch.from_numpy(lab_all[keep].astype(np.int64)))

        cached_step()  # warm-up
        t = time.perf_counter()
        for _ in range(args.steps * 5):
            cached_step()
        step_cached = (time.perf_counter() - t) / (args.steps * 5)
        # for comparison: reading each step's rows from Zarr directly (random rows touch most chunks)
        pool = np.flatnonzero(store.labels >= 0)
        t = time.perf_counter()
        for _ in range(args.steps):
            store.features(np.sort(rng.choice(pool, gen_cfg.per_class * N_SEEN)))
        direct = (time.perf_counter() - t) / args.steps
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_coco = t_load * COCO_ROWS / store.num_rows  # the one read scales with the store's rows
    cached = step_cached + load_coco / SWEEP_STEPS
    print(f"store: {store.num_rows:,} rows written in {t_write:.1f} s (once per segmenter, not per sweep point); "
          f"read into memory in {t_load:.2f} s, {load_coco:.1f} s projected for COCO's {COCO_ROWS:,} rows "
          f"(generator batch: {gen_cfg.batch})")
    print(f"reading a step's {gen_cfg.per_class * N_SEEN} rows from Zarr directly instead: {direct:.3f} s/step here, "
          f"~{direct * COCO_ROWS / store.num_rows:.1f} s/step at COCO's size (whole chunks are read)")
    print(f"cached: {step_cached:.3f} s/step + {load_coco / SWEEP_STEPS:.4f} s/step (the one read over {SWEEP_STEPS:,} "
          "steps)")
    print(f"projected {SWEEP_STEPS:,}-step sweep point: online {online * SWEEP_STEPS / 3600:.1f} h, "
          f"cached {cached * SWEEP_STEPS / 3600:.2f} h")
    print(f"online {online:.3f} s/step, cached {cached:.4f} s/step, ratio {online / cached:.0f}")


if __name__ == "__main__":
    main()
