"""Interrupt safety of every pipeline stage that writes (issue 18, item 2).

Each test runs a stage's script in a process of its own — the `cmd` of dvc.yaml (prepare: of
pipelines/coco-pipeline.yaml) — in a tmp working folder with a params.yaml and tiny inputs
(benchmark, prepare, split: a fresh `python SCRIPT ARGS`; the torch stages: a child forked from
a server that has done their imports once, see FORK_SERVER):

1. uninterrupted, from a clean folder: the reference outputs and the folder's listing;
2. the declared outputs are replaced by a stand-in "previous complete version";
3. killed with SIGKILL in the middle of its writes, for a couple of N: the test hook
   ``ZEROSEG_TEST_KILL_AFTER_WRITES=N`` (zeroseg/atomic.py) makes the process kill itself
   after the N-th file or chunk written into a temporary location; afterwards every
   declared output must be absent or exactly the previous version (no partial output, no
   new output beside a previous one). The second kill also starts from what the first left;
4. re-run uninterrupted: the outputs are byte-identical to the reference (Zarr chunks,
   Parquet, PNG and torch files included: none differs legitimately) and the folder holds
   exactly what the clean run left (the killed runs' temporaries are gone).

A kill INSIDE a multi-output commit (``ZEROSEG_TEST_KILL_IN_COMMIT=N``: after the N-th removal
or rename) is checked at every step on a tiny commit, and on the evaluate stage followed by the
report stage, which must refuse the half-committed row (check_commit_state).

The segmenter's own training is covered elsewhere (exact resume); train_generator writes one
file through the same zeroseg.atomic.atomic_file as retrain_classifier.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import ROOT, read_json, subprocess_env
from tests.test_generator import SMALL, _emb
from tests.test_segmenter import TINY
from zeroseg.atomic import KILL_AFTER_WRITES, KILL_IN_COMMIT

ROOT_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
COCO_STAGES = yaml.safe_load((ROOT / "pipelines" / "coco-pipeline.yaml").read_text())["stages"]
ROW, SEED = "pading", 0  # the matrix item the per-row stages are run for

PARAMS = {
    "benchmark": {"seed": 0, "image_size": 32, "train_images": 4, "val_images": 2},
    "split": {"unseen": "benchmark-default"},
    "dump": {"batch_size": 4, "dtype": "float32", "chunk_rows": 32},
    "synthesize": {"per_class": 8},
    "classifier": {"iterations": 20, "images_per_batch": 2},
    "inference": {"object_threshold": 0.5, "curve_points": 4},
    "fidelity": {"min_iou": 0.0, "max_per_class": 20, "mmd_samples": 10},
    "report": {"tsne_per_class": 5, "tsne_iterations": 250, "overlays": 2},
    "seeds": [SEED],
    "baselines": ["projection"],
    "generators": {ROW: "arch=primitive align=true disentangle=true"},
}


def stage_command(name: str, stages: dict = ROOT_STAGES, **subst: str) -> tuple[list[str], list[str]]:
    """(argv, declared outputs: outs, metrics and plots) of stage ``name``, ``${...}`` replaced."""
    body = stages[name].get("do", stages[name])

    def expand(s: str) -> str:
        for k, v in subst.items():
            s = s.replace("${" + k + "}", str(v))
        assert "${" not in s, f"{name}: unreplaced variable in {s!r}"
        return s

    argv = shlex.split(expand(body["cmd"]))
    assert argv[0] == "python"
    outs = [expand(next(iter(o)) if isinstance(o, dict) else o) for kind in ("outs", "metrics", "plots")
            for o in body.get(kind, [])]
    return [sys.executable] + argv[1:], outs


# ---- the inputs every stage reads, built once in-process --------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_benchmark) -> Path:
    """The root pipeline's data/ and metrics/ layout (dvc.yaml paths), tiny: the benchmark of
    conftest's tiny_benchmark, an untrained TINY segmenter, its dumps, random class embeddings, a 5-step
    generator, its synthetic store, projection + PADing heads and their scores."""
    from zeroseg.data.classes import unseen_from_split
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.evaluate.ceilings import CeilingsConfig, transfer_checks
    from zeroseg.evaluate.curve import curve_metrics
    from zeroseg.evaluate.fidelity import FidelityConfig, generator_fidelity
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.evaluate.score import evaluate_head, evaluate_segmenter
    from zeroseg.features.dump import DumpConfig, dump_features
    from zeroseg.features.store import FeatureStore
    from zeroseg.generator.config import GeneratorConfig
    from zeroseg.generator.synthesize import SynthesizeConfig, synthesize_store
    from zeroseg.generator.train import train_generator
    from zeroseg.head.model import load_head
    from zeroseg.head.retrain import HeadFiles, retrain_classifier
    from zeroseg.head.train import ClassifierConfig
    from zeroseg.segmenter.data import seen_classes
    from zeroseg.segmenter.model import SegmenterConfig, build_model, save_checkpoint
    from zeroseg.split import split_dataset

    w = tmp_path_factory.mktemp("world")
    (w / "data").mkdir()
    os.symlink(tiny_benchmark, w / "data/benchmark")
    ann = w / "data/benchmark/annotations"
    split = split_dataset(ann / "panoptic_train.json", "benchmark-default", w / "data/split")
    ck = w / "data/segmenter/s0/model.pt"  # untrained (its training is tested elsewhere): the stages only read it
    classes = seen_classes(load_panoptic(split.seen_json))
    torch.manual_seed(0)
    save_checkpoint(ck, build_model(SegmenterConfig(**TINY), len(classes)), SegmenterConfig(**TINY), classes, 0)
    dump_features(ck, split.seen_json, w / "data/benchmark/train", w / "data/features/s0/train_seen",
                  DumpConfig(batch_size=8),
                  ann / "panoptic_train", show_progress=False)
    dump_features(ck, split.unseen_json, w / "data/benchmark/train", w / "data/features/s0/train_unseen",
                  DumpConfig(batch_size=8),
                  ann / "panoptic_train", show_progress=False)
    dump_features(ck, ann / "panoptic_val.json", w / "data/benchmark/val", w / "data/features/s0/val",
                  DumpConfig(batch_size=8),
                  ann / "panoptic_val", keep_masks=True, show_progress=False)
    rows = [(c["id"], c["split"]) for c in read_json(split.all_json)["categories"]]
    (w / "data/embed").mkdir()
    emb = _emb(w / "data/embed", rows).rename(w / "data/embed/classes.parquet")
    gen = w / f"data/generators/{ROW}-s{SEED}.pt"
    train_generator(GeneratorConfig(**SMALL, min_iou=0.0), w / "data/features/s0/train_seen", emb, gen,
                    show_progress=False)
    synthesize_store(gen, SynthesizeConfig(per_class=8, seed=SEED), w / f"data/synthetic/{ROW}-s{SEED}")
    ccfg = ClassifierConfig(iterations=20, images_per_batch=4, seed=SEED)
    unseen = unseen_from_split(split.all_json)
    for row in ("projection", ROW):
        head = w / f"data/heads/{row}-s{SEED}.pt"
        synthetic = None if row == "projection" else w / f"data/synthetic/{ROW}-s{SEED}"
        retrain_classifier(ccfg, HeadFiles(ck, w / "data/features/s0/train_seen", emb, split.all_json, head, synthetic),
                           "projection" if row == "projection" else None)
        flat, table, curve = evaluate_head(FeatureStore(w / "data/features/s0/val"), load_head(head),
                                           ann / "panoptic_val.json", ann / "panoptic_val", unseen,
                                           InferenceConfig(curve_points=4), curve=True)
        flat.update(curve_metrics(curve))
        for sub in ("metrics/rows", "data/per_class", "data/curves", "metrics/fidelity", "data/fidelity"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / f"metrics/rows/{row}-s{SEED}.json").write_text(json.dumps(flat))
        pd.DataFrame(table).to_parquet(w / f"data/per_class/{row}-s{SEED}.parquet", index=False)
        curve.to_parquet(w / f"data/curves/{row}-s{SEED}.parquet", index=False)
    fid, fid_table = generator_fidelity(FidelityConfig(min_iou=0.0, max_per_class=20, mmd_samples=10),
                                        w / "data/features/s0/train_seen", w / "data/features/s0/train_unseen",
                                        w / f"data/synthetic/{ROW}-s{SEED}",
                                        load_head(w / f"data/heads/{ROW}-s{SEED}.pt"))
    (w / f"metrics/fidelity/{ROW}-s{SEED}.json").write_text(json.dumps(fid))
    fid_table.to_parquet(w / f"data/fidelity/{ROW}-s{SEED}.parquet", index=False)
    checks = transfer_checks(CeilingsConfig(min_iou=0.0), w / "data/features/s0/train_seen",
                             w / "data/features/s0/train_unseen", w / "data/features/s0/val", emb, split.all_json)
    seg = evaluate_segmenter(ck, w / "data/features/s0/val", ann / "panoptic_val.json", ann / "panoptic_val",
                             split.all_json, InferenceConfig(curve_points=4))
    for name, flat in (("ceilings", checks.metrics), ("segmenter", {f"segmenter.{k}": v for k, v in seg.items()})):
        (w / "metrics" / name).mkdir(parents=True, exist_ok=True)
        (w / f"metrics/{name}/s{SEED}.json").write_text(json.dumps(flat))
    return w


def workdir(tmp_path: Path, world: Path | None, inputs: list[str], params: dict = PARAMS) -> Path:
    """A pipeline folder: params.yaml, stages/ and the ``inputs`` (links into ``world``)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    os.symlink(ROOT / "stages", work / "stages")
    for rel in inputs:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(world / rel, work / rel)
    return work


# ---- run, kill, compare -----------------------------------------------------------------

def snapshot(path: Path):
    """None (absent), the bytes of a file, or {relative path: bytes | None} of a folder (hidden
    entries included: a temporary inside a finished output is a partial output)."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return path.read_bytes()
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            out[os.path.relpath(Path(dirpath, d), path)] = None
        for f in filenames:
            out[os.path.relpath(Path(dirpath, f), path)] = Path(dirpath, f).read_bytes()
    return out


def listing(work: Path) -> list[str]:
    """Every path under ``work`` (links to inputs not followed)."""
    return sorted(os.path.relpath(Path(d, n), work) for d, dirs, files in os.walk(work) for n in dirs + files)


def make_previous(path: Path) -> None:
    """A stand-in "previous complete version" of an output, told apart from any new one."""
    if path.is_dir():
        shutil.rmtree(path)
        path.mkdir()
        (path / "PREVIOUS").write_text("the previous version\n")
    else:
        path.write_text("the previous version\n")


def stage_env(kill_after: int | None = None, hook: str = KILL_AFTER_WRITES) -> dict[str, str]:
    """The subprocess environment; ``hook=N`` when ``kill_after`` is N (KILL_AFTER_WRITES: the N-th
    file or chunk written; KILL_IN_COMMIT: the N-th removal or rename of a multi-output commit)."""
    env = subprocess_env()
    env.pop(KILL_AFTER_WRITES, None)
    env.pop(KILL_IN_COMMIT, None)
    if kill_after is not None:
        env[hook] = str(kill_after)
    return env


def run_fresh(argv: list[str], work: Path, kill_after: int | None = None,
              hook: str = KILL_AFTER_WRITES) -> tuple[int, str]:
    """The stage in a fresh interpreter: (return code, -9 when SIGKILLed; its output)."""
    r = subprocess.run(argv, cwd=work, env=stage_env(kill_after, hook), capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


#: A process that imports what the torch stages import, once, then forks one child per run:
#: the child takes the run's folder, environment and argv and runs the stage script as
#: __main__ (what `python SCRIPT ARGS` does), so a SIGKILL ends a process of its own exactly as
#: it would the command of dvc.yaml; a fresh interpreter would pay 3-6 s of imports per run.
FORK_SERVER = r"""
import json, os, runpy, signal, sys, traceback
for m in sys.argv[1:]:
    __import__(m)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(300)
            os.chdir(job["cwd"])
            os.environ.clear()
            os.environ.update(job["env"])
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = job["argv"][1:]
            sys.path[0] = os.path.dirname(os.path.realpath(sys.argv[0]))
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""
PRELOAD = ("zeroseg.stage", "zeroseg.features.dump", "zeroseg.head.train", "zeroseg.generator.synthesize",
           "zeroseg.evaluate.score", "zeroseg.evaluate.curve", "zeroseg.evaluate.fidelity", "sklearn.linear_model",
           "zeroseg.segmenter.model", "zeroseg.report", "sklearn.manifold", "pandas",
           "pyarrow.parquet", "transformers.models.mask2former.modeling_mask2former",
           "transformers.models.resnet.modeling_resnet")  # transformers imports its models lazily


@pytest.fixture(scope="module")
def run_forked(tmp_path_factory):
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER, *PRELOAD], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=stage_env(), cwd=ROOT)
    logs = tmp_path_factory.mktemp("logs")
    count = iter(range(10**6))

    def run(argv: list[str], work: Path, kill_after: int | None = None,
            hook: str = KILL_AFTER_WRITES) -> tuple[int, str]:
        log = logs / f"{next(count)}.log"
        server.stdin.write(json.dumps({"argv": argv, "cwd": str(work), "env": stage_env(kill_after, hook),
                                       "log": str(log)}) + "\n")
        server.stdin.flush()
        rc = server.stdout.readline()
        assert rc, "the fork server died"
        return int(rc), log.read_text() if log.exists() else ""

    yield run
    server.stdin.close()
    server.wait(timeout=60)


def check_interrupts(run, work: Path, argv: list[str], outs: list[str], kills: tuple[int, ...]) -> None:
    """``run``: :func:`run_fresh` or the fork server's ``run_forked``."""
    rc, log = run(argv, work)
    assert rc == 0, log[-3000:]
    new = {o: snapshot(work / o) for o in outs}
    assert all(v is not None for v in new.values()), new.keys()
    clean = listing(work)
    for o in outs:
        make_previous(work / o)
    previous = {o: snapshot(work / o) for o in outs}
    for n in kills:
        rc, log = run(argv, work, kill_after=n)
        assert rc == -signal.SIGKILL, f"not killed at write {n} (rc {rc}): {log[-3000:]}"
        for o in outs:
            state = snapshot(work / o)
            assert state is None or state == previous[o], (
                f"{o} after a kill at write {n}: "
                + ("the NEW version beside previous ones" if state == new[o] else "a partial version"))
    rc, log = run(argv, work)
    assert rc == 0, log[-3000:]
    for o in outs:
        assert snapshot(work / o) == new[o], f"{o}: re-run after the kills differs from the uninterrupted run"
    assert listing(work) == clean, f"left behind: {sorted(set(listing(work)) - set(clean))}"


# ---- the stages --------------------------------------------------------------------------

def test_benchmark(tmp_path):
    """6 images; kills after the 2nd image and after everything is written (before the rename)."""
    argv, outs = stage_command("benchmark")
    check_interrupts(run_fresh, workdir(tmp_path, None, []), argv, outs, kills=(2, 9))


def test_prepare(tmp_path, tiny_benchmark):
    """COCO pipelines' prepare, format panoptic, on the tiny benchmark in COCO's layout (no
    ../shared needed): kills after the val JSON and after the folder is complete, before the metric."""
    argv, outs = stage_command("prepare", COCO_STAGES, repo=ROOT)
    ann = tiny_benchmark / "annotations"
    params = {"prepare": {"format": "panoptic", "train_annotations": str(ann / "panoptic_train.json"),
                          "val_annotations": str(ann / "panoptic_val.json"),
                          "train_images": str(tiny_benchmark / "train"),
                          "val_images": str(tiny_benchmark / "val")}}
    assert outs == ["data/coco", "metrics/prepare.json"]
    check_interrupts(run_fresh, workdir(tmp_path, None, [], params), argv, outs, kills=(2, 6))


@pytest.mark.parametrize("kill", [
    2,  # the unseen JSON written, in the temporary folder
    5,  # the split complete, its metric not yet: both are committed together (zeroseg.atomic.atomic_outputs)
])
def test_split(tmp_path, world, kill):
    argv, outs = stage_command("split")
    check_interrupts(run_fresh, workdir(tmp_path, world, ["data/benchmark"]), argv, outs, kills=(kill,))


def test_dump_features(tmp_path, world, run_forked):
    """The val dump (masks kept): 3 chunks of 32 rows; kills after the 2nd chunk and after the
    store is complete under its temporary name."""
    item = next(i for i in ROOT_STAGES["dump_features"]["matrix"]["set"] if i["name"] == "val")
    argv, outs = stage_command("dump_features", **{"item.seed": SEED}, **{f"item.set.{k}": v for k, v in item.items()})
    work = workdir(tmp_path, world, ["data/benchmark", "data/split", "data/segmenter/s0/model.pt"])
    check_interrupts(run_forked, work, argv, outs, kills=(2, 7))


def test_synthesize(tmp_path, world, run_forked):
    argv, outs = stage_command("synthesize", **{"item.row": ROW, "item.seed": SEED})
    work = workdir(tmp_path, world, [f"data/generators/{ROW}-s{SEED}.pt"])
    check_interrupts(run_forked, work, argv, outs, kills=(1, 5))


def test_retrain_classifier(tmp_path, world, run_forked):
    """One write (the head): killed after it is written, before its rename."""
    argv, outs = stage_command("retrain_classifier", **{"item.row": ROW, "item.seed": SEED})
    work = workdir(tmp_path, world,
                   ["data/segmenter/s0/model.pt", "data/features/s0/train_seen", "data/embed/classes.parquet",
                                     "data/split", f"data/synthetic/{ROW}-s{SEED}",
                                     f"data/generators/{ROW}-s{SEED}.pt"])
    check_interrupts(run_forked, work, argv, outs, kills=(1,))


def test_evaluate(tmp_path, world, run_forked):
    """Three outputs that report reads together: kills after the table, the curve and the metric."""
    argv, outs = stage_command("evaluate", **{"item.row": ROW, "item.seed": SEED})
    work = workdir(tmp_path, world,
                   [f"data/heads/{ROW}-s{SEED}.pt", "data/features/s0/val", "data/benchmark", "data/split"])
    assert len(outs) == 3
    check_interrupts(run_forked, work, argv, outs, kills=(1, 3))


def test_fidelity(tmp_path, world, run_forked):
    """Two outputs: kills after the table and after the metric, before the commit."""
    argv, outs = stage_command("fidelity", **{"item.row": ROW, "item.seed": SEED})
    work = workdir(tmp_path, world,
                   ["data/features/s0/train_seen", "data/features/s0/train_unseen", f"data/synthetic/{ROW}-s{SEED}",
                                     f"data/heads/{ROW}-s{SEED}.pt", "data/split"])
    check_interrupts(run_forked, work, argv, outs, kills=(1, 2))


def test_report(tmp_path, world, run_forked):
    """Eight outputs (five pictures, the markdown, two JSONs): kills after the t-SNE picture and
    after every output is written, before the commit."""
    argv, outs = stage_command("report")
    work = workdir(tmp_path, world,
                   ["metrics/rows", "metrics/fidelity", "metrics/ceilings", "metrics/segmenter", "data/per_class",
                    "data/curves", "data/fidelity", "data/heads", "data/synthetic", "data/features", "data/benchmark",
                    "data/split"])
    assert len(outs) == 8
    check_interrupts(run_forked, work, argv, outs, kills=(1, 8))


def test_embed(tmp_path, world, run_forked):
    """One file (the class table) in the declared output folder data/embed, with the packaged
    GloVe vectors (offline, fast): killed after it is written, before its rename; the folder
    holds no temporary afterwards (dvc hashes the whole folder)."""
    argv, outs = stage_command("embed")
    assert outs == ["data/embed"]
    work = workdir(tmp_path, world, ["data/split"], dict(PARAMS, embed={"source": "glove"}))
    check_interrupts(run_forked, work, argv, outs, kills=(1,))


def test_ceilings(tmp_path, world, run_forked):
    """The transfer checks: a table and a metric committed together (kills after each, before the commit)."""
    argv, outs = stage_command("ceilings", **{"item.seed": SEED})
    assert outs == [f"data/ceilings/s{SEED}.parquet", f"metrics/ceilings/s{SEED}.json"]
    work = workdir(tmp_path, world, [f"data/features/s{SEED}", "data/embed/classes.parquet", "data/split"],
                   dict(PARAMS, ceilings={"min_iou": 0.0}))
    check_interrupts(run_forked, work, argv, outs, kills=(1, 2))


def test_eval_segmenter(tmp_path, world, run_forked):
    """Two metrics committed together: kills after the full JSON and after the headline, before the commit."""
    argv, outs = stage_command("eval_segmenter", **{"item.seed": SEED})
    work = workdir(tmp_path, world,
                   ["data/segmenter/s0/model.pt", "data/features/s0/val", "data/benchmark", "data/split"])
    assert len(outs) == 2
    check_interrupts(run_forked, work, argv, outs, kills=(1, 2))


def test_retrain_baseline(tmp_path, world, run_forked):
    """retrain_classifier.py --baseline projection (no generator): one write, killed before its rename."""
    argv, outs = stage_command("retrain_baseline", **{"item.row": "projection", "item.seed": SEED})
    assert "--baseline" in argv and outs == [f"data/heads/projection-s{SEED}.pt"]
    work = workdir(tmp_path, world, ["data/segmenter/s0/model.pt", "data/features/s0/train_seen",
                                     "data/features/s0/train_unseen", "data/embed/classes.parquet", "data/split"])
    check_interrupts(run_forked, work, argv, outs, kills=(1,))


def test_evaluate_baseline(tmp_path, world, run_forked):
    """stages/evaluate.py on the projection head: kills after the table and after the metric."""
    argv, outs = stage_command("evaluate_baseline", **{"item.row": "projection", "item.seed": SEED})
    work = workdir(tmp_path, world, [f"data/heads/projection-s{SEED}.pt", "data/features/s0/val", "data/benchmark",
                                     "data/split"])
    assert len(outs) == 3 and outs[-1] == f"metrics/rows/projection-s{SEED}.json"
    check_interrupts(run_forked, work, argv, outs, kills=(1, 3))


# ---- a kill inside the multi-output commit --------------------------------------------------

def check_commit_state(outs: list[str], state: dict, previous: dict, new: dict, where: str) -> None:
    """After a kill inside a commit of ``outs`` (the headline last): each output absent, previous
    or new; never previous beside new; the last present only beside the whole set of its version."""
    kinds = {}
    for o in outs:
        kinds[o] = "absent" if state[o] is None else "previous" if state[o] == previous[o] else \
            "new" if state[o] == new[o] else "partial"
    assert "partial" not in kinds.values(), f"{where}: a partial output: {kinds}"
    assert not {"previous", "new"} <= set(kinds.values()), f"{where}: previous outputs beside new ones: {kinds}"
    if kinds[outs[-1]] != "absent":
        assert len(set(kinds.values())) == 1, f"{where}: the headline {outs[-1]} is readable beside {kinds}"


COMMIT_SCRIPT = r"""
import pathlib, sys
from zeroseg.atomic import atomic_outputs
tag = sys.argv[1]
with atomic_outputs() as outs:
    with outs.file("table.parquet") as tmp:
        tmp.write_text("table " + tag)
    with outs.dir("store") as tmp:
        (tmp / "chunk").write_text("store " + tag)
    with outs.file("metric.json") as tmp:
        tmp.write_text("metric " + tag)
"""


@pytest.mark.parametrize("step", range(1, 7))
def test_kill_at_every_step_of_a_commit(tmp_path, step):
    """Three outputs (a file, a folder, the headline metric) committed over a previous set: 3
    removals then 3 renames; a SIGKILL after each step leaves a state no reader can mistake for
    a set (check_commit_state); the next run replaces it with the new set and no temporary."""
    outs = ["table.parquet", "store", "metric.json"]
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))
    run = lambda tag, **extra: subprocess.run([sys.executable, "-c", COMMIT_SCRIPT, tag], cwd=tmp_path,  # noqa: E731
                                              env=dict(env, **extra), timeout=60).returncode
    assert run("new") == 0
    new, clean = {o: snapshot(tmp_path / o) for o in outs}, listing(tmp_path)
    assert run("previous") == 0
    previous = {o: snapshot(tmp_path / o) for o in outs}
    assert run("new", **{KILL_IN_COMMIT: str(step)}) == -signal.SIGKILL
    state = {o: snapshot(tmp_path / o) for o in outs}
    check_commit_state(outs, state, previous, new, f"killed after commit step {step}")
    assert [o for o in outs if state[o] == new[o]] == outs[:max(0, step - 3)]  # renamed in order, the headline last
    assert run("new") == 0
    assert {o: snapshot(tmp_path / o) for o in outs} == new and listing(tmp_path) == clean


def test_evaluate_killed_inside_its_commit_is_not_read_by_the_report(tmp_path, world, run_forked):
    """The evaluate stage (per-class table, curve, the row's metric) killed inside its commit: at
    the first removal, the first rename and the second; then the report stage, which reads the
    rows together, refuses the row (its metric is absent) instead of reading a half set."""
    argv, outs = stage_command("evaluate", **{"item.row": ROW, "item.seed": SEED})
    rows = "metrics/rows"
    work = workdir(tmp_path, world, [f"data/heads/{ROW}-s{SEED}.pt", "data/features/s0/val", "data/benchmark",
                                     "data/split", f"{rows}/projection-s{SEED}.json"])
    report, _ = stage_command("report")
    rc, log = run_forked(argv, work)
    assert rc == 0, log[-3000:]
    new, clean = {o: snapshot(work / o) for o in outs}, listing(work)
    for step in (1, 4, 5):
        for o in outs:
            make_previous(work / o)
        previous = {o: snapshot(work / o) for o in outs}
        rc, log = run_forked(argv, work, kill_after=step, hook=KILL_IN_COMMIT)
        assert rc == -signal.SIGKILL, f"not killed at commit step {step} (rc {rc}): {log[-3000:]}"
        check_commit_state(outs, {o: snapshot(work / o) for o in outs}, previous, new, f"commit step {step}")
        rc, log = run_forked(report, work)
        assert rc == 2 and f"metrics of ablation row '{ROW}' missing" in log and outs[-1] in log, log[-3000:]
    rc, log = run_forked(argv, work)
    assert rc == 0, log[-3000:]
    assert {o: snapshot(work / o) for o in outs} == new and listing(work) == clean
