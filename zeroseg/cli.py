"""The ``zeroseg`` command line: each command calls the same library function as its stage."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from zeroseg.errors import ZerosegError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Universal zero-shot segmentation after PADing (CVPR 2023).")
err = Console(stderr=True)
out = Console()


def _fail(exc: Exception) -> None:
    from rich.markup import escape

    # escaped: a message quotes file contents ("[...]" would read as markup); not wrapped: paths stay whole
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _reported() -> Iterator[None]:
    """A :class:`ZerosegError` inside the block ends the command with its message and exit code 2."""
    try:
        yield
    except ZerosegError as exc:
        _fail(exc)


@app.command()
def benchmark(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the benchmark into (replaced atomically)."),
    params: Path | None = typer.Option(None, help="params.yaml whose 'benchmark' section sets the world; defaults "
                                                  "otherwise."),
    seed: int | None = typer.Option(None, help="Override the seed."),
) -> None:
    """Write the embedded synthetic benchmark in the COCO panoptic format."""
    import dataclasses

    from zeroseg.benchmark import BenchmarkConfig, generate
    from zeroseg.config import load_section

    with _reported():
        cfg = load_section(params, "benchmark", BenchmarkConfig) if params else BenchmarkConfig()
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=seed)
        res = generate(cfg, out_dir)
    out.print(f"wrote {cfg.train_images} train + {cfg.val_images} val images, {res.num_classes} classes to {out_dir}")


@app.command()
def split(
    annotation_json: Path = typer.Argument(..., help="COCO panoptic JSON (its PNGs in the folder of the same stem)."),
    unseen: str = typer.Option(..., help="Preset (coco-zsp, coco-zss, coco-zsi-48-17, coco-zsi-65-15, "
                                         "benchmark-default) or comma-separated class names."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (replaced atomically)."),
    png_dir: Path | None = typer.Option(None, help="Segment PNG folder if not <json stem>/ beside the JSON."),
    verify_pngs: bool = typer.Option(True, help="Read every PNG to check ids and run the leak guard."),
    policy: str = typer.Option("drop", help="drop: train only on images with no unseen pixel (ZSP, ZSI); "
                                            "ignore: keep every image, unseen segments become ignore regions (ZSS)."),
) -> None:
    """Split into the training images, images with unseen classes, and all images."""
    from zeroseg.split import split_dataset

    with _reported():
        res = split_dataset(annotation_json, unseen, out_dir, png_dir, verify_pngs, policy)
    how = "no unseen class" if policy == "drop" else f"{res.ignored_segments} unseen segments ignored"
    out.print(f"{res.num_seen_images} of {res.num_images} images kept for training ({how}); "
              f"{res.num_unseen_images} contain one of {len(res.unseen_classes)} unseen classes -> {out_dir}")


@app.command()
def prepare(
    out_dir: Path = typer.Option(..., "--out",
                                 help="Output folder: panoptic_{train,val}.json + PNGs, instances_val.json."),
    params: Path = typer.Option(Path("params.yaml"),
                                help="params.yaml whose 'prepare' section names the official COCO files."),
) -> None:
    """Official COCO files (panoptic, COCO-Stuff maps or 2014 instances) -> the pipelines' panoptic layout."""
    from zeroseg.data.prepare import PrepareConfig, prepare_coco

    with _reported():
        res = prepare_coco(_section(params, "prepare", PrepareConfig), out_dir)
    out.print(f"{res.train_images} train + {res.val_images} val images, {res.classes} classes -> {out_dir}")


@app.command("coco-fixture")
def coco_fixture(
    kind: str = typer.Argument(..., help="stuff (COCO-Stuff label maps) or instances (COCO instances JSON)."),
    panoptic_json: Path = typer.Argument(..., help="COCO panoptic JSON (PNGs beside it)."),
    out_path: Path = typer.Option(..., "--out", help="Label-map folder (stuff) or JSON file (instances)."),
) -> None:
    """Re-express a panoptic set in the official COCO-Stuff or instances format (smoke-test data)."""
    from zeroseg.testing.fixtures import panoptic_to_instances, panoptic_to_stuffmaps

    convert = {"stuff": panoptic_to_stuffmaps, "instances": panoptic_to_instances}.get(kind)
    if convert is None:
        _fail(ValueError(f"kind: stuff or instances, got {kind!r}"))
    with _reported():
        n = convert(panoptic_json, out_path)
    out.print(f"{n} {'label maps' if kind == 'stuff' else 'instances'} -> {out_path}")


@app.command("check-leak")
def check_leak(
    seen_json: Path = typer.Argument(..., help="The seen-split JSON to check."),
    reference_json: Path = typer.Argument(..., help="The original (unsplit) panoptic JSON."),
    unseen: str = typer.Option(..., help="Preset or comma-separated unseen class names."),
    png_dir: Path | None = typer.Option(None, help="Segment PNG folder; default <reference stem>/."),
) -> None:
    """Leak guard: fail if any seen-split image has a pixel of an unseen class (reads the PNGs)."""
    from zeroseg.data.panoptic import default_png_dir
    from zeroseg.split import check_no_leak

    with _reported():
        n = check_no_leak(seen_json, reference_json, png_dir or default_png_dir(reference_json), unseen)
    out.print(f"no leak: {n} images checked, none contains an unseen pixel")


@app.command("embed-classes")
def embed_classes_cmd(
    categories_json: Path = typer.Argument(...,
                                           help="Any COCO-format JSON with 'categories' (e.g. split's *_all.json)."),
    source: str = typer.Option("minilm",
                               help="minilm | clip | word2vec | glove | table | attributes; 'clip+word2vec' "
                                    "concatenates."),
    out_file: Path = typer.Option(..., "--out", help="Output Parquet file."),
    params: Path | None = typer.Option(None, help="params.yaml whose 'embed' section gives templates, model paths, "
                                                  "...; --source overrides its source."),
    clip_model: str | None = typer.Option(None, help="Local CLIP folder or hub name."),
    word_vectors: Path | None = typer.Option(None, help="gensim KeyedVectors file (word2vec / GloVe): .bin, text, or "
                                                           ".kv (read with a restricted unpickler)."),
    table: Path | None = typer.Option(None, help="Precomputed matrix (.npy without pickles, .pkl/.pickle through a "
                                                    "restricted unpickler: arrays and plain containers only, or comma "
                                                    "text)."),
    table_names: Path | None = typer.Option(None, help="The table's class names, one a line."),
) -> None:
    """Embed class names: one L2-normalised vector per class, written as Parquet."""
    import dataclasses

    from zeroseg.config import load_section
    from zeroseg.embed.sources import EmbedConfig
    from zeroseg.embed.vectors import embed_classes

    with _reported():
        cfg = load_section(params, "embed", EmbedConfig) if params else EmbedConfig()
        overrides = {"source": source, "clip_model": clip_model, "word_vectors": word_vectors and str(word_vectors),
                     "table": table and str(table), "table_names": table_names and str(table_names)}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        df = embed_classes(categories_json, cfg, out_file)
    out.print(f"{len(df)} classes embedded with {cfg.source} -> {out_file}")


def _section(params: Path, name: str, cls):
    from zeroseg.config import load_section

    return load_section(params, name, cls)


PARAMS = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read this step's section from.")


@app.command("train-segmenter")
def train_segmenter_cmd(
    seen_json: Path = typer.Argument(..., help="Seen split JSON (zeroseg split's *_seen.json)."),
    image_dir: Path = typer.Argument(..., help="Image folder."),
    png_dir: Path = typer.Argument(..., help="Segment PNG folder."),
    out_dir: Path = typer.Argument(..., help="Checkpoint folder (model.pt, last.pt while training)."),
    params: Path = PARAMS,
    live_dir: Path | None = typer.Option(None, help="dvclive folder for the curves."),
) -> None:
    """Train the seen-only Mask2Former (section 'segmenter'); also under torchrun."""
    from zeroseg.segmenter.model import SegmenterConfig
    from zeroseg.segmenter.train import train_segmenter

    with _reported():
        res = train_segmenter(_section(params, "segmenter", SegmenterConfig), seen_json, image_dir, out_dir, png_dir,
                              live_dir)
    out.print(f"{res.steps} steps (resumed from {res.resumed_from}), loss {res.final_loss:.3f} -> {res.checkpoint}")


@app.command("dump-features")
def dump_features_cmd(
    checkpoint: Path = typer.Argument(..., help="Segmenter checkpoint (model.pt)."),
    annotation_json: Path = typer.Argument(..., help="Panoptic JSON of the images to dump."),
    image_dir: Path = typer.Argument(..., help="Image folder."),
    png_dir: Path = typer.Argument(..., help="Segment PNG folder."),
    out_store: Path = typer.Argument(..., help="Feature store folder (replaced atomically)."),
    params: Path = PARAMS,
    keep_masks: bool = typer.Option(False, help="Also store the queries' mask logits (validation)."),
) -> None:
    """Per-query features, Hungarian-matched labels (and masks) to a Zarr store (section 'dump')."""
    from zeroseg.features.dump import DumpConfig, dump_features

    with _reported():
        res = dump_features(checkpoint, annotation_json, image_dir, out_store, _section(params, "dump", DumpConfig),
                            png_dir, keep_masks)
    out.print(f"{res.rows} query records of {res.images} images -> {res.store}")


@app.command("train-generator")
def train_generator_cmd(
    seen_store: Path = typer.Argument(..., help="Feature store of the seen training images."),
    embeddings: Path = typer.Argument(..., help="Class-name embeddings (embed-classes Parquet)."),
    out_file: Path = typer.Argument(..., help="Generator checkpoint to write."),
    segmenter: Path | None = typer.Option(None, help="Segmenter checkpoint: the joint schedule's head starts from its "
                                                     "seen head."),
    params: Path = PARAMS,
    row: str | None = typer.Option(None, help="An ablation row (a key of params 'generators'): its overrides of the "
                                                 "'generator' section, as the pipeline's stage trains it."),
    seed: int | None = typer.Option(None, help="Override generator.seed (the pipeline's ablation seed)."),
) -> None:
    """Train the feature generator (section 'generator', or an ablation row with --row; with schedule
    joint also the class head, section 'classifier')."""
    import dataclasses

    from zeroseg.config import from_dict
    from zeroseg.generator.config import GeneratorConfig
    from zeroseg.generator.rows import row_config
    from zeroseg.generator.train import train_generator
    from zeroseg.head.train import ClassifierConfig

    with _reported():
        if row is not None:
            rc = row_config(params, row)
            cfg = rc.generator
            head_cfg = None
            if rc.classifier is not None:
                head_cfg = from_dict(ClassifierConfig, rc.classifier, f"{params}:classifier")
        else:
            cfg = _section(params, "generator", GeneratorConfig)
            head_cfg = _section(params, "classifier", ClassifierConfig) if cfg.resolved().schedule == "joint" else None
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=seed)
            head_cfg = head_cfg and dataclasses.replace(head_cfg, seed=seed)
        losses = train_generator(cfg, seen_store, embeddings, out_file, segmenter=segmenter, head_cfg=head_cfg)
    out.print(f"losses {losses} -> {out_file}")


@app.command("retrain-classifier")
def retrain_classifier_cmd(
    segmenter: Path = typer.Argument(..., help="Segmenter checkpoint (its seen head initialises the new one)."),
    seen_store: Path = typer.Argument(..., help="Feature store of the seen training images."),
    embeddings: Path = typer.Argument(..., help="Class-name embeddings Parquet."),
    split_all_json: Path = typer.Argument(..., help="zeroseg split's *_all.json (seen/unseen, thing/stuff)."),
    out_file: Path = typer.Argument(..., help="Head checkpoint to write."),
    unseen_features: Path | None = typer.Option(None, help="Store of unseen features (synthesized, or real: oracle)."),
    baseline: str | None = typer.Option(None, help="A baseline row instead (zeroseg/head/baselines.py: projection, "
                                                      "oracle with the real --unseen-features)."),
    generator: Path | None = typer.Option(None, help="The row's generator: a jointly trained one carries the head."),
    params: Path = PARAMS,
) -> None:
    """A classifier over seen + unseen + no-object (section 'classifier')."""
    from zeroseg.generator.checkpoint import joint_head
    from zeroseg.head.retrain import HeadFiles, retrain_classifier
    from zeroseg.head.train import ClassifierConfig

    with _reported():
        files = HeadFiles(segmenter, seen_store, embeddings, split_all_json, out_file, unseen_features)
        retrain_classifier(_section(params, "classifier", ClassifierConfig), files, baseline,
                           joint_head(generator) if generator else None)
    out.print(f"head -> {out_file}")


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files to segment."),
    classes: str = typer.Option("", help="Comma-separated class names to add, e.g. 'purple circle, zebra'."),
    out_dir: Path = typer.Option(Path("predictions"), "--out", help="Output folder (replaced atomically)."),
    run_dir: Path = typer.Option(Path("."), help="Root of a pipeline run (data/segmenter, data/generators, ...)."),
    generator: str = typer.Option("pading", help="Which trained generator (ablation row) synthesises the new classes."),
    seed: int = typer.Option(0, help="Which ablation seed's generator (data/generators/<row>-s<seed>.pt)."),
    params: Path | None = typer.Option(None, help="params.yaml: 'inference' thresholds, 'classifier' head recipe."),
) -> None:
    """Panoptic, instance and semantic prediction for your own images; new class names are added without retraining the segmenter."""  # noqa: E501 (one line: typer shows it as is)
    from zeroseg.predict import ModelFiles, predict_images, with_classifier, with_inference

    with _reported():
        res = predict_images(images, [c for c in classes.split(",") if c.strip()], out_dir,
                             ModelFiles.from_root(run_dir, generator, seed), with_inference(params),
                             with_classifier(params))
    out.print(f"{len(images)} image(s) -> {res} (+ panoptic/*.png, instances.json, semantic/*.png, overlay/*.png)")


@app.command()
def curve(
    head: Path = typer.Argument(..., help="Class head checkpoint (retrain-classifier's output)."),
    val_store: Path = typer.Argument(..., help="Validation feature store dumped with --keep-masks."),
    gt_json: Path = typer.Argument(..., help="Ground-truth panoptic JSON of the stored images."),
    gt_dir: Path = typer.Argument(..., help="Ground-truth segment PNG folder."),
    split_all_json: Path = typer.Argument(..., help="zeroseg split's *_all.json (which classes are unseen)."),
    params: Path = PARAMS,
    out_file: Path | None = typer.Option(None, "--out",
                                         help="Write the curve (offset, pq_seen, pq_unseen, pq_hm) as Parquet."),
) -> None:
    """A head's seen–unseen PQ curve over the seen offset γ and its area (AUSUC; section 'inference')."""
    from zeroseg.data.classes import unseen_from_split
    from zeroseg.evaluate.curve import curve_metrics, seen_unseen_curve
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.features.store import FeatureStore
    from zeroseg.head.model import load_head

    with _reported():
        cfg = _section(params, "inference", InferenceConfig)
        unseen = unseen_from_split(split_all_json)
        c = seen_unseen_curve(FeatureStore(val_store), load_head(head), gt_json, gt_dir, unseen, cfg)
        if out_file:
            from zeroseg.atomic import atomic_file

            with atomic_file(out_file) as tmp:
                c.to_parquet(tmp, index=False)
    out.print(c.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _write_metrics(curve_metrics(c), None, None)


@app.command()
def fidelity(
    seen_store: Path = typer.Argument(..., help="Feature store of the seen training images."),
    unseen_store: Path = typer.Argument(...,
                                        help="Store with REAL unseen features (the removed images, or validation)."),
    synthetic_store: Path = typer.Argument(..., help="The generator's synthetic store (stage synthesize)."),
    split_all_json: Path = typer.Argument(..., help="zeroseg split's *_all.json (class names)."),
    head: Path | None = typer.Option(None, help="A class head: where it sends each unseen class's real queries."),
    params: Path = PARAMS,
    json_out: Path | None = typer.Option(None, "--json", help="Write flat metrics + per-class table as JSON."),
) -> None:
    """Feature-level GZSL score of synthetic features: a linear classifier on real seen + synthetic
    unseen features, tested on held-out real seen and real unseen ones; MMD per unseen class."""
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.evaluate.fidelity import FidelityConfig, generator_fidelity
    from zeroseg.head.model import load_head

    with _reported():
        names = {c: cat.name for c, cat in load_panoptic(split_all_json).categories.items()}
        flat, table = generator_fidelity(_section(params, "fidelity", FidelityConfig), seen_store, unseen_store,
                                         synthetic_store, load_head(head) if head else None, names)
    out.print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    _write_metrics(flat, table.astype(object).where(table.notna(), None).to_dict("records"), json_out)  # NaN -> null


def _write_metrics(flat: dict, table: list | None, json_out: Path | None) -> None:
    from rich.table import Table

    t = Table("metric", "value")
    for k, v in flat.items():
        t.add_row(k, "absent" if v is None else f"{100 * v:.2f}")
    out.print(t)
    if json_out:
        from zeroseg.atomic import write_json

        write_json(json_out, {**flat, **({"per_class": table} if table is not None else {})})


@app.command()
def pq(
    gt_json: Path = typer.Argument(..., help="Ground-truth panoptic JSON."),
    gt_dir: Path = typer.Argument(..., help="Ground-truth segment PNG folder."),
    pred_json: Path = typer.Argument(..., help="Predicted panoptic JSON (panopticapi format)."),
    pred_dir: Path = typer.Argument(..., help="Predicted segment PNG folder."),
    unseen: str | None = typer.Option(None, help="Preset or comma-separated unseen classes; default: the GT "
                                                 "categories' 'split' field, if any."),
    json_out: Path | None = typer.Option(None, "--json", help="Write flat metrics + per-class table as JSON."),
) -> None:
    """Panoptic quality (PQ, SQ, RQ): All / Things / Stuff and Seen / Unseen / HM."""
    from zeroseg.metrics.panoptic import pq_files

    with _reported():
        res = pq_files(gt_json, gt_dir, pred_json, pred_dir, unseen)
    _write_metrics(res.flat(), res.table(), json_out)


@app.command()
def evaluate(
    gt_json: Path = typer.Argument(..., help="Ground-truth panoptic JSON."),
    gt_dir: Path = typer.Argument(..., help="Ground-truth segment PNG folder."),
    pred_json: Path = typer.Argument(..., help="Predicted panoptic JSON (segments may carry 'score')."),
    pred_dir: Path = typer.Argument(..., help="Predicted segment PNG folder."),
    unseen: str | None = typer.Option(None, help="Preset or comma-separated unseen classes; default: the GT "
                                                 "categories' 'split' field."),
    json_out: Path | None = typer.Option(None, "--json", help="Write flat metrics + PQ per-class table as JSON."),
    instances_gt: Path | None = typer.Option(None, help="COCO instances JSON for mAP/R@100 (default: the GT's thing "
                                                        "segments)."),
    semantic_dir: Path | None = typer.Option(None, help="Semantic prediction PNGs (pixel = category id), named as the "
                                                        "panoptic PNGs: mIoU."),
    instances: Path | None = typer.Option(None, help="Instance predictions, a COCO results JSON (overlapping RLE masks "
                                                     "+ scores): mAP@0.5, R@100."),
) -> None:
    """Score ONE model's predictions: PQ/SQ/RQ of the panoptic folder, and mIoU / mask mAP@0.5 +
    R@100 of its semantic and instance predictions (as `zeroseg predict` writes them)."""
    from zeroseg.metrics.universal import evaluate_files

    with _reported():
        flat, table = evaluate_files(gt_json, gt_dir, pred_json, pred_dir, unseen, instances_gt, semantic_dir,
                                     instances)
    _write_metrics(flat, table, json_out)


@app.command()
def ap(
    gt_json: Path = typer.Argument(..., help="COCO instances ground-truth JSON."),
    results_json: Path = typer.Argument(..., help="COCO results JSON (RLE masks, scores)."),
    unseen: str | None = typer.Option(None, help="Preset or comma-separated unseen classes."),
    json_out: Path | None = typer.Option(None, "--json", help="Write flat metrics as JSON."),
) -> None:
    """Instance segmentation: mask mAP@0.5 and Recall@100 (pycocotools), seen / unseen / HM."""
    from zeroseg.atomic import read_json
    from zeroseg.data.classes import unseen_ids_of
    from zeroseg.data.panoptic import Category
    from zeroseg.metrics.instance import instance_files

    with _reported():
        raw = read_json(gt_json, "COCO instances file")
        cats = {c["id"]: Category(c["id"], c["name"], True, c) for c in raw.get("categories", [])}
        flat = instance_files(gt_json, results_json, unseen_ids_of(cats, unseen, gt_json))
    _write_metrics(flat, None, json_out)


@app.command()
def exp(
    pipeline: Path = typer.Argument(Path("."), help="The pipeline's folder: . (the root) or pipelines/<benchmark>."),
    width: int = typer.Option(120, help="Widest line (characters)."),
) -> None:
    """The experiments view: per commit and `dvc exp run` experiment, the params it changed and each
    ablation row's PQ HM and AUSUC (metrics/zero_shot.json), from `dvc exp show --json`."""
    from zeroseg.experiments import exp_show, experiments, locate, table

    with _reported():
        root, folder = locate(pipeline)
        text = table(experiments(exp_show(root), folder), width)
    typer.echo(text)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
