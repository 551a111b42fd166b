"""The seen offset γ (calibrated stacking), the curve's γ grid and the area under the
seen–unseen curve, on hand-made cases."""

import math

import numpy as np
import pytest
import torch

from zeroseg.evaluate.calibration import ausuc, curve_offsets, offset_logits, seen_columns
from zeroseg.evaluate.inference import panoptic_inference

CLASS_IDS = [1, 2, 3, 4]  # 1, 2 seen; 3, 4 unseen
UNSEEN = {3, 4}


def test_seen_columns_mark_seen_outputs_and_never_no_object():
    assert seen_columns(CLASS_IDS, UNSEEN).tolist() == [True, True, False, False, False]


def test_offset_lowers_one_side_and_never_touches_no_object():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.25]])
    seen = seen_columns(CLASS_IDS, UNSEEN)
    assert torch.equal(offset_logits(logits, seen, 0.0), logits)
    up = offset_logits(logits, seen, 1.5)
    assert up.tolist() == [[0.5, -0.5, 0.5, -1.0, 0.25]]
    down = offset_logits(logits, seen, -2.0)
    assert down.tolist() == [[2.0, 1.0, -1.5, -3.0, 0.25]]
    assert offset_logits(logits, seen, math.inf)[0, :2].tolist() == [-math.inf, -math.inf]
    assert offset_logits(logits, seen, -math.inf)[0, 2:4].tolist() == [-math.inf, -math.inf]
    assert logits.tolist() == [[2.0, 1.0, 0.5, -1.0, 0.25]]  # the input is not modified
    only_seen = torch.tensor([True, True, True, True, False])  # the segmenter's own head: nothing to calibrate
    assert torch.equal(offset_logits(logits, only_seen, 5.0), logits)


def _predicted_categories(gamma: float, seed: int) -> set[int]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, len(CLASS_IDS) + 1, generator=g) * 3
    masks = torch.full((8, 16, 16), -8.0)
    for q in range(8):  # disjoint blocks: every confident query paints its own segment
        masks[q, 4 * (q // 2):4 * (q // 2) + 4, 8 * (q % 2):8 * (q % 2) + 8] = 8.0
    probs = offset_logits(logits, seen_columns(CLASS_IDS, UNSEEN), gamma).softmax(-1)
    _, segs = panoptic_inference(probs, masks, CLASS_IDS, [True, True, True, False], object_threshold=0.0)
    return {s["category_id"] for s in segs}


@pytest.mark.parametrize("seed", range(5))
def test_large_offsets_predict_one_side_only(seed):
    """γ → +∞ predicts no seen class, γ → −∞ no unseen class (the finite γ large enough acts as the limit)."""
    for gamma in (1e4, math.inf):
        assert not _predicted_categories(gamma, seed) & {1, 2}
    for gamma in (-1e4, -math.inf):
        assert not _predicted_categories(gamma, seed) & UNSEEN
    both = set().union(*(_predicted_categories(0.0, s) for s in range(5)))
    assert both & {1, 2} and both & UNSEEN  # ... while γ = 0 predicts both sides on these draws


def test_grid_is_the_flip_offsets_of_object_queries_plus_ends():
    seen = seen_columns(CLASS_IDS, UNSEEN)
    # best seen - best unseen: 1.0, -2.0, 3.0; the 4th query is no-object at both ends
    logits = torch.tensor([[5.0, 0.0, 4.0, 0.0, -5.0],
                           [2.0, 1.0, 4.0, 0.0, -5.0],
                           [6.0, 0.0, 3.0, 0.0, -5.0],
                           [0.0, 0.0, 50.0, 0.0, 20.0]])
    logits[3] = torch.tensor([0.0, 0.0, 9.0, 0.0, 20.0])  # flip -9, never an object
    grid = curve_offsets(logits, seen, points=3, object_threshold=0.5, include=[0.0])
    assert grid == [-math.inf, -2.0, 0.0, 1.0, 3.0, math.inf]
    assert curve_offsets(logits, seen, points=0, object_threshold=0.5) == [-math.inf, math.inf]


def test_area_of_known_curves():
    assert ausuc([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.5)  # straight line from (0, 1) to (1, 0)
    assert ausuc([1.0, 1.0, 0.0], [0.0, 1.0, 1.0]) == pytest.approx(1.0)  # the perfect head: a square
    assert ausuc([0.6, 0.6, 0.4, 0.0], [0.0, 0.2, 0.5, 0.5]) == pytest.approx(0.12 + 0.15)
    # unseen PQ that falls back along the curve counts negatively (the enclosed area, not more)
    assert ausuc([1.0, 0.5, 0.5, 0.0], [0.0, 0.6, 0.4, 0.4]) == pytest.approx(0.45 - 0.1)
    with pytest.raises(ValueError):
        ausuc([1.0], [0.0])
    u = np.linspace(0, 1, 11)
    assert ausuc(1 - u, u) == pytest.approx(0.5, abs=1e-12)  # a straight line: the trapezoids are exact
    # seen = 1 - unseen², 10 steps of h = 0.1: the trapezoid rule's error on a parabola is exact,
    # ∫(1 - u²) du - h² (b - a) f''/12 = 2/3 - 0.01 * 2/12
    assert ausuc(1 - u**2, u) == pytest.approx(2 / 3 - 0.01 / 6, abs=1e-12)
    # γ order runs from unseen 0 to unseen max: the same points reversed give the negated area
    assert ausuc((1 - u**2)[::-1], u[::-1]) == pytest.approx(-(2 / 3 - 0.01 / 6), abs=1e-12)


def test_curve_scores_every_offset_of_its_grid_through_the_tables_entry():
    """Two queries paint the two halves of one image (a seen and an unseen ground-truth segment);
    each prefers its own half's class by 1 logit. γ = 0 gets both right, γ = −∞ calls the right
    half seen (seen PQ 2/3: one TP, one FP), γ = +∞ calls the left half unseen (unseen PQ 2/3)."""
    from types import SimpleNamespace

    from zeroseg.data.panoptic import Category
    from zeroseg.evaluate.curve import CurveScorer
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.head.model import Head

    logits = torch.tensor([[5.0, -9.0, 4.0, -9.0, -5.0], [4.0, -9.0, 5.0, -9.0, -5.0]])
    head = Head(torch.eye(5), torch.zeros(5), CLASS_IDS, [True] * 4)  # logits = the stored features
    store = SimpleNamespace(path="store", iter_sequential=lambda: iter([(logits.numpy(), None)]))
    gt = SimpleNamespace(categories={c: Category(c, f"c{c}", True, {}) for c in CLASS_IDS})
    scorer = CurveScorer(store, head, gt, UNSEEN, InferenceConfig(object_threshold=0.0, curve_points=0))
    assert scorer.grid == [-math.inf, 0.0, math.inf]
    masks = torch.full((2, 8, 8), -8.0)
    masks[0, :, :4], masks[1, :, 4:] = 8.0, 8.0
    gt_ids = np.where(np.arange(8)[None, :] < 4, 1, 2).repeat(8, 0)
    segments = [{"id": s, "category_id": c, "iscrowd": 0, "area": 32} for s, c in ((1, 1), (2, 3))]
    scorer.add(0, gt_ids, segments, head.logits(logits), masks, masks.sigmoid())
    frame = scorer.frame()
    assert np.allclose(frame[["pq_seen", "pq_unseen"]].values, [[2 / 3, 0.0], [1.0, 1.0], [0.0, 2 / 3]])
