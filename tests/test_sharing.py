"""Team sharing through a DVC remote: a second clone pulls the cached segmenter and features
and runs the generator onward without re-running the segmenter or the dump."""

import subprocess
import sys

import yaml

from tests.conftest import copy_project, subprocess_env

TINY_PARAMS = {
    "benchmark": {"train_images": 30, "val_images": 6, "image_size": 64},
    "segmenter": {"backbone_widths": [16, 32, 64, 64], "backbone_stem": 16, "num_queries": 8, "hidden_dim": 32,
                  "encoder_layers": 1, "decoder_layers": 2, "heads": 2, "ffn_dim": 64, "image_size": 64,
                  "iterations": 3, "warmup": 1, "train_num_points": 256, "batch_size": 2},
    "generator": {"num_primitives": 8, "layers": 1, "heads": 2, "ffn": 32, "iterations": 3, "min_iou": 0.0},
}


def _run(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_second_clone_pulls_features_and_reruns_nothing_upstream(tmp_path):
    env = subprocess_env()
    dvc = [sys.executable, "-m", "dvc"]
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    copy_project(a)
    params = yaml.safe_load((a / "params.yaml").read_text())
    for section, over in TINY_PARAMS.items():
        params[section].update(over)
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], a, env)
    _run(["git", "add", "-A"], a, env)
    _run(["git", "commit", "-qm", "project"], a, env)
    _run(dvc + ["remote", "add", "-d", "team", str(remote)], a, env)
    _run(dvc + ["repro", "dump_features@0-set0", "embed"], a, env)
    _run(dvc + ["push"], a, env)
    _run(["git", "add", "-A"], a, env)
    _run(["git", "commit", "-qm", "features"], a, env)

    _run(["git", "clone", "-q", str(a), str(b)], tmp_path, env)
    _run(dvc + ["pull", "--with-deps", "dump_features@0-set0", "embed"], b, env)
    status = _run(dvc + ["status", "train_segmenter@0", "dump_features@0-set0", "embed"], b, env)
    assert "up to date" in status, status
    out = _run(dvc + ["repro", "train_generator@pading-0"], b, env)
    assert "Running stage 'train_generator@pading-0'" in out
    for upstream in ("benchmark", "split", "train_segmenter@0", "dump_features@0-set0", "embed"):
        assert f"Running stage '{upstream}'" not in out, out
    assert (b / "data/generators/pading-s0.pt").exists()
