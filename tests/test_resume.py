"""Exact resume: a segmenter training killed with SIGKILL between two checkpoints and run again
ends with the same weights, bit for bit, and the same dvclive curves as an uninterrupted run."""

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import ROOT
from zeroseg.resume import KILL_AT_STEP
from zeroseg.segmenter.model import SegmenterConfig
from zeroseg.segmenter.train import train_segmenter
from zeroseg.split import split_dataset

TINY = dict(backbone_widths=[16, 32, 64, 64], backbone_stem=16, num_queries=8, hidden_dim=32, encoder_layers=1,
            decoder_layers=2, heads=2, ffn_dim=64, image_size=64, batch_size=2, warmup=1, train_num_points=256,
            iterations=7, checkpoint_every=3, amp="fp16")  # fp16: the gradient scaler's state is resumed too


def _train(cwd, split, synth, out, kill_at=0):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if kill_at:
        env[KILL_AT_STEP] = str(kill_at)
    return subprocess.run([sys.executable, str(ROOT / "stages/train_segmenter.py"), str(split.seen_json),
                           str(synth / "train"), str(synth / "annotations" / "panoptic_train"), out, f"live-{out}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _curves(d):
    return {p.relative_to(d).as_posix(): p.read_text() for p in sorted(d.rglob("*")) if p.is_file()}


def test_killed_between_checkpoints_resumes_to_identical_weights_and_curves(tiny_benchmark, tmp_path, monkeypatch):
    split = split_dataset(tiny_benchmark / "annotations" / "panoptic_train.json", "benchmark-default",
                          tmp_path / "split")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"segmenter": TINY}))
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                        "--allow-empty", "-m", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)  # dvclive writes its curves inside a git repository
    monkeypatch.chdir(tmp_path)  # the uninterrupted run in this process, the interrupted one as the stage
    torch.set_num_threads(1)
    train_segmenter(SegmenterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}),
                    split.seen_json, tiny_benchmark / "train", "full",
                    tiny_benchmark / "annotations" / "panoptic_train",
                    "live-full", show_progress=False)

    killed = _train(tmp_path, split, tiny_benchmark, "resumed", kill_at=5)  # checkpoints after steps 3 and 6
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["step"] == 3
    assert not (tmp_path / "resumed" / "model.pt").exists()
    again = _train(tmp_path, split, tiny_benchmark, "resumed")
    assert again.returncode == 0, again.stderr[-3000:]

    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert (tmp_path / "full" / "model.pt").read_bytes() == (tmp_path / "resumed" / "model.pt").read_bytes()
    assert not (tmp_path / "resumed" / "last.pt").exists()
    curves_full, curves_resumed = _curves(tmp_path / "live-full"), _curves(tmp_path / "live-resumed")
    assert "metrics.json" in curves_full and curves_full == curves_resumed


def test_restarting_without_the_saved_rng_state_would_differ(tiny_benchmark, tmp_path):
    """The test above can fail: resuming with a fresh torch RNG (the state before this change)
    gives different weights, because Mask2Former's loss samples points at random."""
    split = split_dataset(tiny_benchmark / "annotations" / "panoptic_train.json", "benchmark-default",
                          tmp_path / "split")
    cfg = SegmenterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
                          | {"iterations": 4, "checkpoint_every": 2})
    kw = dict(png_dir=tiny_benchmark / "annotations" / "panoptic_train", show_progress=False)
    train_segmenter(cfg, split.seen_json, tiny_benchmark / "train", tmp_path / "a", **kw)
    import dataclasses

    train_segmenter(dataclasses.replace(cfg, iterations=2), split.seen_json, tiny_benchmark / "train", tmp_path / "b",
                    **kw)
    ck = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    from zeroseg.segmenter.model import build_model, save_checkpoint

    m = build_model(cfg, len(ck["classes"]))
    m.load_state_dict(ck["model"])
    save_checkpoint(tmp_path / "b" / "last.pt", m, cfg, ck["classes"], 2)  # no resume state: RNG not restored
    train_segmenter(cfg, split.seen_json, tiny_benchmark / "train", tmp_path / "b", **kw)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("recipe", ["zeroseg", "official"])
def test_generator_killed_between_checkpoints_resumes_to_identical_weights(tmp_path, recipe):
    """generator.checkpoint_every: the stage killed after step 5 (resume file at step 4) and run
    again gives the same bytes as an uninterrupted run; the resume file is gone at the end. The
    official recipe resumes its joint head, lr schedule and unseen draws too."""
    from tests.test_generator import ROWS, SMALL, _emb, _segmenter, _store

    store, emb, seg = _store(tmp_path), _emb(tmp_path, ROWS), _segmenter(tmp_path)
    cfg = dict(SMALL, sigmas=list(SMALL["sigmas"]), iterations=9, checkpoint_every=4, recipe=recipe, images_per_batch=3)
    if recipe == "official":
        del cfg["sigmas"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generator": cfg, "generators": {"pading": ""},
                                                          "classifier": {"images_per_batch": 3, "unseen_per_step": 1}}))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, str(ROOT / "stages/generator_config.py"), "pading", "pading.json"], cwd=tmp_path,
                   env=env, check=True, timeout=120)

    def run(out, kill_at=0):
        e = dict(env, **({KILL_AT_STEP: str(kill_at)} if kill_at else {}))
        return subprocess.run([sys.executable, str(ROOT / "stages/train_generator.py"), str(store), str(emb), str(seg),
                               out,
                               "--config", "pading.json", "--seed", "0"], cwd=tmp_path, env=e, capture_output=True,
                              text=True, timeout=300)

    assert run("full/gen.pt").returncode == 0  # same file names: torch.save records the name in the archive
    assert run("resumed/gen.pt", kill_at=5).returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "resumed/gen.pt.last", weights_only=True)["step"] == 4
    r = run("resumed/gen.pt")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "full/gen.pt").read_bytes() == (tmp_path / "resumed/gen.pt").read_bytes()
    assert not (tmp_path / "resumed/gen.pt.last").exists() and not (tmp_path / "full/gen.pt.last").exists()
