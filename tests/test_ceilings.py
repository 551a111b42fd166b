"""The transfer checks (zeroseg/evaluate/ceilings.py) on hand-made means and stores."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_fidelity import DIM as FIDELITY_DIM
from tests.test_fidelity import _write
from zeroseg.errors import ConfigError, DataError
from zeroseg.evaluate.ceilings import (
    CeilingsConfig,
    attribute_onehot,
    leave_one_out,
    ncm_accuracy,
    placed_unseen,
    ridge_fit,
    transfer_checks,
)
from zeroseg.evaluate.fidelity import placement_ratio  # the ratio the checks share with the fidelity stage

COLOURS, SHAPES = ("red", "green", "blue"), ("circle", "square", "triangle")


def _additive_world(dim=6, seed=0):
    """Class means exactly additive in (colour, shape): mean = C[colour] + S[shape]."""
    rng = np.random.default_rng(seed)
    col, shp = rng.normal(size=(3, dim)) * 5, rng.normal(size=(3, dim)) * 5
    attrs = [[c, s] for c in COLOURS for s in SHAPES]
    means = np.array([col[COLOURS.index(c)] + shp[SHAPES.index(s)] for c, s in attrs])
    return attrs, means


def test_attribute_onehot_columns():
    x = attribute_onehot([["red", "circle"], ["blue", "circle"], ["red", "square"]])
    # columns sorted by (slot, word): (0 blue) (0 red) (1 circle) (1 square)
    np.testing.assert_array_equal(x, [[0, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1]])


def test_ridge_fit_is_centred_least_squares():
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(20, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    y = x @ w + b
    pred = ridge_fit(x, y, 1e-9)(x[:2])
    np.testing.assert_allclose(pred, y[:2], atol=1e-6)
    # a large λ shrinks the map to the mean of y
    np.testing.assert_allclose(ridge_fit(x, y, 1e9)(x[:2]), np.repeat(y.mean(0)[None], 2, 0), atol=1e-5)


def test_placement_ratio_by_hand():
    real = np.array([0.0, 0.0])
    others = np.array([[3.0, 4.0], [0.0, 2.0]])  # nearest other at distance 2
    assert placement_ratio(np.array([1.0, 0.0]), real, others) == pytest.approx(0.5)
    assert placement_ratio(np.array([0.0, 6.0]), real, others) == pytest.approx(3.0)
    with pytest.raises(DataError, match="placement_ratio"):  # no other class to compare with
        placement_ratio(real, real, others[:0])


def test_leave_one_out_places_an_additive_world_exactly():
    attrs, means = _additive_world()
    ratios = leave_one_out(attribute_onehot(attrs), means, np.ones(9, int), 1e-8)
    assert np.isfinite(ratios).all() and (ratios < 1e-3).all()


def test_leave_one_out_fails_on_arbitrary_means():
    attrs, _ = _additive_world()
    means = np.random.default_rng(3).normal(size=(9, 6)) * 5  # no attribute structure at all
    ratios = leave_one_out(attribute_onehot(attrs), means, np.ones(9, int), 1e-2)
    assert np.median(ratios) > 1.0


def test_leave_one_out_stays_within_a_group():
    attrs, means = _additive_world()
    group = np.array([1] * 8 + [0])  # the last class is alone in its group: no map, no ratio
    far = means.copy()
    far[8] += 1e6  # it would wreck the things' map if it were used
    ratios = leave_one_out(attribute_onehot(attrs), far, group, 1e-8)
    assert np.isnan(ratios[8]) and (ratios[:8] < 1e-3).all()


def test_placed_unseen_uses_only_seen_classes():
    attrs, means = _additive_world()
    desc = attribute_onehot(attrs)
    order = [0, 1, 2, 3, 5, 6, 7, 8, 4]  # unseen: green square, last
    placed = placed_unseen(desc[order], means[order][:8], np.ones(9, int), 8, 1e-8)
    np.testing.assert_allclose(placed[0], means[4], atol=1e-3)


def test_ncm_accuracy_by_hand():
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.array([[1.0, 0.0], [9.0, 0.0], [6.0, 0.0], [0.0, 9.0], [0.0, 4.0]])
    y = np.array([0, 1, 0, 2, 2])
    acc, s = ncm_accuracy(means, x, y, n_seen=2)
    np.testing.assert_allclose(acc, [0.5, 1.0, 0.5])
    assert s["seen"] == pytest.approx(75.0) and s["unseen"] == pytest.approx(50.0)
    assert s["hm"] == pytest.approx(2 * 75 * 50 / 125)
    # a class without a mean never wins
    acc, _ = ncm_accuracy(np.array([[0.0, 0.0], [np.nan, np.nan], [0.0, 10.0]]), x, y, 2)
    assert acc[1] == 0.0


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="ceilings.min_iou"):
        CeilingsConfig(min_iou=1.5)
    with pytest.raises(ConfigError, match="ceilings.ridge_names"):
        CeilingsConfig(ridge_names=0)


# ---- the stage function on hand-made stores ------------------------------------------------

DIM = FIDELITY_DIM  # the stores are written by test_fidelity's writer


def _store(path, rows, classes):
    """rows: [(image_id, features (Q, DIM), labels (Q,), ious (Q,))] -> a finished store."""
    return _write(path, rows, {"classes": classes})


def test_transfer_checks_end_to_end(tmp_path):
    attrs, means = _additive_world(DIM)
    ids = list(range(1, 10))
    unseen = [5]  # green square
    cats = [{"id": c, "name": " ".join(a), "isthing": 1, "attributes": a, "split": "unseen" if c in unseen else "seen"}
            for c, a in zip(ids, attrs)]
    (tmp_path / "all.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    seen_ids = [c for c in ids if c not in unseen]
    rng = np.random.default_rng(0)

    def rows(classes, start, n=6):
        out = []
        for k in range(n):
            for c in classes:
                f = np.stack([means[c - 1], np.zeros(DIM)]) + rng.normal(scale=0.05, size=(2, DIM))
                out.append((start + k * 100 + c, f, [c, -1], [0.9, 0.0]))
        return out

    classes = [{"id": c, "isthing": 1, "name": f"c{c}"} for c in seen_ids]
    seen = _store(tmp_path / "seen", rows(seen_ids, 0), classes)
    uns = _store(tmp_path / "unseen", rows(unseen, 10_000), classes)
    val = _store(tmp_path / "val", rows(ids, 20_000, 3), classes)
    # class-name embeddings: the same one-hot attributes (an ideal semantic source)
    emb = attribute_onehot(attrs)
    table = pa.table({"category_id": ids, "name": [c["name"] for c in cats], "split": [c["split"] for c in cats],
                      "vector": [list(map(float, v)) for v in emb]})
    pq.write_table(table, tmp_path / "emb.parquet")

    res = transfer_checks(CeilingsConfig(ridge_attributes=1e-6, ridge_names=1e-6), seen, uns, val,
                          tmp_path / "emb.parquet", tmp_path / "all.json")
    m = res.metrics
    assert m["seen_classes"] == 8 and m["unseen_classes"] == 1 and m["val_queries"] == 27
    assert m["loo_attr_median"] < 0.05 and m["loo_attr_below_1"] == 1.0
    assert m["unseen_attr_median"] < 0.05 and m["unseen_names_median"] < 0.05
    assert m["ncm_real_seen"] == 100.0 and m["ncm_real_unseen"] == 100.0 and m["ncm_attr_unseen"] == 100.0
    t = res.per_class
    assert isinstance(t, pd.DataFrame) and t["category_id"].tolist() == seen_ids + unseen
    assert t["split"].tolist() == ["seen"] * 8 + ["unseen"] and (t["train_rows"] == 6).all()


def test_class_means_of_some_classes_of_a_mixed_store(tmp_path):
    """The removed images hold seen classes too: the unseen means ignore them."""
    from zeroseg.evaluate.ceilings import class_means
    from zeroseg.features.store import FeatureStore

    f = np.array([[1.0] * DIM, [3.0] * DIM, [5.0] * DIM, [7.0] * DIM])
    st = FeatureStore(_store(tmp_path / "mixed", [(1, f, [2, 9, 9, -1], [0.9, 0.9, 0.3, 0.0])], []))
    means, counts = class_means(st, [9], 0.5, [2, 9])
    np.testing.assert_allclose(means, [[3.0] * DIM])
    assert counts.tolist() == [1]
    with pytest.raises(Exception, match="not classes of this run"):
        class_means(st, [9], 0.5)
