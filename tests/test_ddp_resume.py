"""DDP and resume of the training loops, checked on weights:

- 2 gloo processes train the segmenter to the weights of 1 process on the same global batch
  (tests/ddp_train.py takes out what legitimately differs: per-process BatchNorm statistics and
  Mask2Former's random points), and the sampler's shards make up the 1-process batches;
- a resume file of another run (other params, other classes, a config this version cannot
  read) is not resumed from: training starts afresh, says so on stderr, and ends with the
  weights of a fresh run; a resume file that is not readable (truncated, garbage) is an error
  naming it. Segmenter (``last.pt``) and generator (``<out>.last``).

Exact resume of an interrupted run (SIGKILL between checkpoints -> the same weights) is
tests/test_resume.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from zeroseg.errors import DataError
from zeroseg.segmenter.model import SegmenterConfig, build_model, save_checkpoint
from zeroseg.segmenter.train import ShardedInfiniteSampler, train_segmenter
from zeroseg.split import split_dataset

TINY = dict(backbone_widths=(16, 32, 64, 64), backbone_stem=16, num_queries=8, hidden_dim=32, encoder_layers=1,
            decoder_layers=2, heads=2, ffn_dim=64, image_size=64, batch_size=2, iterations=2, warmup=1,
            checkpoint_every=100, train_num_points=256)


@pytest.fixture(scope="module")
def seg_data(tiny_benchmark, tmp_path_factory):
    """(seen json, image dir, png dir) of the small benchmark's default split."""
    split = split_dataset(tiny_benchmark / "annotations" / "panoptic_train.json", "benchmark-default",
                          tmp_path_factory.mktemp("ddp") / "split")
    return split.seen_json, tiny_benchmark / "train", tiny_benchmark / "annotations" / "panoptic_train"


def _weights(path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in sd.items() if v.is_floating_point()}


# ---- DDP ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, batch", [(10, 4), (7, 2)])
def test_sampler_shards_make_up_the_one_process_batches(n, batch):
    """Step k of W processes (batch/W each) takes exactly the samples of step k of one process,
    across epochs (virtual index = sample + n · epoch) and from any resume offset."""
    def steps(world, start_step, count):
        per = batch // world
        its = [iter(ShardedInfiniteSampler(n, r, world, seed=5, start=start_step * per)) for r in range(world)]
        return [sorted(v for it in its for v in (next(it) for _ in range(per))) for _ in range(count)]

    one = steps(1, 0, 12)  # 12 steps: 4.8 epochs of 10 samples, 3.4 of 7
    assert steps(2, 0, 12) == one
    assert steps(2, 5, 7) == one[5:] and steps(1, 5, 7) == one[5:]
    stream = [v for b in one for v in b]
    for e in range(len(stream) * batch // n // batch):  # each whole epoch: every sample once
        assert sorted(v - n * e for v in stream if v // n == e) == list(range(n))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_like_one_process_on_the_same_global_batch(seg_data, tmp_path, monkeypatch):
    """2 steps of a global batch of 4: torchrun with 2 gloo processes (2 images each) against one
    process (4 images). CE weight of no-object 1 (``no_object_weight``): Mask2Former's class loss is
    a weighted mean per process (as the official DDP), equal to the global one only when the
    weight sums agree. Tolerance: the 2-process weights are within 5% of the 1-process run's
    displacement from the initial weights (measured 0.5%: 87 of 275k values differ by > 1e-5, the
    biases before a GroupNorm, whose gradient is 0 up to rounding, which Adam turns into ±lr), and
    fewer than 1% of the values differ by more than 1e-5. Without gradient averaging (no DDP
    wrapper): 83% / 69%; with each process normalising by its own mask count: 37% / 39%."""
    from tests.ddp_train import install

    seen_json, images, pngs = seg_data
    cfg = dict(TINY, batch_size=4, no_object_weight=1.0)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "tests" / "ddp_train.py"), json.dumps(cfg), str(seen_json), str(images), str(pngs),
           str(tmp_path / "two")]
    two_proc = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        install(monkeypatch.setattr)
        seg_cfg = SegmenterConfig(**cfg)
        train_segmenter(seg_cfg, seen_json, images, tmp_path / "one", pngs, show_progress=False)
        out, _ = two_proc.communicate(timeout=300)
    finally:
        two_proc.kill()
    assert two_proc.returncode == 0, out[-3000:]
    one, two = _weights(tmp_path / "one" / "model.pt"), _weights(tmp_path / "two" / "model.pt")
    torch.manual_seed(seg_cfg.seed)
    n_classes = len(torch.load(tmp_path / "one" / "model.pt", weights_only=True)["classes"])
    init = build_model(seg_cfg, n_classes).state_dict()
    assert one.keys() == two.keys()

    def dist(a, b):
        return float(sum(((a[k] - b[k]) ** 2).sum() for k in one)) ** 0.5

    moved, apart = dist(one, init), dist(one, two)
    off = sum(int(((one[k] - two[k]).abs() > 1e-5).sum()) for k in one) / sum(v.numel() for v in one.values())
    assert moved > 0.05  # it trained
    assert apart < 0.05 * moved and off < 0.01, f"2 processes {apart / moved:.1%} of the training displacement " \
                                                f"away from 1 process; {off:.1%} of the values differ by > 1e-5"


# ---- a resume file of another run; an unreadable one ---------------------------------------

@pytest.fixture(scope="module")
def fresh(seg_data, tmp_path_factory):
    """The weights of an uninterrupted TINY run (no last.pt)."""
    out = tmp_path_factory.mktemp("fresh")
    torch.set_num_threads(1)
    seen_json, images, pngs = seg_data
    r = train_segmenter(SegmenterConfig(**TINY), seen_json, images, out, pngs, show_progress=False)
    return r.checkpoint


def _last_pt(path, seg_data, variant: str) -> str:
    """Write a last.pt of another run; the reason the resumed run must give."""
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.segmenter.data import seen_classes

    classes = seen_classes(load_panoptic(seg_data[0]))
    cfg = SegmenterConfig(**TINY)
    if variant == "params":
        cfg, why = dataclasses.replace(cfg, lr=1e-3, warmup=2), "params changed: lr, warmup"
    elif variant == "classes":
        classes, why = classes[:-1], "the seen classes changed"
    torch.manual_seed(1)
    model = build_model(cfg, len(classes))
    save_checkpoint(path, model, cfg, classes, 1, torch.optim.AdamW(model.parameters()))
    if variant == "version":  # written by a version whose config had a key this one does not know
        ck = torch.load(path, weights_only=True)
        ck["config"]["old_key"] = 1
        torch.save(ck, path)
        why = "its config does not read as this version's: SegmenterConfig: unknown key(s) ['old_key']"
    return why


@pytest.mark.parametrize("variant", ["params", "classes", "version"])
def test_segmenter_last_pt_of_another_run_starts_afresh_and_says_so(seg_data, fresh, tmp_path, capsys, variant):
    out = tmp_path / "m"
    out.mkdir()
    why = _last_pt(out / "last.pt", seg_data, variant)
    seen_json, images, pngs = seg_data
    r = train_segmenter(SegmenterConfig(**TINY), seen_json, images, out, pngs, show_progress=False)
    err = capsys.readouterr().err
    said = re.escape(f"note: {out / 'last.pt'} is from another run ({why}")
    assert re.search(said + r"[^\n]*\): not resuming from it, training starts afresh", err), err
    assert r.resumed_from == 0 and not (out / "last.pt").exists()
    a, b = _weights(fresh), _weights(r.checkpoint)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_segmenter_unreadable_last_pt_is_an_error_naming_it(seg_data, fresh, tmp_path, damage):
    out = tmp_path / "m"
    out.mkdir()
    data = fresh.read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(4096))
    seen_json, images, pngs = seg_data
    said = r"(?s)" + re.escape(str(out / "last.pt")) + r": not a readable zeroseg checkpoint.*delete it to start afresh"
    with pytest.raises(DataError, match=said):
        train_segmenter(SegmenterConfig(**TINY), seen_json, images, out, pngs, show_progress=False)
    assert not (out / "model.pt").exists()


def _interrupted_generator(cfg, st, emb, out, at: int, monkeypatch) -> None:
    """Train until step ``at`` and stop there, as a killed run does (its resume file stays)."""
    import zeroseg.generator.train as gtrain

    def stop(done):
        if done == at:
            raise KeyboardInterrupt

    monkeypatch.setattr(gtrain, "kill_point", stop)
    with pytest.raises(KeyboardInterrupt):
        gtrain.train_generator(cfg, st, emb, out, show_progress=False)
    monkeypatch.undo()


def test_generator_resume_file_of_another_config_starts_afresh_and_a_broken_one_is_an_error(tmp_path, monkeypatch,
                                                                                              capsys):
    from tests.test_generator import ROWS, SMALL, _emb, _store
    from zeroseg.generator.config import GeneratorConfig
    from zeroseg.generator.train import train_generator

    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    cfg = GeneratorConfig(**dict(SMALL, iterations=4, checkpoint_every=2))
    train_generator(cfg, st, emb, tmp_path / "fresh.pt", show_progress=False)
    fresh = torch.load(tmp_path / "fresh.pt", weights_only=True)["generator"]

    # same config: resumes, to the same weights
    _interrupted_generator(cfg, st, emb, tmp_path / "same.pt", 3, monkeypatch)
    assert torch.load(tmp_path / "same.pt.last", weights_only=True)["step"] == 2
    train_generator(cfg, st, emb, tmp_path / "same.pt", show_progress=False)
    assert "note:" not in capsys.readouterr().err
    same = torch.load(tmp_path / "same.pt", weights_only=True)["generator"]
    assert all(torch.equal(fresh[k], same[k]) for k in fresh)

    # another config's resume file: afresh, said, the fresh weights
    _interrupted_generator(dataclasses.replace(cfg, lr=1e-3), st, emb, tmp_path / "other.pt", 3, monkeypatch)
    train_generator(cfg, st, emb, tmp_path / "other.pt", show_progress=False)
    err = capsys.readouterr().err
    assert f"note: {tmp_path / 'other.pt.last'} is from another run (changed: params ['lr'])" in err
    other = torch.load(tmp_path / "other.pt", weights_only=True)["generator"]
    assert all(torch.equal(fresh[k], other[k]) for k in fresh)

    # unreadable resume files
    good = (tmp_path / "fresh.pt").read_bytes()
    for name, data in (("truncated", good[: len(good) // 2]), ("garbage", os.urandom(2048))):
        (tmp_path / f"{name}.pt.last").write_bytes(data)
        said = re.escape(str(tmp_path / f"{name}.pt.last")) + r": not readable, truncated or corrupt \(\w+\); " \
            "the resume file of an interrupted run: delete it to start afresh"
        with pytest.raises(DataError, match=said):
            train_generator(cfg, st, emb, tmp_path / f"{name}.pt", show_progress=False)
    torch.save({"step": 2}, tmp_path / "partial.pt.last")  # a dict, but not a resume file
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "partial.pt.last")) + r": no \['identity'"):
        train_generator(cfg, st, emb, tmp_path / "partial.pt", show_progress=False)
    assert not any((tmp_path / f"{n}.pt").exists() for n in ("truncated", "garbage", "partial"))
    assert np.isfinite([v.float().sum().item() for v in fresh.values()]).all()
