"""The COCO benchmark pipelines' CPU smoke variants: `dvc repro` of each on the shared coco-mini
(real COCO files), each in its own clean copy of the repository, all side by side (one thread each).

ZSI 65/15 runs its stages up to `embed` only: its dvc.yaml is the shared definition and its params are
ZSI 48/17's except the four keys that choose the classes (checked below), so every later stage runs
the same code with the same settings in the 48/17 run; only the class split and its names differ."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import COCO_JSON, ROOT, SHARED, copy_project, subprocess_env

PIPELINES = ("coco-panoptic", "coco-stuff", "coco-instance-48-17", "coco-instance-65-15")
CLASS_SPLIT_ONLY = {"coco-instance-65-15": "coco-instance-48-17"}  # runs up to embed; its twin runs every stage
CLASS_KEYS = {("prepare", "classes"), ("split", "unseen"), ("embed", "table"), ("embed", "table_names")}
ROW_KEYS = [f"{t}_{p}" for t in ("pq", "sq", "rq", "map50", "r100", "miou") for p in ("seen", "unseen", "hm")]


def _clean_copy(dst: Path) -> None:
    """The project in a fresh git repo with one commit (dvclive needs a commit)."""
    copy_project(dst)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        subprocess.run(cmd, cwd=dst, env=subprocess_env(), check=True)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    if not COCO_JSON.exists():
        pytest.skip(f"shared data absent: {COCO_JSON} (the smoke pipelines run on ../shared/data/coco-mini)")
    base = tmp_path_factory.mktemp("coco")
    (base / "shared").symlink_to(SHARED.parent)  # the pipelines read ../shared/data beside the repository
    procs = {}
    for name in PIPELINES:
        repo = base / name  # copies side by side: ../shared resolves the same way from each
        repo.mkdir()
        _clean_copy(repo)
        target = f"pipelines/{name}/smoke/dvc.yaml" + (":embed" if name in CLASS_SPLIT_ONLY else "")
        procs[name] = subprocess.Popen([sys.executable, "-m", "dvc", "repro", target], cwd=repo, env=subprocess_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-6000:]
        runs[name] = base / name / "pipelines" / name / "smoke"
    return runs


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", [p for p in PIPELINES if p not in CLASS_SPLIT_ONLY])
def test_smoke_pipeline_runs_every_stage(smoke_runs, name):
    d = smoke_runs[name]
    for stage_out in ("data/coco/panoptic_train.json", "data/coco/instances_val.json",
                      "data/split/panoptic_train_seen.json",
                      "data/embed/classes.parquet", "data/segmenter/model.pt", "data/features/train_seen/meta.json",
                      "data/features/val/meta.json", "data/generators/pading-s0.pt", "data/heads/projection-s0.pt",
                      "data/heads/pading-s0.pt", "metrics/segmenter.json", "metrics/zero_shot.json", "plots/tsne.png",
                      "plots/overlays.png"):
        assert (d / stage_out).exists(), stage_out
    for row in ("projection", "pading"):
        m = _json(d / "metrics" / "rows" / f"{row}-s0.json")
        assert set(ROW_KEYS) <= set(m), sorted(set(ROW_KEYS) - set(m))
    assert _json(d / "data/features/val/meta.json")["mask_shape"][1:] == [16, 16]  # dump.mask_size
    status = subprocess.run([sys.executable, "-m", "dvc", "status", f"pipelines/{name}/smoke/dvc.yaml"],
                            cwd=d.parents[2],
                            env=subprocess_env(), capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout + status.stderr


def test_zsp_smoke_keeps_the_31_leak_free_images(smoke_runs):
    d = smoke_runs["coco-panoptic"]
    assert _json(d / "metrics/split.json") == {"split.images": 100, "split.seen_images": 31, "split.unseen_images": 69,
                                                "split.unseen_classes": 14}
    assert _json(d / "metrics/prepare.json")["prepare.classes"] == 133
    from zeroseg.split import check_no_leak

    assert check_no_leak(d / "data/split/panoptic_train_seen.json", COCO_JSON, COCO_JSON.with_suffix(""),
                         "coco-zsp") == 31


def test_zss_smoke_is_semantic(smoke_runs):
    d = smoke_runs["coco-stuff"]
    assert _json(d / "metrics/prepare.json")["prepare.classes"] == 171
    # the published ZSS protocol (split.policy ignore): every image trains, no unseen target or match
    split = _json(d / "metrics/split.json")
    assert split["split.seen_images"] == split["split.images"] == 100 and split["split.ignored_segments"] > 0
    from zeroseg.features.store import FeatureStore

    unseen = {c["id"] for c in _json(d / "data/split/panoptic_train_all.json")["categories"] if c["split"] == "unseen"}
    store = FeatureStore(d / "data/features/train_seen")
    assert len(store.index) == 100 and not set(store.labels.tolist()) & unseen and (store.labels >= 0).any()
    cats = _json(d / "data/coco/panoptic_val.json")["categories"]
    assert not any(c["isthing"] for c in cats)  # one segment per class: the semantic task
    m = _json(d / "metrics/rows/pading-s0.json")
    assert m["map50"] is None and m["miou_hm"] is not None  # no instances to score; mIoU is


@pytest.mark.parametrize("name,classes,unseen", [("coco-instance-48-17", 65, 17), ("coco-instance-65-15", 80, 15)])
def test_zsi_smoke_keeps_the_split_classes(smoke_runs, name, classes, unseen):
    d = smoke_runs[name]
    assert _json(d / "metrics/prepare.json")["prepare.classes"] == classes
    assert _json(d / "metrics/split.json")["split.unseen_classes"] == unseen
    inst = _json(d / "data/coco/instances_val.json")
    assert len(inst["categories"]) == classes and inst["annotations"]
    import pandas as pd

    assert len(pd.read_parquet(d / "data/embed/classes.parquet")) == classes
    if name in CLASS_SPLIT_ONLY:
        status = subprocess.run([sys.executable, "-m", "dvc", "status", f"pipelines/{name}/smoke/dvc.yaml:embed"],
                                cwd=d.parents[2], env=subprocess_env(), capture_output=True, text=True)
        assert "up to date" in status.stdout, status.stdout + status.stderr
    else:
        assert _json(d / "metrics/rows/pading-s0.json")["map50_hm"] is not None


def _flat_params(params: dict) -> dict[tuple[str, str | None], object]:
    """(section, key) -> value; a top-level value that is not a section has key None."""
    return {(sec, k): v for sec, body in params.items()
            for k, v in (body.items() if isinstance(body, dict) else [(None, body)])}


@pytest.mark.parametrize("name,twin", sorted(CLASS_SPLIT_ONLY.items()))
def test_a_pipeline_run_to_embed_differs_from_its_twin_only_in_the_class_split(name, twin):
    """What licenses running ZSI 65/15 only up to `embed`: the same stages and the same params as
    ZSI 48/17 (which runs every stage) but for the keys that choose the classes."""
    smoke = ROOT / "pipelines" / name / "smoke"
    twin_smoke = ROOT / "pipelines" / twin / "smoke"
    assert (smoke / "dvc.yaml").read_text() == (twin_smoke / "dvc.yaml").read_text()
    a, b = (_flat_params(yaml.safe_load((d / "params.yaml").read_text())) for d in (smoke, twin_smoke))
    assert a.keys() == b.keys()
    differ = {k for k in a if a[k] != b[k]}
    assert differ == CLASS_KEYS, differ
    stages = yaml.safe_load((smoke / "dvc.yaml").read_text())["stages"]
    for sec, _ in CLASS_KEYS:  # every stage reading a class key runs in the split-only run
        readers = [n for n, st in stages.items()
                   if any(p.split(".")[0] == sec for p in st.get("do", st).get("params", []))]
        assert set(readers) <= {"prepare", "split", "embed"}, (sec, readers)


def test_every_pipeline_is_the_shared_definition_with_complete_params():
    template = ROOT / "pipelines" / "coco-pipeline.yaml"
    stages = yaml.safe_load(template.read_text())["stages"]
    sections = {p.split(".")[0] for st in stages.values() for p in st.get("do", st).get("params", [])}
    for name in PIPELINES:
        for d in (ROOT / "pipelines" / name, ROOT / "pipelines" / name / "smoke"):
            # a generated copy, not a link: DVC cannot read a symlinked dvc.yaml from a committed revision
            assert not (d / "dvc.yaml").is_symlink(), d
            assert (d / "dvc.yaml").read_text().endswith(template.read_text()), f"{d}: run python pipelines/sync.py"
            params = yaml.safe_load((d / "params.yaml").read_text())
            assert sections | {"repo", "launch", "generators", "baselines"} <= set(params), (d, sections - set(params))
            assert (d / params["repo"] / "stages" / "prepare.py").exists(), d
            assert params["baselines"] == ["projection"] and "pading" in params["generators"]
