"""The ``zeroseg`` command line: each command calls the same library function as its stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from zeroseg.errors import ZerosegError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Universal zero-shot segmentation after PADing (CVPR 2023).")
err = Console(stderr=True)
out = Console()


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(2)


@app.command()
def synth(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the benchmark into (replaced atomically)."),
    params: Optional[Path] = typer.Option(None, help="params.yaml whose 'synth' section sets the world; defaults otherwise."),
    seed: Optional[int] = typer.Option(None, help="Override the seed."),
) -> None:
    """Write the embedded synthetic benchmark in the COCO panoptic format."""
    import dataclasses

    from zeroseg.config import load_section
    from zeroseg.synth import SynthConfig, generate

    try:
        cfg = load_section(params, "synth", SynthConfig) if params else SynthConfig()
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=seed)
        res = generate(cfg, out_dir)
    except ZerosegError as exc:
        _fail(exc)
    out.print(f"wrote {cfg.train_images} train + {cfg.val_images} val images, {res.num_classes} classes to {out_dir}")


@app.command()
def split(
    annotation_json: Path = typer.Argument(..., help="COCO panoptic JSON (its PNGs in the folder of the same stem)."),
    unseen: str = typer.Option(..., help="Preset (coco-zsp, coco-zss, coco-zsi-48-17, coco-zsi-65-15, synth-default) or comma-separated class names."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (replaced atomically)."),
    png_dir: Optional[Path] = typer.Option(None, help="Segment PNG folder if not <json stem>/ beside the JSON."),
    verify_pngs: bool = typer.Option(True, help="Read every PNG to check ids and run the leak guard."),
) -> None:
    """Split into seen-only training images, images with unseen classes, and all images."""
    from zeroseg.split import split_dataset

    try:
        res = split_dataset(annotation_json, unseen, out_dir, png_dir, verify_pngs)
    except ZerosegError as exc:
        _fail(exc)
    out.print(f"{res.num_seen_images} of {res.num_images} images kept for training (no unseen class); "
              f"{res.num_unseen_images} contain one of {len(res.unseen_classes)} unseen classes -> {out_dir}")


@app.command("check-leak")
def check_leak(
    seen_json: Path = typer.Argument(..., help="The seen-split JSON to check."),
    reference_json: Path = typer.Argument(..., help="The original (unsplit) panoptic JSON."),
    unseen: str = typer.Option(..., help="Preset or comma-separated unseen class names."),
    png_dir: Optional[Path] = typer.Option(None, help="Segment PNG folder; default <reference stem>/."),
) -> None:
    """Leak guard: fail if any seen-split image has a pixel of an unseen class (reads the PNGs)."""
    from zeroseg.data.panoptic import default_png_dir
    from zeroseg.split import check_no_leak

    try:
        n = check_no_leak(seen_json, reference_json, png_dir or default_png_dir(reference_json), unseen)
    except ZerosegError as exc:
        _fail(exc)
    out.print(f"no leak: {n} images checked, none contains an unseen pixel")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
