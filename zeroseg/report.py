"""The ablation report (stage ``report``): the Table 1 rows side by side, as flat JSON metrics,
a markdown table, and pictures — t-SNE of real/synthetic features (the paper's Fig. 5),
per-class PQ bars, and qualitative panoptic overlays, baseline vs PADing (Fig. 6)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from zeroseg.atomic import Outputs, atomic_file, json_text  # noqa: E402
from zeroseg.errors import DataError  # noqa: E402

#: (row name in the table, file stem of its metrics) in Table 1's order.
ROWS = (("projection", "projection"), ("gmmn", "gmmn"), ("primitive", "primitive"),
        ("primitive+align", "primitive_align"), ("pading", "pading"), ("oracle", "oracle"))
TASKS = ("pq", "sq", "rq", "map50", "r100", "miou")
PARTS = ("seen", "unseen", "hm")
#: what ``metrics/zero_shot.json`` (the DVC metric compared across experiments) keeps: one
#: harmonic mean per task; every cell is in the full JSON and the markdown table.
HEADLINE = ("pq_hm", "map50_hm", "miou_hm")


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml section ``report``."""

    tsne_per_class: int = 40  # points per class in the t-SNE pictures
    overlays: int = 4  # validation images in the qualitative picture
    seed: int = 0


def row_file(metrics_dir: str | os.PathLike, stem: str, seed: int) -> Path:
    """The per-row, per-seed metrics file written by stage ``evaluate``."""
    return Path(metrics_dir) / f"{stem}-s{seed}.json"


def collect(metrics_dir: str | os.PathLike, heads: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """row -> one metrics dict per seed, for the rows in ``heads`` in Table 1's order. Projection
    and PADing are required (the pictures compare them); every (row, seed) file must exist."""
    known = {stem for _, stem in ROWS}
    unknown = sorted(set(heads) - known)
    if unknown:
        raise DataError(f"heads: unknown ablation row(s) {unknown}; known: {sorted(known)}")
    for need in ("projection", "pading"):
        if need not in heads:
            raise DataError(f"heads: the report needs row '{need}'")
    out = {}
    for row, stem in ROWS:
        if stem in heads:
            files = [row_file(metrics_dir, stem, s) for s in seeds]
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise DataError(f"metrics of ablation row '{row}' missing: {missing}")
            out[row] = [json.loads(f.read_text()) for f in files]
    return out


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1) over seeds; std is None for one seed, both are
    None when any seed has the value absent."""
    if not values or any(v is None for v in values):
        return None, None
    a = np.asarray(values, np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def summarise(rows: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """row -> ``task_part`` -> (mean, std) over seeds."""
    return {row: {f"{t}_{p}": mean_std([m.get(f"{t}_{p}") for m in runs]) for t in TASKS for p in PARTS}
            for row, runs in rows.items()}


def flat_table(summary: dict, keys: tuple[str, ...] | None = None) -> dict[str, float | None]:
    """``row.metric.mean`` / ``row.metric.std`` keys, e.g. ``pading.pq_hm.mean`` (readable in
    ``dvc metrics show`` / ``dvc exp show``); ``keys`` limits the metrics (default: all cells)."""
    out: dict[str, float | None] = {}
    for row, cells in summary.items():
        for k, (mean, std) in cells.items():
            if keys is None or k in keys:
                out[f"{row}.{k}.mean"], out[f"{row}.{k}.std"] = mean, std
    return out


def markdown(summary: dict, seeds: list[int]) -> str:
    n = len(seeds)
    head = "| row | " + " | ".join(f"{t.upper()} S / U / HM" for t in TASKS) + " |"
    lines = [f"Mean ± sample std over {n} seed(s) of the generator and classifier ({seeds}); segmenter and "
             "feature dumps fixed." if n > 1 else f"One seed ({seeds[0]}): no error bars; run several seeds for them.",
             "", head, "|" + "---|" * (len(TASKS) + 1)]

    def f(cell):
        mean, std = cell
        if mean is None:
            return "–"
        return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")

    for row, cells in summary.items():
        lines.append(f"| {row} | " + " | ".join(" / ".join(f(cells[f"{t}_{p}"]) for p in PARTS) for t in TASKS) + " |")
    return "\n".join(lines) + "\n"


@contextmanager
def _target(path: str | os.PathLike, outputs: Outputs | None) -> Iterator[Path]:
    """Where to write output ``path``: a temporary of ``outputs`` (committed with the stage's
    other outputs), or, without one, a temporary renamed into place at once."""
    with (atomic_file(path) if outputs is None else outputs.file(path)) as tmp:
        yield tmp


def _save(fig, path: Path, outputs: Outputs | None = None) -> None:
    try:
        with _target(path, outputs) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)


def pq_bars(per_class: pd.DataFrame, title: str, path: Path, outputs: Outputs | None = None) -> None:
    df = per_class.dropna(subset=["pq"]).sort_values(["split", "pq"])
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(df)), 3.5))
    colours = ["tab:orange" if s == "unseen" else "tab:blue" for s in df["split"]]
    ax.bar(range(len(df)), 100 * df["pq"], color=colours)
    ax.set_xticks(range(len(df)), df["name"], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("PQ")
    ax.set_title(f"{title}: per-class PQ (blue seen, orange unseen)")
    _save(fig, path, outputs)


def tsne_picture(real_seen: np.ndarray, real_labels: np.ndarray, synth: dict[str, tuple[np.ndarray, np.ndarray]],
                 unseen_ids: set[int], path: Path, seed: int = 0, outputs: Outputs | None = None) -> None:
    """One panel per generator: real seen (dots), synthetic seen (x), synthetic unseen (triangles)."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(synth), figsize=(4 * len(synth), 4), squeeze=False)
    classes = sorted(set(real_labels.tolist()) | {int(c) for _, (_, l) in synth.items() for c in l})
    cmap = plt.get_cmap("tab20", max(len(classes), 1))
    colour = {c: cmap(i) for i, c in enumerate(classes)}
    for ax, (name, (fx, fl)) in zip(axes[0], synth.items()):
        x = np.concatenate([real_seen, fx])
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(x) // 4)).fit_transform(x)
        n = len(real_seen)
        for c in classes:
            m = real_labels == c
            ax.scatter(*emb[:n][m].T, s=6, color=colour[c], marker="o", alpha=0.6)
            m2 = fl == c
            ax.scatter(*emb[n:][m2].T, s=14, color=colour[c], marker="^" if c in unseen_ids else "x", alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("t-SNE of class embeddings: o real seen, x synthetic seen, ^ synthetic unseen (colour = class)", fontsize=9)
    _save(fig, path, outputs)


def overlay(rgb: np.ndarray, ids: np.ndarray, segments: list[dict], names: dict[int, str], unseen: set[int]) -> np.ndarray:
    """Blend a random colour per segment over the image; unseen-class segments get a red border."""
    out = rgb.astype(np.float32).copy()
    rng = np.random.default_rng(0)
    for s in segments:
        m = ids == s["id"]
        out[m] = 0.45 * out[m] + 0.55 * rng.integers(40, 255, 3)
        if s["category_id"] in unseen:
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out[edge] = (255, 0, 0)
    return out.clip(0, 255).astype(np.uint8)


def overlays_picture(panels: list[list[tuple[str, np.ndarray, list[str]]]], path: Path,
                     outputs: Outputs | None = None) -> None:
    """panels[i] = [(title, image, labels), ...] for one validation image per row."""
    rows, cols = len(panels), len(panels[0])
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.8 * rows), squeeze=False)
    fig.subplots_adjust(hspace=0.6)
    for r, row in enumerate(panels):
        for c, (title, img, labels) in enumerate(row):
            axes[r][c].imshow(img)
            axes[r][c].set_title(title, fontsize=8)
            axes[r][c].set_xlabel("\n".join(labels[:5]), fontsize=6)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
    _save(fig, path, outputs)


def write_report(metrics_dir: str | os.PathLike, heads: list[str], seeds: list[int], out_json: str | os.PathLike,
                 out_full_json: str | os.PathLike, out_md: str | os.PathLike, outputs: Outputs | None = None) -> dict:
    """The headline metrics (``out_json``: HM per task, mean/std), every cell with the per-seed
    values (``out_full_json``) and the markdown table. Returns the headline dict. ``outputs``:
    the stage's :class:`~zeroseg.atomic.Outputs` (committed with the pictures); the headline
    metric is written last."""
    rows = collect(metrics_dir, heads, seeds)
    summary = summarise(rows)
    headline = {"seeds": len(seeds), **flat_table(summary, HEADLINE)}
    per_seed = {f"{row}.{k}.s{s}": m.get(k) for row, runs in rows.items() for s, m in zip(seeds, runs)
                for k in summary[row]}
    with _target(out_md, outputs) as tmp:
        Path(tmp).write_text("# Zero-shot ablation (S / U / HM, %)\n\n" + markdown(summary, seeds))
    with _target(out_full_json, outputs) as tmp:
        Path(tmp).write_text(json_text({"seeds": seeds, **flat_table(summary), **per_seed}))
    with _target(out_json, outputs) as tmp:
        Path(tmp).write_text(json_text(headline))
    return headline


def make_pictures(cfg: ReportConfig, per_class_dir: str | os.PathLike, heads_dir: str | os.PathLike,
                  synthetic_dir: str | os.PathLike, seen_store: str | os.PathLike, val_store: str | os.PathLike,
                  val_json: str | os.PathLike, val_images: str | os.PathLike, split_all_json: str | os.PathLike,
                  plots_dir: str | os.PathLike, seed: int, outputs: Outputs | None = None) -> list[Path]:
    """t-SNE per generator, per-class PQ bars (projection vs PADing), overlays (input / GT /
    projection / PADing), all from the run of ablation seed ``seed``. ``outputs``: the stage's
    :class:`~zeroseg.atomic.Outputs` (the pictures are committed with the metrics)."""
    from zeroseg.data.panoptic import load_panoptic, read_id_png, read_image
    from zeroseg.evaluate.heads import predict_store, unseen_from_split
    from zeroseg.features.store import FeatureStore
    from zeroseg.generator.classifier import load_head

    plots = Path(plots_dir)
    plots.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    unseen = unseen_from_split(split_all_json)
    written = []
    # Fig. 5: t-SNE
    st = FeatureStore(seen_store)
    lab, iou = st.labels, st.column("mask_iou")
    good = iou >= 0.5 if (iou[lab >= 0] >= 0.5).any() else np.ones(len(lab), bool)  # an undertrained model: all matched
    pools = [np.flatnonzero((lab == c) & good) for c in np.unique(lab[lab >= 0])]
    rows = np.concatenate([rng.choice(p, min(cfg.tsne_per_class, len(p)), replace=False) for p in pools if len(p)]
                          + [np.zeros(0, np.int64)])
    synth = {}
    for row, stem in ROWS:
        p = Path(synthetic_dir) / f"{stem}-s{seed}"
        if p.exists():
            s = FeatureStore(p)
            keep = np.concatenate([np.flatnonzero(s.labels == c)[: cfg.tsne_per_class] for c in np.unique(s.labels)])
            synth[row] = (s.features(keep), s.labels[keep])
    tsne_picture(st.features(rows), lab[rows], synth, unseen, plots / "tsne.png", cfg.seed, outputs)
    written.append(plots / "tsne.png")
    # per-class PQ bars
    for row in ("projection", "pading"):
        stem = dict(ROWS)[row]
        pq_bars(pd.read_parquet(Path(per_class_dir) / f"{stem}-s{seed}.parquet"), row, plots / f"per_class_pq_{stem}.png",
                outputs)
        written.append(plots / f"per_class_pq_{stem}.png")
    # Fig. 6: overlays on validation images that contain an unseen class
    gt = load_panoptic(val_json)
    names = {c: cat.name for c, cat in gt.categories.items()}
    with_unseen = [i for i, a in gt.annotations.items() if any(s["category_id"] in unseen for s in a["segments_info"])]
    pick = set(sorted(with_unseen)[: cfg.overlays])
    preds = {}
    for row in ("projection", "pading"):
        head = load_head(Path(heads_dir) / f"{dict(ROWS)[row]}-s{seed}.pt")
        preds[row] = {i: (p.panoptic_ids, p.panoptic_segments) for i, p in predict_store(FeatureStore(val_store), head, only=pick)}
    panels = []
    for i in sorted(pick):
        rgb = read_image(val_images, gt.images[i])
        ann = gt.annotations[i]
        row = [("input", rgb, []), ("ground truth", overlay(rgb, read_id_png(Path(val_json).with_suffix(""), ann), ann["segments_info"], names, unseen),
                [names[s["category_id"]] for s in ann["segments_info"]])]
        for name, pr in preds.items():
            ids, segs = pr[i]
            row.append((name, overlay(rgb, ids, segs, names, unseen), [names[s["category_id"]] for s in segs]))
        panels.append(row)
    if panels:
        overlays_picture(panels, plots / "overlays.png", outputs)
        written.append(plots / "overlays.png")
    elif outputs is not None:
        outputs.absent(plots / "overlays.png")  # no stale picture beside the new ones
    return written
