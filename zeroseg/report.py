"""The ablation report (stage ``report``): the Table 1 rows side by side, as flat JSON metrics,
a markdown table, and pictures — t-SNE of real/synthetic features (the paper's Fig. 5),
per-class PQ bars, and qualitative panoptic overlays, baseline vs PADing (Fig. 6)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from zeroseg.atomic import Outputs, atomic_file, json_text, read_json  # noqa: E402
from zeroseg.errors import ConfigError, DataError  # noqa: E402

if TYPE_CHECKING:
    from zeroseg.evaluate.inference import InferenceConfig

#: the rows the pictures compare (they must be among the ablation rows)
PICTURED = ("projection", "pading")
TASKS = ("pq", "sq", "rq", "map50", "r100", "miou")
PARTS = ("seen", "unseen", "hm")
#: calibration-free measures of every row (stage ``evaluate``: the seen–unseen PQ curve)
CURVE = ("ausuc", "curve_pq_seen_max", "curve_pq_unseen_max", "curve_pq_hm_max")
#: feature-level measures of the generator rows (stage ``fidelity``)
FIDELITY = ("feat_acc_seen", "feat_acc_unseen", "feat_acc_hm", "mmd_unseen")
#: what ``metrics/zero_shot.json`` (the DVC metric compared across experiments) keeps: one
#: harmonic mean per task, the curve's area and the feature-level HM; every cell is in the full
#: JSON and the markdown tables.
HEADLINE = ("pq_hm", "map50_hm", "miou_hm", "ausuc", "feat_acc_hm")
#: the transfer checks (stage ``ceilings``) the headline keeps, as ``ceilings.<key>.mean/std``
CEILINGS_HEADLINE = ("loo_attr_median", "loo_names_median", "unseen_names_median", "ncm_real_unseen",
                     "ncm_names_unseen")
#: the segmenter's own head (stage ``eval_segmenter``) in the headline, as ``segmenter.<key>.mean/std``
SEGMENTER_HEADLINE = ("pq_seen", "map50_seen", "miou_seen")


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml section ``report``."""

    tsne_per_class: int = 30  # points per class in the t-SNE pictures
    tsne_iterations: int = 1000  # t-SNE optimisation steps (scikit-learn's default; its minimum is 250)
    overlays: int = 4  # validation images in the qualitative picture
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tsne_iterations < 250:
            raise ConfigError("report.tsne_iterations: 250 or more (scikit-learn's minimum), got "
                              f"{self.tsne_iterations}")


@dataclass(frozen=True)
class ReportInputs:
    """The files of one run that the report reads: the report stage's inputs (dvc.yaml names
    each). ``None`` leaves that part out; :func:`make_pictures` needs every field but
    ``fidelity_dir``, ``diagnostics_dir``, ``curves_dir`` and ``unseen_store``."""

    metrics_dir: str | os.PathLike  # stage evaluate: <row>-s<seed>.json, each row's flat metrics
    per_class_dir: str | os.PathLike | None = None  # stage evaluate: <row>-s<seed>.parquet, per-class PQ
    curves_dir: str | os.PathLike | None = None  # stage evaluate: <row>-s<seed>.parquet, seen–unseen curves
    fidelity_dir: str | os.PathLike | None = None  # stage fidelity: the generator rows' feature-level metrics
    diagnostics_dir: str | os.PathLike | None = None  # stage fidelity: their per-class tables (.parquet)
    heads_dir: str | os.PathLike | None = None  # stage retrain_classifier: <row>-s<seed>.pt
    synthetic_dir: str | os.PathLike | None = None  # stage synthesize: <row>-s<seed> stores
    seen_store: str | os.PathLike | None = None  # the seen training images' query features
    unseen_store: str | os.PathLike | None = None  # real unseen query features (the t-SNE's stars)
    val_store: str | os.PathLike | None = None  # validation query features with masks
    val_json: str | os.PathLike | None = None  # validation ground truth (panoptic JSON, PNGs beside it)
    val_images: str | os.PathLike | None = None  # validation images
    split_all_json: str | os.PathLike | None = None  # the split's *_all.json (which classes are unseen)
    ceilings_dir: str | os.PathLike | None = None  # stage ceilings: s<seed>.json, the transfer checks
    segmenter_dir: str | os.PathLike | None = None  # stage eval_segmenter: s<seed>.json, the segmenter's own head

    def for_seed(self, seed: int) -> ReportInputs:
        """The inputs with ``{seed}`` in a path replaced by ``seed`` (a pipeline that trains one
        segmenter per seed keeps one feature store per seed: ``data/features/s{seed}/val``)."""
        return replace(self, **{f.name: str(v).replace("{seed}", str(seed)) for f in fields(self)
                                if (v := getattr(self, f.name)) is not None and "{seed}" in str(v)})


@dataclass(frozen=True)
class ReportOutputs:
    """The report's tables (the pictures go to :func:`make_pictures`' folder)."""

    headline_json: str | os.PathLike  # metrics/zero_shot.json: the DVC metric (HEADLINE keys)
    full_json: str | os.PathLike  # every cell, mean / std and per seed
    markdown: str | os.PathLike  # the tables


@dataclass(frozen=True)
class Ablation:
    """The report's rows and seeds."""

    rows: list[str]  # every ablation row, in the report's order (zeroseg.stage.rows)
    seeds: list[int]  # the ablation seeds; the pictures show the first
    generators: list[str] = ()  # the generator rows among them: they have feature-level metrics


def row_file(metrics_dir: str | os.PathLike, stem: str, seed: int) -> Path:
    """The per-row, per-seed metrics file written by stage ``evaluate``."""
    return Path(metrics_dir) / f"{stem}-s{seed}.json"


def collect(run: ReportInputs, ablation: Ablation) -> dict[str, list[dict]]:
    """row -> one metrics dict per seed, for the ablation rows in their order. Projection and
    PADing are required (the pictures compare them); every (row, seed) file must exist. With
    ``run.fidelity_dir``, the generator rows also bring their feature-level metrics."""
    rows, seeds = ablation.rows, ablation.seeds
    if len(set(rows)) != len(rows):
        raise DataError(f"ablation rows: a row is listed twice in {rows}")
    for need in PICTURED:
        if need not in rows:
            raise DataError(f"ablation rows: the report needs row '{need}' (params baselines / generators)")
    out = {}
    for row in rows:
        files = [row_file(run.metrics_dir, row, s) for s in seeds]
        if run.fidelity_dir is not None and row in ablation.generators:
            files += [row_file(run.fidelity_dir, row, s) for s in seeds]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataError(f"metrics of ablation row '{row}' missing: {missing}")
        runs = [read_json(f, "row metrics") for f in files[:len(seeds)]]
        for one, f in zip(runs, files[len(seeds):]):
            one.update(read_json(f, "fidelity metrics"))
        out[row] = runs
    return out


def per_seed_files(folder: str | os.PathLike, seeds: list[int], what: str) -> list[dict]:
    """``<folder>/s<seed>.json`` of every seed (a stage run once per seed), read."""
    files = [Path(folder) / f"s{s}.json" for s in seeds]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DataError(f"{what} missing: {missing}")
    return [read_json(f, what) for f in files]


def side_summary(runs: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """key -> (mean, std) over seeds of every numeric key the per-seed dicts share."""
    keys = list(dict.fromkeys(k for r in runs for k, v in r.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)))
    return {k: mean_std([r.get(k) for r in runs]) for k in keys}


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1) over seeds; std is None for one seed, both are
    None when any seed has the value absent."""
    if not values or any(v is None for v in values):
        return None, None
    a = np.asarray(values, np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def summarise(rows: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """row -> ``task_part`` -> (mean, std) over seeds."""
    keys = [f"{t}_{p}" for t in TASKS for p in PARTS] + list(CURVE + FIDELITY)
    return {row: {k: mean_std([m.get(k) for m in runs]) for k in keys if any(k in m for m in runs)}
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


def _pct(cell: tuple[float | None, float | None], scale: float = 100.0, digits: int = 1) -> str:
    mean, std = cell
    if mean is None:
        return "–"
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def markdown(summary: dict, seeds: list[int], segmenter_seeded: bool = False) -> str:
    n = len(seeds)
    head = "| row | " + " | ".join(f"{t.upper()} S / U / HM" for t in TASKS) + " |"
    varied = ("every random stage (segmenter, feature dumps, generator, synthesis, classifier)" if segmenter_seeded
              else "the generator and classifier; segmenter and feature dumps fixed")
    lines = [f"Mean ± sample std over {n} seed(s) of {varied} ({seeds})." if n > 1
             else f"One seed ({seeds[0]}): no error bars; run several seeds for them.",
             "", head, "|" + "---|" * (len(TASKS) + 1)]

    for row, cells in summary.items():
        lines.append(f"| {row} | "
                     + " | ".join(" / ".join(_pct(cells[f"{t}_{p}"]) for p in PARTS) for t in TASKS) + " |")
    return "\n".join(lines) + "\n"


def calibration_markdown(summary: dict) -> str:
    """The calibration-free table: each row's seen–unseen PQ curve (area, ends, best HM on it)
    and, for generator rows, the feature-level GZSL accuracy and the MMD to the real unseen
    features (%, MMD² × 100)."""
    none = (None, None)
    lines = ["| row | AUSUC | PQ seen max / unseen max (curve ends) | PQ HM best on the curve | "
             "feature acc S / U / HM | MMD² unseen (×100) |", "|---|---|---|---|---|---|"]
    for row, c in summary.items():
        lines.append(f"| {row} | {_pct(c.get('ausuc', none))} | {_pct(c.get('curve_pq_seen_max', none))} / "
                     f"{_pct(c.get('curve_pq_unseen_max', none))} | {_pct(c.get('curve_pq_hm_max', none))} | "
                     + " / ".join(_pct(c.get(f"feat_acc_{p}", none)) for p in PARTS)
                     + f" | {_pct(c.get('mmd_unseen', none), digits=2)} |")
    return "\n".join(lines) + "\n"


def ceilings_markdown(cells: dict, oracle: dict | None) -> str:
    """The transfer checks (mean ± std over seeds) as a markdown table, with the oracle head's
    unseen / seen PQ ratio (``oracle``: its summary cells) when the oracle row ran."""
    def cell(key: str, scale: float = 1.0, digits: int = 2) -> str:
        return _pct(cells.get(key, (None, None)), scale, digits)

    lines = ["| check | ideal attributes | class-name embeddings |", "|---|---|---|",
             f"| leave-one-seen-class-out placement ratio, median (< 1: placed nearer its own mean) | "
             f"{cell('loo_attr_median')} | {cell('loo_names_median')} |",
             f"| share of seen classes placed < 1 | {cell('loo_attr_below_1')} | {cell('loo_names_below_1')} |",
             f"| unseen classes' placement ratio, median | {cell('unseen_attr_median')} | "
             f"{cell('unseen_names_median')} |",
             f"| nearest-class-mean GZSL with placed unseen means, S / U / HM (%) | "
             f"{cell('ncm_attr_seen', 1, 1)} / {cell('ncm_attr_unseen', 1, 1)} / {cell('ncm_attr_hm', 1, 1)} | "
             f"{cell('ncm_names_seen', 1, 1)} / {cell('ncm_names_unseen', 1, 1)} / {cell('ncm_names_hm', 1, 1)} |",
             "", f"Feature ceiling, nearest class mean with the REAL unseen means (S / U / HM, %): "
             f"{cell('ncm_real_seen', 1, 1)} / {cell('ncm_real_unseen', 1, 1)} / {cell('ncm_real_hm', 1, 1)}."]
    if oracle and oracle.get("pq_seen", (None,))[0]:
        ratio = oracle["pq_unseen"][0] / oracle["pq_seen"][0]
        lines.append(f"Oracle head: unseen PQ / seen PQ = {ratio:.2f} ({_pct(oracle['pq_unseen'])} / "
                     f"{_pct(oracle['pq_seen'])}).")
    return "\n".join(lines) + "\n"


def diagnostics_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """Per unseen class and generator row: feature-level accuracy, MMD², the placement ratio
    ‖mean synthetic − mean real‖ / ‖mean real − nearest seen class mean‖, and where the row's
    head sends the real queries of the class."""
    lines = ["| row | unseen class | feature acc | MMD² (×100) | placement ratio | real queries predicted as |",
             "|---|---|---|---|---|---|"]
    for row, df in tables.items():
        for r in df[df["split"] == "unseen"].itertuples():
            lines.append(f"| {row} | {r.name} | {100 * r.acc:.1f} | {100 * r.mmd:.2f} | {r.ratio:.2f} | "
                         f"{getattr(r, 'predicted', '–')} |")
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


def tsne_picture(real_seen: tuple[np.ndarray, np.ndarray], synth: dict[str, tuple[np.ndarray, np.ndarray]],
                 unseen_ids: set[int], path: Path, cfg: ReportConfig = ReportConfig(), outputs: Outputs | None = None,
                 real_unseen: tuple[np.ndarray, np.ndarray] | None = None, names: dict[int, str] | None = None) -> None:
    """One panel per generator: real seen (dots), real unseen (stars, the features of the images
    the split removed), synthetic seen (x), synthetic unseen (triangles); colour = class, named
    in the legend. Each group is (features (n, D), category ids (n,)); t-SNE seed and steps:
    ``cfg.seed``, ``cfg.tsne_iterations``."""
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    sx, sl = real_seen
    ux, ul = real_unseen if real_unseen is not None else (np.zeros((0, sx.shape[1]), np.float32), np.zeros(0, int))
    fig, axes = plt.subplots(1, len(synth), figsize=(4 * len(synth) + 2, 4), squeeze=False)
    classes = sorted(set(sl.tolist()) | set(ul.tolist()) | {int(c) for _, (_, l) in synth.items() for c in l})
    cmap = plt.get_cmap("tab20", max(len(classes), 1))
    colour = {c: cmap(i) for i, c in enumerate(classes)}
    for ax, (name, (fx, fl)) in zip(axes[0], synth.items()):
        x = np.concatenate([sx, ux, fx])
        emb = TSNE(n_components=2, init="pca", random_state=cfg.seed, perplexity=min(30, len(x) // 4),
                   max_iter=cfg.tsne_iterations).fit_transform(x)
        n, nu = len(sx), len(ux)
        for c in classes:
            ax.scatter(*emb[:n][sl == c].T, s=6, color=colour[c], marker="o", alpha=0.6)
            ax.scatter(*emb[n:n + nu][ul == c].T, s=22, color=colour[c], marker="*", alpha=0.8)
            ax.scatter(*emb[n + nu:][fl == c].T, s=14, color=colour[c], marker="^" if c in unseen_ids else "x",
                       alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    names = names or {}
    handles = [Line2D([], [], ls="", marker="s", color=colour[c],
                      label=f"{names.get(c, c)}{' (unseen)' if c in unseen_ids else ''}") for c in classes]
    handles += [Line2D([], [], ls="", marker=m, color="grey", label=l) for m, l in
                (("o", "real seen"), ("*", "real unseen"), ("x", "synthetic seen"), ("^", "synthetic unseen"))]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, frameon=False)
    fig.suptitle("t-SNE of query features: real and synthetic, seen and unseen (colour = class)", fontsize=9)
    _save(fig, path, outputs)


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


def write_report(run: ReportInputs, ablation: Ablation, out: ReportOutputs, outputs: Outputs | None = None) -> dict:
    """The headline metrics (``out.headline_json``: HM per task, curve area and feature-level HM,
    mean/std), every cell with the per-seed values (``out.full_json``) and the markdown tables.
    Returns the headline dict. ``run.fidelity_dir``: the generator rows' feature-level metrics;
    ``run.diagnostics_dir``: their per-class tables (the first seed's go into the markdown).
    ``outputs``: the stage's :class:`~zeroseg.atomic.Outputs` (committed with the pictures);
    the headline metric is written last."""
    seeds = ablation.seeds
    rows = collect(run, ablation)
    summary = summarise(rows)
    side = {name: side_summary([{k.removeprefix(f"{name}."): v for k, v in m.items()}
                                for m in per_seed_files(folder, seeds, f"{name} metrics")])
            for name, folder in (("segmenter", run.segmenter_dir),
                                 ("ceilings", run.ceilings_dir)) if folder is not None}
    headline = {"seeds": len(seeds), **flat_table(summary, HEADLINE),
                **flat_table({k: v for k, v in side.items() if k == "segmenter"}, SEGMENTER_HEADLINE),
                **flat_table({k: v for k, v in side.items() if k == "ceilings"}, CEILINGS_HEADLINE)}
    per_seed = {f"{row}.{k}.s{s}": m.get(k) for row, runs in rows.items() for s, m in zip(seeds, runs)
                for k in summary[row]}
    text = "# Zero-shot ablation (S / U / HM, %)\n\n" + markdown(summary, seeds, run.segmenter_dir is not None)
    if "segmenter" in side:
        seg = side["segmenter"]
        text += (f"\nThe segmenter's own head (seen classes only): PQ {_pct(seg.get('pq_seen', (None, None)))}, "
                 f"mAP@0.5 {_pct(seg.get('map50_seen', (None, None)))}, mIoU {_pct(seg.get('miou_seen', (None, None)))}"
                 " (seen, %).\n")
    if "ceilings" in side:
        text += ("\n## Transfer checks of the query features (stage ceilings, before any generator)\n\n"
                 + ceilings_markdown(side["ceilings"], summary.get("oracle")))
    if any(k in cells for cells in summary.values() for k in CURVE + FIDELITY):
        text += ("\n## Calibration-free comparison (%, mean ± std over the seeds)\n\n"
                 "AUSUC: area under each head's seen–unseen PQ curve over the seen offset γ (higher: a better "
                 "trade-off whatever the operating point). Feature acc: a linear classifier trained on real seen + "
                 "the row's synthetic unseen features, tested on held-out real seen and on real unseen features "
                 "(per-class accuracy).\n\n" + calibration_markdown(summary))
    if run.diagnostics_dir is not None:
        tables = {row: pd.read_parquet(row_file(run.diagnostics_dir, row, seeds[0]).with_suffix(".parquet"))
                  for row in ablation.rows if row in ablation.generators}
        if tables:
            text += f"\n## Unseen classes, seed {seeds[0]}\n\n" + diagnostics_markdown(tables)
    with _target(out.markdown, outputs) as tmp:
        Path(tmp).write_text(text)
    with _target(out.full_json, outputs) as tmp:
        Path(tmp).write_text(json_text({"seeds": seeds, **flat_table(summary), **flat_table(side), **per_seed}))
    with _target(out.headline_json, outputs) as tmp:
        Path(tmp).write_text(json_text(headline))
    return headline


def curves_picture(curves: dict[str, pd.DataFrame], marks: dict[str, tuple[float, float]], path: Path,
                   outputs: Outputs | None = None) -> None:
    """One seen–unseen PQ curve per row (unseen PQ on x, seen PQ on y), the table's operating
    point marked, AUSUC in the legend."""
    from zeroseg.evaluate.calibration import ausuc

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for row, c in curves.items():
        line, = ax.plot(100 * c["pq_unseen"], 100 * c["pq_seen"], marker=".", label=f"{row} (AUSUC "
                        f"{100 * ausuc(c['pq_seen'], c['pq_unseen']):.1f})")
        if row in marks:
            ax.scatter(100 * marks[row][1], 100 * marks[row][0], s=60, color=line.get_color(), edgecolor="black",
                       zorder=3)
    ax.set_xlabel("unseen PQ")
    ax.set_ylabel("seen PQ")
    ax.set_title("Seen–unseen PQ over the seen offset γ (dot: the table's γ)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, outputs)


def _sample_rows(labels: np.ndarray, iou: np.ndarray, classes: list[int], per_class: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Up to ``per_class`` random rows of each class, among the rows matched with IoU >= 0.5 (all
    rows of ``classes`` when none is: an undertrained model)."""
    of_classes = np.isin(labels, classes)
    good = iou >= 0.5 if (iou[of_classes] >= 0.5).any() else np.ones(len(labels), bool)
    pools = [np.flatnonzero((labels == c) & good) for c in classes]
    return np.concatenate([rng.choice(p, min(per_class, len(p)), replace=False) for p in pools if len(p)]
                          + [np.zeros(0, np.int64)])


#: the fields of :class:`ReportInputs` that :func:`make_pictures` reads whatever the rows
PICTURE_INPUTS = ("per_class_dir", "heads_dir", "synthetic_dir", "seen_store", "val_store", "val_json", "val_images",
                  "split_all_json")


def make_pictures(cfg: ReportConfig, run: ReportInputs, ablation: Ablation, plots_dir: str | os.PathLike,
                  outputs: Outputs | None = None, inference: InferenceConfig | None = None) -> list[Path]:
    """t-SNE per generator (with the real unseen features of ``run.unseen_store``), the
    seen–unseen curves of the ablation rows (``run.curves_dir``; the table's point from
    ``run.metrics_dir``), per-class PQ bars (projection vs PADing), overlays (input / GT /
    projection / PADing), all from the run of the first ablation seed, into ``plots_dir``.
    ``outputs``: the stage's :class:`~zeroseg.atomic.Outputs` (the pictures are committed with
    the metrics)."""
    from zeroseg.data.classes import unseen_from_split
    from zeroseg.data.panoptic import load_panoptic, read_id_png, read_image
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.evaluate.overlay import overlay
    from zeroseg.evaluate.score import predict_store
    from zeroseg.features.store import FeatureStore
    from zeroseg.head.model import load_head

    missing = [name for name in PICTURE_INPUTS if getattr(run, name) is None]
    if missing:
        raise ConfigError(f"report pictures: no {', '.join(missing)} given (ReportInputs)")
    seed = ablation.seeds[0]
    run = run.for_seed(seed)
    plots = Path(plots_dir)
    plots.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    unseen = unseen_from_split(run.split_all_json)
    categories = load_panoptic(run.split_all_json).categories
    written = []
    # Fig. 5: t-SNE
    st = FeatureStore(run.seen_store)
    lab, iou = st.labels, st.column("mask_iou")
    rows = _sample_rows(lab, iou, sorted(set(np.unique(lab[lab >= 0]).tolist())), cfg.tsne_per_class, rng)
    real_unseen = None
    if run.unseen_store is not None:
        su = FeatureStore(run.unseen_store)
        ulab, uiou = su.labels, su.column("mask_iou")
        urows = _sample_rows(ulab, uiou, sorted(unseen), cfg.tsne_per_class, rng)
        real_unseen = (su.features(urows), ulab[urows])
    synth = {}
    for row in ablation.rows:
        p = Path(run.synthetic_dir) / f"{row}-s{seed}"
        if p.exists():
            s = FeatureStore(p)
            keep = np.concatenate([np.flatnonzero(s.labels == c)[: cfg.tsne_per_class] for c in np.unique(s.labels)])
            synth[row] = (s.features(keep), s.labels[keep])
    tsne_picture((st.features(rows), lab[rows]), synth, unseen, plots / "tsne.png", cfg, outputs, real_unseen,
                 {c: cat.name for c, cat in categories.items()})
    written.append(plots / "tsne.png")
    if run.curves_dir is not None:
        curves, marks = {}, {}
        for row in ablation.rows:
            curves[row] = pd.read_parquet(row_file(run.curves_dir, row, seed).with_suffix(".parquet"))
            m = read_json(row_file(run.metrics_dir, row, seed), "row metrics")
            marks[row] = (m.get("pq_seen") or 0.0, m.get("pq_unseen") or 0.0)
        curves_picture(curves, marks, plots / "seen_unseen_curves.png", outputs)
        written.append(plots / "seen_unseen_curves.png")
    # per-class PQ bars
    for row in PICTURED:
        pq_bars(pd.read_parquet(Path(run.per_class_dir) / f"{row}-s{seed}.parquet"), row,
                plots / f"per_class_pq_{row}.png", outputs)
        written.append(plots / f"per_class_pq_{row}.png")
    # Fig. 6: overlays on validation images that contain an unseen class
    gt = load_panoptic(run.val_json)
    names = {c: cat.name for c, cat in gt.categories.items()}
    with_unseen = [i for i, a in gt.annotations.items() if any(s["category_id"] in unseen for s in a["segments_info"])]
    pick = set(sorted(with_unseen)[: cfg.overlays])
    preds = {}
    for row in PICTURED:
        head = load_head(Path(run.heads_dir) / f"{row}-s{seed}.pt")
        preds[row] = {i: (p.panoptic_ids, p.panoptic_segments) for i, p in
                      predict_store(FeatureStore(run.val_store), head, inference or InferenceConfig(), pick, unseen)}
    panels = []
    for i in sorted(pick):
        rgb = read_image(run.val_images, gt.images[i])
        ann = gt.annotations[i]
        gt_ids = read_id_png(Path(run.val_json).with_suffix(""), ann)
        row = [("input", rgb, []), ("ground truth", overlay(rgb, gt_ids, ann["segments_info"], names, unseen),
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
