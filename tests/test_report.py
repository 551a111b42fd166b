"""The ablation report over seeds: mean ± sample std per cell, headline DVC metric, clear errors."""

import json

import pandas as pd
import pytest

from zeroseg.errors import DataError
from zeroseg.report import HEADLINE, TASKS, Ablation, ReportInputs, ReportOutputs, write_report


def _report(tmp_path, rows, seeds, generators=(), **run):
    """write_report of the rows' metrics in tmp_path/rows (+ ``run``: other ReportInputs fields)."""
    return write_report(ReportInputs(tmp_path / "rows", **run), Ablation(rows, seeds, list(generators)),
                        ReportOutputs(tmp_path / "m.json", tmp_path / "full.json", tmp_path / "t.md"))


def _row(tmp_path, stem, seed, **vals):
    m = {f"{t}_{p}": 0.5 for t in TASKS for p in ("seen", "unseen", "hm")}
    m.update(vals)
    (tmp_path / "rows").mkdir(exist_ok=True)
    (tmp_path / "rows" / f"{stem}-s{seed}.json").write_text(json.dumps(m))


def test_mean_and_sample_std_over_seeds(tmp_path):
    for seed, pq in ((0, 0.2), (1, 0.4), (2, 0.9)):
        _row(tmp_path, "pading", seed, pq_hm=pq, map50_unseen=None if seed == 1 else 0.3)
        _row(tmp_path, "projection", seed)
    head = _report(tmp_path, ["projection", "pading"], [0, 1, 2])
    assert head["seeds"] == 3
    assert head["pading.pq_hm.mean"] == pytest.approx(0.5)
    assert head["pading.pq_hm.std"] == pytest.approx(((0.09 + 0.01 + 0.16) / 2) ** 0.5)  # ddof 1
    assert head["projection.pq_hm.std"] == 0.0
    # rows without curve or fidelity metrics have none of those keys (never a column of nulls)
    tasks_only = ("pq_hm", "map50_hm", "miou_hm")
    assert set(head) == {"seeds"} | {f"{r}.{k}.{s}" for r in ("projection",
                                                              "pading") for k in tasks_only for s in ("mean", "std")}
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["pading.map50_unseen.mean"] is None  # absent in one seed: absent, never averaged over the others
    assert full["pading.pq_hm.s2"] == 0.9 and full["seeds"] == [0, 1, 2]
    md = (tmp_path / "t.md").read_text()
    assert "| pading | 50.0 ± 0.0 / 50.0 ± 0.0 / 50.0 ± 36.1 |" in md and "over 3 seed(s)" in md
    assert md.index("| projection |") < md.index("| pading |")  # the order of params `heads`
    _report(tmp_path, ["pading", "projection"], [0, 1, 2])
    md = (tmp_path / "t.md").read_text()
    assert md.index("| pading |") < md.index("| projection |")


def test_one_seed_has_no_std_and_missing_files_are_named(tmp_path):
    _row(tmp_path, "pading", 0)
    _row(tmp_path, "projection", 0)
    head = _report(tmp_path, ["pading", "projection"], [0])
    assert head["pading.pq_hm.std"] is None and head["pading.pq_hm.mean"] == 0.5
    with pytest.raises(DataError, match=r"row 'pading' missing: .*pading-s1.json"):
        _report(tmp_path, ["pading", "projection"], [0, 1])
    with pytest.raises(DataError, match=r"row 'clip' missing: .*clip-s0.json"):
        _report(tmp_path, ["pading", "projection", "clip"], [0])
    with pytest.raises(DataError, match="listed twice"):
        _report(tmp_path, ["pading", "projection", "pading"], [0])


@pytest.mark.parametrize("folder", ["seeds-0-1-2", "seeds-0-1-2-attributes"])
def test_results_page_tables_are_the_committed_three_seed_reports(folder):
    """docs/results.md's tables (ablation and calibration-free, for each semantic source) are
    the reports of the documented `dvc exp run -S 'seeds=[0,1,2]' ...` commands, not retyped."""
    from tests.conftest import ROOT

    md = (ROOT / "metrics" / folder / "zero_shot.md").read_text()
    assert "over 3 seed(s)" in md
    rows = [line for line in md.split("## Unseen classes")[0].split("\n") if line.startswith("| ")]
    assert len(rows) >= 16  # at least the ablation and calibration-free tables (a header and seven rows each)
    page = (ROOT / "docs" / "results.md").read_text().split("\n")
    assert [row for row in rows if row not in page] == []


def test_curve_area_and_feature_level_scores_over_seeds(tmp_path):
    """Every row brings its curve's area; the generator rows (and only they) their feature-level
    score from the fidelity folder; the first seed's unseen-class diagnostics go into the markdown."""
    fid, diag = tmp_path / "fid", tmp_path / "diag"
    fid.mkdir()
    diag.mkdir()
    for seed, (area, acc) in enumerate(((0.10, 0.2), (0.14, 0.4))):
        _row(tmp_path, "projection", seed, ausuc=0.05, curve_pq_seen_max=0.6, curve_pq_unseen_max=0.2,
             curve_pq_hm_max=0.25)
        _row(tmp_path, "pading", seed, ausuc=area, curve_pq_seen_max=0.6, curve_pq_unseen_max=0.3, curve_pq_hm_max=0.3)
        (fid / f"pading-s{seed}.json").write_text(json.dumps({"feat_acc_seen": 0.8, "feat_acc_unseen": acc,
                                                              "feat_acc_hm": acc, "mmd_unseen": 0.5}))
    pd.DataFrame([{"category_id": 3, "name": "red triangle", "split": "unseen", "acc": 0.25, "n_test": 8, "mmd": 0.3,
                   "ratio": 1.2, "predicted": "red square 60%, red triangle 40%"},
                  {"category_id": 1, "name": "red circle", "split": "seen", "acc": 1.0, "n_test": 4,
                   "mmd": float("nan"),
                   "ratio": float("nan"), "predicted": ""}]).to_parquet(diag / "pading-s0.parquet")
    head = _report(tmp_path, ["projection", "pading"], [0, 1], ["pading"], fidelity_dir=fid, diagnostics_dir=diag)
    assert set(HEADLINE) == {"pq_hm", "map50_hm", "miou_hm", "ausuc", "feat_acc_hm"}
    assert head["pading.ausuc.mean"] == pytest.approx(0.12) and head["pading.feat_acc_hm.mean"] == pytest.approx(0.3)
    assert head["projection.ausuc.std"] == 0.0 and "projection.feat_acc_hm.mean" not in head
    md = (tmp_path / "t.md").read_text()
    assert ("| pading | 12.0 ± 2.8 | 60.0 ± 0.0 / 30.0 ± 0.0 | 30.0 ± 0.0 | "
            "80.0 ± 0.0 / 30.0 ± 14.1 / 30.0 ± 14.1 | 50.00 ± 0.00 |") in md
    assert "| projection | 5.0 ± 0.0 | 60.0 ± 0.0 / 20.0 ± 0.0 | 25.0 ± 0.0 | – / – / – | – |" in md
    assert "| pading | red triangle | 25.0 | 30.00 | 1.20 | red square 60%, red triangle 40% |" in md
    assert "red circle" not in md.split("## Unseen classes")[1]
    (fid / "pading-s1.json").unlink()
    with pytest.raises(DataError, match=r"row 'pading' missing: .*fid/pading-s1.json"):
        _report(tmp_path, ["projection", "pading"], [0, 1], ["pading"], fidelity_dir=fid, diagnostics_dir=diag)


def test_pictures_name_the_inputs_they_lack(tmp_path):
    from zeroseg.errors import ConfigError
    from zeroseg.report import ReportConfig, make_pictures

    run = ReportInputs(tmp_path / "rows", per_class_dir=tmp_path, heads_dir=tmp_path)
    lacking = "no synthetic_dir, seen_store, val_store, val_json, val_images, split_all_json"
    with pytest.raises(ConfigError, match=lacking):
        make_pictures(ReportConfig(), run, Ablation(["projection", "pading"], [0]), tmp_path / "plots")


def test_tsne_iterations_below_scikit_learns_minimum_is_refused_by_name():
    from zeroseg.errors import ConfigError
    from zeroseg.report import ReportConfig

    assert ReportConfig(tsne_iterations=250).tsne_iterations == 250
    with pytest.raises(ConfigError, match="report.tsne_iterations"):
        ReportConfig(tsne_iterations=100)
