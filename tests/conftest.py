from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COCO_MINI = SHARED / "coco-mini"
COCO_JSON = COCO_MINI / "annotations" / "panoptic_train2017.json"
COCO_PNG = COCO_MINI / "annotations" / "panoptic_train2017"
WORD_VECTORS = SHARED / "word-vectors"


@pytest.fixture
def coco_mini() -> Path:
    if not COCO_JSON.exists():
        pytest.skip(f"shared data absent: {COCO_JSON} (tests on real COCO need ../shared/data)")
    return COCO_MINI


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A small embedded benchmark (shared by tests that only read it)."""
    from zeroseg.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "synth"
    generate(SynthConfig(seed=3, image_size=64, train_images=40, val_images=12), out)
    return out


@pytest.fixture
def synth_copy(tiny_synth, tmp_path) -> Path:
    """A private, writable copy of the small benchmark (for tests that corrupt it)."""
    dst = tmp_path / "synth"
    shutil.copytree(tiny_synth, dst)
    return dst


def read_json(p: Path) -> dict:
    return json.loads(Path(p).read_text())


def write_json(p: Path, obj: dict) -> None:
    Path(p).write_text(json.dumps(obj))
