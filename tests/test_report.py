"""The ablation report over seeds: mean ± sample std per cell, headline DVC metric, clear errors."""

import json

import pytest

from zeroseg.errors import DataError
from zeroseg.report import HEADLINE, TASKS, write_report


def _row(tmp_path, stem, seed, **vals):
    m = {f"{t}_{p}": 0.5 for t in TASKS for p in ("seen", "unseen", "hm")}
    m.update(vals)
    (tmp_path / "rows").mkdir(exist_ok=True)
    (tmp_path / "rows" / f"{stem}-s{seed}.json").write_text(json.dumps(m))


def test_mean_and_sample_std_over_seeds(tmp_path):
    for seed, pq in ((0, 0.2), (1, 0.4), (2, 0.9)):
        _row(tmp_path, "pading", seed, pq_hm=pq, map50_unseen=None if seed == 1 else 0.3)
        _row(tmp_path, "projection", seed)
    head = write_report(tmp_path / "rows", ["projection", "pading"], [0, 1, 2], tmp_path / "m.json",
                        tmp_path / "full.json", tmp_path / "t.md")
    assert head["seeds"] == 3
    assert head["pading.pq_hm.mean"] == pytest.approx(0.5)
    assert head["pading.pq_hm.std"] == pytest.approx(((0.09 + 0.01 + 0.16) / 2) ** 0.5)  # ddof 1
    assert head["projection.pq_hm.std"] == 0.0
    assert set(head) == {"seeds"} | {f"{r}.{k}.{s}" for r in ("projection", "pading") for k in HEADLINE for s in ("mean", "std")}
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["pading.map50_unseen.mean"] is None  # absent in one seed: absent, never averaged over the others
    assert full["pading.pq_hm.s2"] == 0.9 and full["seeds"] == [0, 1, 2]
    md = (tmp_path / "t.md").read_text()
    assert "| pading | 50.0 ± 0.0 / 50.0 ± 0.0 / 50.0 ± 36.1 |" in md and "over 3 seed(s)" in md
    assert md.index("| projection |") < md.index("| pading |")  # Table 1's order, not the params order


def test_one_seed_has_no_std_and_missing_files_are_named(tmp_path):
    _row(tmp_path, "pading", 0)
    _row(tmp_path, "projection", 0)
    head = write_report(tmp_path / "rows", ["pading", "projection"], [0], tmp_path / "m.json", tmp_path / "f.json", tmp_path / "t.md")
    assert head["pading.pq_hm.std"] is None and head["pading.pq_hm.mean"] == 0.5
    with pytest.raises(DataError, match=r"row 'projection' missing: .*projection-s1.json"):
        write_report(tmp_path / "rows", ["pading", "projection"], [0, 1], tmp_path / "m.json", tmp_path / "f.json", tmp_path / "t.md")
    with pytest.raises(DataError, match="unknown ablation row"):
        write_report(tmp_path / "rows", ["pading", "projection", "clip"], [0], tmp_path / "m.json", tmp_path / "f.json", tmp_path / "t.md")


def test_readme_table_is_the_committed_three_seed_report():
    """The README's results table is the report of `dvc exp run -S 'seeds=[0,1,2]'`, not retyped."""
    from tests.conftest import ROOT

    rows = [line for line in (ROOT / "metrics/seeds-0-1-2/zero_shot.md").read_text().split("\n") if line.startswith("| ")]
    assert len(rows) == 7 and "over 3 seed(s)" in (ROOT / "metrics/seeds-0-1-2/zero_shot.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert all(row in readme for row in rows)
