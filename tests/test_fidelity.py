"""Generator fidelity: feature-level GZSL accuracy, MMD, placement ratio, the stage function."""

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError, DataError
from zeroseg.evaluate.fidelity import FidelityConfig, feature_gzsl, generator_fidelity, mmd2, placement_ratio
from zeroseg.features.store import ShardWriter, finalize_store
from zeroseg.head.model import Head

SEEN, UNSEEN = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]


def _clusters(sep, n_train=300, n_test=100, dim=8, seed=0):
    """Gaussian clusters (unit variance) of the 10 classes: (train x, y), (test x, y)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim)) * sep

    def draw(m):
        y = np.repeat(np.arange(10), m)
        return centres[y] + rng.normal(size=(len(y), dim)), y

    return draw(n_train), draw(n_test)


def _gzsl(train, test, seed=0):
    (x, y), (tx, ty) = train, test
    s = np.isin(ty, SEEN)
    return feature_gzsl((x, y), (tx[s], ty[s]), (tx[~s], ty[~s]), SEEN, UNSEEN, seed)


def test_separable_features_score_one():
    res = _gzsl(*_clusters(sep=20.0, n_train=60, n_test=30))
    assert (res["seen"], res["unseen"], res["hm"]) == (1.0, 1.0, 1.0)
    assert set(res["per_class"]) == set(range(10)) and res["per_class"][7] == {"acc": 1.0, "n": 30}


def test_shuffled_labels_score_chance():
    train, test = _clusters(sep=1.0)
    informed = _gzsl(train, test)
    assert informed["seen"] > 0.6 and informed["unseen"] > 0.6  # the features do carry the class
    x, y = train
    res = _gzsl((x, np.random.default_rng(100).permutation(y)), test)
    overall = (res["seen"] + res["unseen"]) / 2  # 5 + 5 classes: the mean over all 10
    assert abs(overall - 0.1) < 0.05 and res["seen"] < 0.25 and res["unseen"] < 0.25


def test_misplaced_synthetic_features_score_zero():
    (x, y), test = _clusters(sep=20.0, n_train=60, n_test=30)
    swapped = y.copy()  # the synthetic features of each unseen class sit on another unseen class's cluster
    perm = {5: 6, 6: 7, 7: 8, 8: 9, 9: 5}
    for c, wrong in perm.items():
        swapped[y == c] = wrong
    res = _gzsl((x, swapped), test)
    assert res["seen"] == 1.0 and res["unseen"] == 0.0 and res["hm"] == 0.0


@pytest.mark.parametrize("case, message", [
    ("shape", "dim 3"), ("nan", "non-finite"), ("absent", "no training features"), ("empty", "empty"),
    ("wrong_split", "not unseen ids"),
])
def test_feature_gzsl_validates(case, message):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)), np.repeat([0, 1, 5, 6], 10)
    ts_x, ts_y, tu_x, tu_y = x[:20], y[:20], x[20:], y[20:]
    if case == "shape":
        tu_x = tu_x[:, :3]
    elif case == "nan":
        ts_x = ts_x.copy()
        ts_x[3, 1] = np.nan
    elif case == "absent":
        tu_y = np.full(20, 7)
    elif case == "empty":
        tu_x, tu_y = tu_x[:0], tu_y[:0]
    elif case == "wrong_split":
        tu_y = np.full(20, 1)
    with pytest.raises(DataError, match=message):
        feature_gzsl((x, y), (ts_x, ts_y), (tu_x, tu_y), [0, 1], [5, 6, 7] if case == "absent" else [5, 6])


def test_mmd2():
    rng = np.random.default_rng(0)
    x, same, shifted = rng.normal(size=(300, 6)), rng.normal(size=(300, 6)), rng.normal(size=(300, 6)) + 1.0
    assert mmd2(x, x.copy()) == 0.0
    assert mmd2(x, shifted) > 5 * mmd2(x, same) > 0
    assert mmd2(x, shifted[:150], max_samples=100, seed=3) == mmd2(shifted[:150], x, max_samples=100, seed=3)
    assert mmd2(x, shifted, seed=1) == mmd2(x, shifted, seed=1)  # seeded subsampling


def test_placement_ratio():
    seen_means = np.array([[0.0, 0.0], [10.0, 0.0]])
    # real unseen mean at (4, 3): nearest seen mean (0, 0) at distance 5; synthetic 1 away
    assert placement_ratio(np.array([4.0, 4.0]), np.array([4.0, 3.0]), seen_means) == pytest.approx(0.2)
    with pytest.raises(DataError, match="shapes"):
        placement_ratio(np.zeros(3), np.zeros(2), seen_means)


def test_config_validates():
    with pytest.raises(ConfigError, match="fidelity.holdout"):
        FidelityConfig(holdout=1.0)


# ---- the stage function on tiny stores ----------------------------------------------------

DIM = 8
CENTRE = {c: 10.0 * np.eye(DIM)[c - 1] for c in (1, 2, 3, 4, 5)}  # seen 1, 2, 3; unseen 4, 5
NAMES = {1: "red circle", 2: "red square", 3: "green circle", 4: "blue square", 5: "blue circle"}


def _write(path, images, meta):
    """images: [(image_id, features (Q, DIM), labels (Q,), mask_iou (Q,))] -> a finished store."""
    tmp = path.with_name(f".{path.name}.tmp")
    w = ShardWriter(tmp, "rank-000", DIM, "float32")
    for i, f, lab, iou in images:
        q = len(lab)
        w.add_image(i, f.astype(np.float32),
                    {"label": np.asarray(lab, np.int32), "mask_iou": np.asarray(iou, np.float32),
                                              "score": np.ones(q, np.float32),
                                              "query_index": np.arange(q, dtype=np.int16)})
    w.close()
    finalize_store(tmp, path, dict(meta, dim=DIM))
    return path


def _stores(tmp_path, synth_classes=(1, 2, 3, 4, 5)):
    rng = np.random.default_rng(0)
    noise = lambda n: rng.normal(scale=0.3, size=(n, DIM))  # noqa: E731
    seen = []
    for i in range(30):  # per image: one good match, one poor match (IoU 0.2: dropped), two no-object
        c = 1 + i % 3
        f = np.stack([CENTRE[c], CENTRE[c], np.zeros(DIM), np.zeros(DIM)]) + noise(4)
        seen.append((i, f, [c, c, -1, -1], [0.9, 0.2, 0.0, 0.0]))
    unseen = []
    for i in range(16):  # 8 images of class 4, 8 of class 5 (two of whose queries carry a "no-object" tag)
        c = 4 + i % 2
        f = np.stack([CENTRE[c], CENTRE[1], np.zeros(DIM)]) + noise(3)
        if c == 5 and i >= 12:
            f[0, 7] += 20.0
        unseen.append((100 + i, f, [c, 1, -1], [0.8, 0.9, 0.0]))
    synth = [(c, CENTRE[c] + noise(20), [c] * 20, [1.0] * 20) for c in synth_classes]
    return (_write(tmp_path / "seen", seen, {}), _write(tmp_path / "unseen", unseen, {}),
            _write(tmp_path / "synth", synth, {"synthetic": True, "seen_ids": [1, 2, 3], "unseen_ids": [4, 5]}))


def _head():
    """Nearest-axis head over classes 1..5 + no-object (the no-object output reads dim 7)."""
    w = torch.cat([torch.eye(DIM)[:5], torch.eye(DIM)[7:8]])
    return Head(w, torch.zeros(6), [1, 2, 3, 4, 5], [True] * 5)


def test_generator_fidelity_end_to_end(tmp_path):
    seen, unseen, synth = _stores(tmp_path)
    flat, table = generator_fidelity(FidelityConfig(holdout=0.2), seen, unseen, synth, head=_head(), names=NAMES)
    assert set(flat) == {"feat_acc_seen", "feat_acc_unseen", "feat_acc_hm", "mmd_unseen"}
    # the five centres are 10 apart against noise 0.3 and the synthetic unseen features sit on the real
    # centres: every held-out real feature is classified right (the two class-5 rows tagged on dim 7,
    # which no centre uses, too): accuracy 1 on both sides (the seeded holdout: 1 + 2 + 3 seen rows)
    assert (flat["feat_acc_seen"], flat["feat_acc_unseen"], flat["feat_acc_hm"]) == (1.0, 1.0, 1.0)
    assert table["acc"].tolist() == [1.0] * 5 and table["n_test"].tolist() == [1, 2, 3, 8, 8]
    assert list(table.columns) == ["category_id", "name", "split", "acc", "n_test", "mmd", "ratio", "predicted"]
    assert table["category_id"].tolist() == [1, 2, 3, 4, 5]
    assert table["split"].tolist() == ["seen"] * 3 + ["unseen"] * 2
    assert table["name"].tolist() == [NAMES[c] for c in (1, 2, 3, 4, 5)]
    # one good match per seen image: 20% of 30 images held out -> 6 test rows (the IoU-0.2 ones are dropped)
    assert table.loc[table.split == "seen", "n_test"].sum() == 6
    assert table.loc[table.split == "unseen", "n_test"].tolist() == [8, 8]
    u = table[table.split == "unseen"].set_index("category_id")
    assert u.loc[4, "predicted"] == "blue square 100%"
    assert u.loc[5, "predicted"] == "blue circle 75%, no-object 25%"
    assert (u["ratio"] < 0.5).all() and (u["mmd"] >= 0).all()
    assert flat["mmd_unseen"] == pytest.approx(u["mmd"].mean())
    assert table.loc[table.split == "seen", "mmd"].isna().all()
    # without head or names: no predicted column, names are the ids
    _, plain = generator_fidelity(FidelityConfig(top_predictions=1), seen, unseen, synth)
    assert "predicted" not in plain.columns and plain["name"].tolist() == ["1", "2", "3", "4", "5"]


def test_generator_fidelity_top_predictions(tmp_path):
    seen, unseen, synth = _stores(tmp_path)
    _, table = generator_fidelity(FidelityConfig(top_predictions=1), seen, unseen, synth, head=_head(), names=NAMES)
    assert table.set_index("category_id").loc[5, "predicted"] == "blue circle 75%"


def test_generator_fidelity_synthetic_store_missing_unseen_class(tmp_path):
    seen, unseen, synth = _stores(tmp_path, synth_classes=(1, 2, 3, 4))
    with pytest.raises(DataError, match=r"synth: no synthetic features of the unseen classes \[5\]"):
        generator_fidelity(FidelityConfig(), seen, unseen, synth)


def test_generator_fidelity_no_real_unseen(tmp_path):
    seen, unseen, synth = _stores(tmp_path)
    with pytest.raises(DataError, match="unseen: no real features of the unseen classes"):
        generator_fidelity(FidelityConfig(min_iou=0.85), seen, unseen, synth)


def test_cli_fidelity_prints_and_writes_the_table(tmp_path):
    """`zeroseg fidelity` calls the stage's function; its JSON is strict (no NaN tokens)."""
    import json

    from typer.testing import CliRunner

    from zeroseg.cli import app

    seen, unseen, synth = _stores(tmp_path)
    cats = [{"id": c, "name": n, "isthing": 1, "split": "unseen" if c > 3 else "seen"} for c, n in NAMES.items()]
    (tmp_path / "all.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    (tmp_path / "params.yaml").write_text("fidelity:\n  holdout: 0.2\n")
    r = CliRunner().invoke(app, ["fidelity", str(seen), str(unseen), str(synth), str(tmp_path / "all.json"),
                                 "--params", str(tmp_path / "params.yaml"), "--json", str(tmp_path / "f.json")])
    assert r.exit_code == 0, r.output
    assert "blue square" in r.output and "feat_acc_hm" in r.output
    out = json.loads((tmp_path / "f.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert out["feat_acc_seen"] == 1.0 and out["per_class"][0]["mmd"] is None
    bad = CliRunner().invoke(app, ["fidelity", str(seen), str(tmp_path / "nope"), str(synth),
                                   str(tmp_path / "all.json"),
                                   "--params", str(tmp_path / "params.yaml")])
    assert bad.exit_code == 2 and "nope" in bad.output
