"""Time zeroseg's panoptic evaluation against panopticapi's on the same files, in one run.

Both run on ONE core (this process is pinned to one CPU; panopticapi's public
``pq_compute`` forks workers that inherit the pin). Ground truth: ../shared/data/coco-mini
(or the embedded benchmark if it is absent); predictions: a perturbed copy of it.

    python bench/pq_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from panopticapi.evaluation import pq_compute, pq_compute_single_core

    from zeroseg.benchmark import BenchmarkConfig, generate
    from zeroseg.metrics.panoptic import pq_files
    from zeroseg.testing.perturb import perturb_folder

    tmp = Path(tempfile.mkdtemp(prefix="pq_speed-"))
    gt_json = ROOT.parent / "shared/data/coco-mini/annotations/panoptic_train2017.json"
    if not gt_json.exists():
        generate(BenchmarkConfig(image_size=256, train_images=100, val_images=0), tmp / "synth")
        gt_json = tmp / "synth/annotations/panoptic_train.json"
    gt_dir = gt_json.with_suffix("")
    pred_json, pred_dir = perturb_folder(gt_json, gt_dir, tmp / "pred", seed=1)
    n = len(json.loads(gt_json.read_text())["annotations"])

    gt = json.loads(gt_json.read_text())
    cats = {c["id"]: c for c in gt["categories"]}
    preds = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    pairs = [(a, preds[a["image_id"]]) for a in gt["annotations"]]

    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        t_ours, ours = best_of(lambda: pq_files(gt_json, gt_dir, pred_json, pred_dir), args.repeat)
        t_core, stat = best_of(lambda: pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), cats), args.repeat)
        t_api, api = best_of(lambda: pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir)), args.repeat)

    ref, _ = stat.pq_average(cats, None)
    diff = max(abs(ours.flat()[k] - ref[k]) for k in ("pq", "sq", "rq"))
    diff = max(diff, max(abs(ours.flat()[k] - api["All"][k]) for k in ("pq", "sq", "rq")))
    print(f"images: {n} ({gt_json})")
    print(f"zeroseg pq_files:                    {t_ours:.3f} s")
    print(f"panopticapi pq_compute_single_core:  {t_core:.3f} s   ratio {t_core / t_ours:.2f}x")
    print(f"panopticapi pq_compute (public API): {t_api:.3f} s   ratio {t_api / t_ours:.2f}x")
    print(f"PQ {ours.flat()['pq']:.6f} vs panopticapi {ref['pq']:.6f}; max |diff| over PQ/SQ/RQ = {diff:.2e}")
    if diff > 1e-9:
        sys.exit("numbers differ")


if __name__ == "__main__":
    main()
