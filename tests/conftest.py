from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COCO_MINI = SHARED / "coco-mini"
COCO_JSON = COCO_MINI / "annotations" / "panoptic_train2017.json"
COCO_PNG = COCO_MINI / "annotations" / "panoptic_train2017"
WORD_VECTORS = SHARED / "word-vectors"


def subprocess_env() -> dict[str, str]:
    """Environment for dvc/git subprocesses: this venv first on PATH, one thread, a git identity."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
                GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")


def copy_project(dst: Path) -> None:
    """The project's source files into ``dst`` as a clean clone would have them: tracked and new
    untracked files, links kept as links, without the root run's results or a local smoke run's."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if f.startswith(("metrics/", "plots/",
                         "dvclive/")) or f == "dvc.lock" or not (src.is_file() or src.is_symlink()):
            continue
        parts = f.split("/")
        if (f.startswith("pipelines/") and ("smoke" in parts or "fixtures" in parts)
                and parts[-1] not in ("dvc.yaml", "params.yaml")):
            continue  # what a local smoke run left behind
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst / f)
        else:
            shutil.copy(src, dst / f)


@pytest.fixture
def coco_mini() -> Path:
    if not COCO_JSON.exists():
        pytest.skip(f"shared data absent: {COCO_JSON} (tests on real COCO need ../shared/data)")
    return COCO_MINI


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    """A small embedded benchmark (shared by tests that only read it)."""
    from zeroseg.benchmark import BenchmarkConfig, generate

    out = tmp_path_factory.mktemp("synth") / "synth"
    generate(BenchmarkConfig(seed=3, image_size=64, train_images=40, val_images=12), out)
    return out


@pytest.fixture
def benchmark_copy(tiny_benchmark, tmp_path) -> Path:
    """A private, writable copy of the small benchmark (for tests that corrupt it)."""
    dst = tmp_path / "synth"
    shutil.copytree(tiny_benchmark, dst)
    return dst


def read_json(p: Path) -> dict:
    return json.loads(Path(p).read_text())


def write_json(p: Path, obj: dict) -> None:
    Path(p).write_text(json.dumps(obj))
