"""The root pipeline's wiring: params sections, stage scripts, and sweep isolation."""

from pathlib import Path

import yaml

from tests.conftest import ROOT

UPSTREAM = ("benchmark", "split", "embed", "train_segmenter", "dump_features", "eval_segmenter")


def _stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_reads_an_existing_section_and_script():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, st in _stages().items():
        body = st.get("do", st)
        for p in body.get("params", []):
            assert p.split(".")[0] in params, (name, p)
        script = body["cmd"].split()[1]
        assert (ROOT / script).exists(), (name, script)
        assert script in body["deps"], f"{name}: its script is not a dependency"


def test_generator_sweep_leaves_segmenter_and_dump_cached():
    """dvc exp run -S generator.X=... re-runs only what reads the generator section or its outputs."""
    for name in UPSTREAM:
        body = _stages()[name].get("do", _stages()[name])
        assert "generator" not in body.get("params", [])
        assert not any("generators" in d or "synthetic" in d for d in body["deps"])


def test_inference_code_is_a_dependency_of_evaluation_only():
    """Editing the inference rules re-runs the evaluations, never the segmenter or the dumps."""
    stages = _stages()
    for name in UPSTREAM[:-1]:
        body = stages[name].get("do", stages[name])
        assert not any(d.startswith("zeroseg/evaluate") for d in body["deps"]), name
    for name in ("evaluate", "evaluate_baseline", "eval_segmenter", "report"):
        assert "zeroseg/evaluate/inference.py" in stages[name].get("do", stages[name])["deps"], name


def test_seeds_multiply_every_random_stage():
    """`dvc exp run -S 'seeds=[0,1,2]'` trains one segmenter per seed (its dumps, its checks and every
    row of that seed read it), so the error bars include the segmenter's variance; the world,
    the split and the class-name embeddings are drawn once."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["seeds"] == [0]  # the default run is one seed; the README names the 3-seed command
    assert "seed" not in params["segmenter"]  # the segmenter's seed is the run's (--seed), not a section key
    stages = _stages()
    for name in ("train_segmenter", "dump_features", "eval_segmenter", "ceilings", "train_generator", "synthesize",
                 "retrain_classifier", "evaluate", "fidelity", "retrain_baseline", "evaluate_baseline"):
        assert stages[name]["matrix"]["seed"] == "${seeds}", name
    assert "--seed ${item.seed}" in stages["train_segmenter"]["cmd"]
    for name in ("train_generator", "retrain_classifier", "retrain_baseline", "evaluate", "fidelity", "ceilings"):
        body = stages[name].get("do", stages[name])
        reads = [d for d in body["deps"] if d.startswith(("data/segmenter", "data/features"))]
        assert reads and all("s${item.seed}" in d for d in reads), (name, reads)
    for name in ("benchmark", "split", "embed"):
        assert "matrix" not in stages[name] and "foreach" not in stages[name], name
    assert {"seeds", "generators", "baselines"} <= set(stages["report"]["params"])


def test_dvc_config_has_analytics_off():
    assert "analytics = false" in (ROOT / ".dvc" / "config").read_text()


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text().split("\n")
    blocks = [i for i, line in enumerate(text[:12]) if line.startswith("```bash")]
    assert len(blocks) == 2
    assert "dvc repro" in text[blocks[0] + 1] and "pytest" in text[blocks[1] + 1]
    assert text[blocks[1] + 1] in Path(ROOT / ".ci" / "run").read_text()


def test_each_generator_row_trains_from_its_own_config_file():
    """generator_config@ROW reads the params sections; train_generator reads only the file it
    writes (the keys the row reads), so a sweep of a key the row does not read leaves its training
    cached (run with DVC in tests/test_sweeps.py)."""
    cfg, train = _stages()["generator_config"], _stages()["train_generator"]
    assert cfg["params"] == ["generator", "generators.${item.row}", "classifier"]
    assert cfg["outs"] == ["data/generator_configs/${item.row}.json"]
    assert "params" not in train and cfg["outs"][0] in train["deps"] and f"--config {cfg['outs'][0]}" in train["cmd"]
