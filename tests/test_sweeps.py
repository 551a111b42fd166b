"""Sweeps with `dvc exp run -S`: the params file DVC rewrites stays readable, the experiments view
fits a terminal, and a sweep re-runs only the generator rows that read the swept key.

The chained sweeps run in a tiny git + DVC repository: the real root params.yaml, stages that read
their sections with the stages' own reader (zeroseg.stage.section) and a report stage that writes a
fake metrics/zero_shot.json for the params' ablation rows; a COCO-style pipeline beside it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_project, subprocess_env
from zeroseg.config import load_section
from zeroseg.experiments import Experiment, experiments, scores_of, table
from zeroseg.features.dump import DumpConfig
from zeroseg.generator.config import GeneratorConfig
from zeroseg.segmenter.model import SegmenterConfig

DVC = [sys.executable, "-m", "dvc"]
WIDTH = 120
COCO = "pipelines/coco-x"

READ_SEGMENTER = '''from pathlib import Path
from zeroseg import stage
from zeroseg.segmenter.model import SegmenterConfig

cfg = stage.section("segmenter", SegmenterConfig)  # what stages/train_segmenter.py reads, as it reads it
Path("seg.txt").write_text(f"{cfg.amp} {cfg.iterations}\\n")
'''
FAKE_REPORT = '''import json
from pathlib import Path
from zeroseg import stage

rows, _ = stage.rows()
n = stage.value("generator")["num_primitives"]
metrics = {"seeds": len(stage.seeds())}
for i, row in enumerate(rows):
    metrics.update({f"{row}.pq_hm.mean": (i + n / 1000) / 100, f"{row}.pq_hm.std": None,
                    f"{row}.ausuc.mean": 0.1 + i / 100, f"{row}.ausuc.std": None})
Path("metrics").mkdir(exist_ok=True)
Path("metrics/zero_shot.json").write_text(json.dumps(metrics))
'''
ROOT_DVC = {"stages": {
    "segmenter": {"cmd": "python read_segmenter.py", "deps": ["read_segmenter.py"],
                  "params": ["segmenter"], "outs": ["seg.txt"]},
    "report": {"cmd": "python fake_report.py", "deps": ["fake_report.py"],
               "params": ["generator", "generators", "baselines", "seeds"],
               "metrics": [{"metrics/zero_shot.json": {"cache": False}}]}}}
COCO_DVC = {"stages": {"report": {"cmd": "python ../../fake_report.py", "deps": ["../../fake_report.py"],
                                  "params": ["generator", "generators", "baselines", "seeds"],
                                  "metrics": [{"metrics/zero_shot.json": {"cache": False}}]}}}


def _run(args, cwd, env) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _view(repo: Path, env, *args: str) -> str:
    return _run([sys.executable, "-m", "zeroseg.cli", "exp", *args], repo, env)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict:
    """The tiny repository after `dvc repro`, a generator sweep, then a segmenter sweep; the views."""
    repo = tmp_path_factory.mktemp("sweeps") / "repo"
    repo.mkdir()
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT), DVC_NO_ANALYTICS="1")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    (repo / "read_segmenter.py").write_text(READ_SEGMENTER)
    (repo / "fake_report.py").write_text(FAKE_REPORT)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(ROOT_DVC, sort_keys=False))
    (repo / COCO).mkdir(parents=True)
    shutil.copy(ROOT / "pipelines/coco-panoptic/params.yaml", repo / COCO / "params.yaml")
    (repo / COCO / "dvc.yaml").write_text(yaml.safe_dump(COCO_DVC, sort_keys=False))
    _run(["git", "init", "-q"], repo, env)
    _run(DVC + ["init", "-q"], repo, env)
    _run(DVC + ["repro", "dvc.yaml"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "run"], repo, env)
    out = {"repo": repo}
    out["first"] = _run(DVC + ["exp", "run", "-S", "generator.num_primitives=400"], repo, env)
    out["params_after_first"] = (repo / "params.yaml").read_text()
    out["second"] = _run(DVC + ["exp", "run", "-S", "segmenter.iterations=651"], repo, env)
    out["seg"] = (repo / "seg.txt").read_text()
    out["root"] = _view(repo, env)
    _run(DVC + ["exp", "run", "-S", f"{COCO}/params.yaml:generator.num_primitives=300", f"{COCO}/dvc.yaml"], repo, env)
    out["coco"] = _view(repo, env, COCO)
    return out


def test_dvc_rewritten_params_read_as_dvc_reads_them(tmp_path):
    """DVC's own -S code (dvc.utils.hydra.apply_overrides, its ruamel serializer) drops the quotes of
    `amp: "off"`; our reader still reads the string "off" (YAML 1.2), as DVC itself does."""
    from dvc.utils.hydra import apply_overrides

    p = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", p)
    apply_overrides(p, ["generator.num_primitives=400"])
    text = p.read_text()
    assert re.search(r"^  amp: off\b", text, re.M), "DVC kept the quotes: this test no longer reproduces the issue"
    assert yaml.safe_load(text)["segmenter"]["amp"] is False  # what a YAML 1.1 reader (PyYAML) makes of it
    before = load_section(ROOT / "params.yaml", "segmenter", SegmenterConfig)
    assert load_section(p, "segmenter", SegmenterConfig) == before and before.amp == "off"
    assert load_section(p, "dump", DumpConfig).amp == "off"
    assert load_section(p, "generator", GeneratorConfig) == \
        replace(load_section(ROOT / "params.yaml", "generator", GeneratorConfig), num_primitives=400)


def test_a_second_sweep_re_runs_the_segmenter_on_the_rewritten_params(sweeps):
    assert re.search(r"^  amp: off\b", sweeps["params_after_first"], re.M)  # the first sweep's rewrite
    assert "Running stage 'report'" in sweeps["first"] and "Running stage 'segmenter'" not in sweeps["first"]
    assert "Running stage 'segmenter'" in sweeps["second"]
    assert sweeps["seg"] == "off 651\n"


def _check_width(text: str) -> None:
    assert max(len(line) for line in text.splitlines()) <= WIDTH, text


def test_the_experiments_view_shows_each_sweep_and_row_in_120_columns(sweeps):
    text = sweeps["root"]
    _check_width(text)
    lines = text.splitlines()
    assert lines[0].split() == ["experiment", "changed", "params", "row", "PQ", "HM", "AUSUC"]
    rows = ["projection", "linear", "gmmn", "primitive", "primitive_align", "pading", "pading_official", "oracle"]
    blocks = [i for i, line in enumerate(lines[2:], 2) if not line.startswith(" ")]
    assert len(blocks) == 3, text  # the commit and the two experiments, newest first (the workspace is the last)
    second, first = lines[blocks[1]:blocks[2]], lines[blocks[2]:]
    assert [line.split()[-3] for line in first] == rows
    assert "generator.num_primitives=400" in first[0] and "segmenter.iterations=651" not in "".join(first)
    assert {second[0].split()[1], second[1].split()[0]} == {"generator.num_primitives=400", "segmenter.iterations=651"}
    assert lines[blocks[0]].split()[2:] == ["-", "projection", "0.2", "10.0"]  # "<branch> <rev>", 200 primitives
    assert first[2].split()[-2:] == ["2.4", "12.0"]  # gmmn (row 2) after the sweep: (2 + 0.4) %, AUSUC 12 %


def test_the_experiments_view_of_a_coco_pipeline(sweeps):
    """Its commit never ran it; its one experiment did; the root's experiments are left out."""
    text = sweeps["coco"]
    _check_width(text)
    lines = text.splitlines()
    assert lines[2].split()[2:] == ["-", "(not", "run)"], text  # "<branch> <rev>": the commit
    assert lines[3].split()[1] == "generator.num_primitives=300"
    assert [line.split()[-3] for line in lines[3:]] == ["projection", "linear", "gmmn", "primitive", "primitive_align",
                                                        "pading"]


def test_the_view_reads_the_committed_root_metrics():
    """metrics/zero_shot.json as the report stage writes it: every ablation row's PQ HM and AUSUC."""
    from zeroseg.stage import rows

    metrics = json.loads((ROOT / "metrics/zero_shot.json").read_text())
    scores = scores_of(metrics)
    assert list(scores) == rows(str(ROOT / "params.yaml"))[0]
    assert all(s["pq_hm"][0] is not None and s["ausuc"][0] is not None for s in scores.values())
    many = [f"embed.templates={json.dumps(['a photo of a {}.'] * 9)}", "seeds=[0, 1, 2]", "generators.pading_official="
            "arch=primitive align=true disentangle=true recipe=official lambda=0.0001"]
    shown = [Experiment("main 6ac1cf3", [], scores), Experiment("an-experiment-with-a-long-name", many, scores),
             Experiment("queued-one", ["generator.lambda=0.1"], {}, "queued")]
    text = table(shown, WIDTH)
    _check_width(text)
    assert "(queued)" in text and "seeds=[0, 1, 2]" in text and "…" in text


def test_experiments_of_dvc_json_compare_each_experiment_with_its_commit():
    def entry(rev, name, n, metrics=True, exps=None):
        data = {"params": {"params.yaml": {"data": {"generator": {"num_primitives": n}, "seeds": [0]}}},
                "metrics": {"metrics/zero_shot.json": {"data": {"a.pq_hm.mean": 0.5, "a.ausuc.mean": 0.25}} if metrics
                            else {"error": {"type": "FileNotFoundError", "msg": "gone"}}}}
        return {"rev": rev, "name": name, "data": data, "error": None, "experiments": exps}

    exp = {"revs": [entry("e1", "exp-1", 400)], "executor": None, "name": "exp-1"}
    shown = [entry("workspace", None, 200), entry("abcdef012", "main", 200, exps=[exp])]
    got = experiments(shown)
    assert [(x.name, x.changed) for x in got] == [("main abcdef0", []), ("exp-1", ["generator.num_primitives=400"])]
    assert got[1].scores == {"a": {"pq_hm": (0.5, None), "ausuc": (0.25, None)}}
    shown[0] = entry("workspace", None, 300, metrics=False)  # uncommitted params, not run yet
    ws = experiments(shown)[0]
    assert (ws.name, ws.changed, ws.scores, ws.note) == ("workspace", ["generator.num_primitives=300"], {}, "not run")


def test_a_generator_sweep_re_trains_only_the_rows_that_read_the_key(tmp_path):
    """In a copy of the project with the generator stages' inputs and outputs faked and recorded:
    after `generator.num_primitives=400`, the row configs are rewritten (stage generator_config) and
    `dvc status` reports the primitive row's train_generator changed, the GMMN row's not."""
    from dvc.utils.hydra import apply_overrides

    env = dict(subprocess_env(), PYTHONPATH=str(ROOT), DVC_NO_ANALYTICS="1")
    copy_project(tmp_path)
    _run(["git", "init", "-q"], tmp_path, env)
    for path in ("data/features/s0/train_seen/rows", "data/embed/classes.parquet", "data/segmenter/s0/model.pt",
                 "data/generators/gmmn-s0.pt", "data/generators/primitive-s0.pt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    configs = ["generator_config@gmmn", "generator_config@primitive"]
    trains = ["train_generator@gmmn-0", "train_generator@primitive-0"]
    _run(DVC + ["repro", "--single-item", *configs], tmp_path, env)
    _run(DVC + ["commit", "-f", *trains], tmp_path, env)
    apply_overrides(tmp_path / "params.yaml", ["generator.num_primitives=400"])
    out = _run(DVC + ["repro", "--single-item", *configs], tmp_path, env)
    assert "Running stage 'generator_config@gmmn'" in out and "Running stage 'generator_config@primitive'" in out
    status = _run(DVC + ["status", *trains, "--json"], tmp_path, env)
    changed = json.loads(status[status.index("{"):status.rindex("}") + 1])
    assert list(changed) == ["train_generator@primitive-0"], changed
    assert "data/generator_configs/primitive.json" in json.dumps(changed)
