"""The root pipeline's wiring: params sections, stage scripts, and sweep isolation."""

from pathlib import Path

import yaml

from tests.conftest import ROOT

UPSTREAM = ("synth", "split", "embed", "train_segmenter", "dump_features", "eval_segmenter")


def _stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_reads_an_existing_section_and_script():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, st in _stages().items():
        body = st.get("do", st)
        for p in body.get("params", []):
            assert p in params, (name, p)
        script = body["cmd"].split()[1]
        assert (ROOT / script).exists(), (name, script)
        assert script in body["deps"], f"{name}: its script is not a dependency"


def test_generator_sweep_leaves_segmenter_and_dump_cached():
    """dvc exp run -S generator.X=... re-runs only what reads the generator section or its outputs."""
    for name in UPSTREAM:
        body = _stages()[name].get("do", _stages()[name])
        assert "generator" not in body.get("params", [])
        assert not any("generators" in d or "synthetic" in d for d in body["deps"])


def test_dvc_config_has_analytics_off():
    assert "analytics = false" in (ROOT / ".dvc" / "config").read_text()


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text().split("\n")
    blocks = [i for i, line in enumerate(text[:12]) if line.startswith("```bash")]
    assert len(blocks) == 2
    assert "dvc repro" in text[blocks[0] + 1] and "pytest" in text[blocks[1] + 1]
    assert text[blocks[1] + 1] in Path(ROOT / ".ci" / "run").read_text()
