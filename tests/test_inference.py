"""Mask2Former's three inference rules against direct computations of their formulas on small
hand-made cases, and the evaluator on overlapping instances, predicted-only classes and VOID."""

import itertools

import numpy as np
import pytest
import torch

from zeroseg.data.instances import encode_masks
from zeroseg.data.panoptic import Category
from zeroseg.evaluate.inference import instance_inference, panoptic_inference, semantic_inference
from zeroseg.metrics.universal import UniversalEvaluator

CLASS_IDS = [10, 20, 30, 40]  # 30 is stuff
ISTHING = [True, True, False, True]


def _case(seed=0, Q=4, H=6, W=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(Q, len(CLASS_IDS) + 1, generator=g) * 2
    return logits.softmax(-1), torch.randn(Q, H, W, generator=g) * 3


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("seed", range(5))
def test_instance_rule_equals_the_formula(seed):
    probs, masks = _case(seed)
    p, m = probs.numpy().astype(np.float64), masks.numpy().astype(np.float64)
    topk = 7
    # direct: every (query, class) pair, ranked by class probability, the best topk, then things only
    pairs = sorted(((p[q, c], q, c) for q, c in itertools.product(range(p.shape[0]), range(len(CLASS_IDS)))),
                   reverse=True)
    want = []
    for score, q, c in pairs[:topk]:
        if not ISTHING[c]:
            continue
        binary = m[q] > 0
        mean_prob = (_sigmoid(m[q]) * binary).sum() / (binary.sum() + 1e-6)
        want.append((CLASS_IDS[c], score * mean_prob, binary))
    got = instance_inference(probs, masks, CLASS_IDS, ISTHING, topk=topk)
    assert len(got) == len(want)
    order = np.argsort(-got.scores)
    for (cid, score, binary), k in zip(want, order):
        assert got.category_ids[k] == cid
        assert got.scores[k] == pytest.approx(score, rel=1e-5)
        assert (got.masks[k] == binary).all()


def test_instance_rule_takes_several_classes_of_one_query_and_drops_stuff_after_topk():
    probs = torch.tensor([[0.45, 0.40, 0.05, 0.05, 0.05],  # query 0: two thing classes in the top 3
                          [0.02, 0.02, 0.90, 0.03, 0.03],  # query 1: stuff (dropped after the top-k)
                          [0.05, 0.05, 0.05, 0.30, 0.55]])  # query 2: mostly no-object
    masks = torch.full((3, 4, 4), -5.0)
    masks[0, :2] = 2.0
    masks[1, 2:] = 2.0
    masks[2, :, :2] = 1.0
    inst = instance_inference(probs, masks, CLASS_IDS, ISTHING, topk=3)
    # top-3 pairs: (1, 30) 0.90, (0, 10) 0.45, (0, 20) 0.40 -> stuff dropped -> 2 detections of query 0
    assert sorted(inst.category_ids.tolist()) == [10, 20]
    assert all((mk == (masks[0] > 0).numpy()).all() for mk in inst.masks)
    s = float(torch.sigmoid(torch.tensor(2.0)))
    assert sorted(inst.scores.tolist()) == pytest.approx(sorted([0.45 * s * 8 / (8 + 1e-6), 0.40 * s * 8 / (8 + 1e-6)]))
    empty = instance_inference(probs, torch.full((3, 4, 4), -1.0), CLASS_IDS, ISTHING, topk=100)
    assert len(empty) == 9 and (empty.scores == 0).all()  # 3 x 4 pairs, 9 of thing classes, all masks empty


@pytest.mark.parametrize("seed", range(5))
def test_semantic_rule_equals_the_formula(seed):
    probs, masks = _case(seed)
    p, m = probs.numpy().astype(np.float64), masks.numpy().astype(np.float64)
    H, W = m.shape[1:]
    want = np.zeros((H, W), np.int64)
    for y, x in itertools.product(range(H), range(W)):
        per_class = [sum(p[q, c] * _sigmoid(m[q, y, x]) for q in range(p.shape[0])) for c in range(len(CLASS_IDS))]
        want[y, x] = CLASS_IDS[int(np.argmax(per_class))]
    assert (semantic_inference(probs, masks, CLASS_IDS) == want).all()


@pytest.mark.parametrize("seed", range(3))
def test_semantic_rule_skips_only_classes_that_cannot_win(seed):
    """COCO-sized class lists: the classes dominated by an earlier one are skipped, and the result
    equals the argmax over all classes, ties (equal columns, zero mask probabilities) included."""
    g = torch.Generator().manual_seed(seed)
    Q, K = 6, 150
    probs = torch.randn(Q, K + 1, generator=g).mul(3).softmax(-1)
    probs[:, 7] = probs[:, 3]  # a tie: class 3 (earlier) must win wherever both are best
    probs[:, 1] = probs[:, 90] + 0.01  # an early class above a later one
    masks = torch.randn(Q, 40, 30, generator=g) * 4
    masks[:, :5] = -200.0  # sigmoid exactly 0: every class scores 0 there, the first class wins
    ids = list(range(1000, 1000 + K))
    want = np.asarray(ids)[(masks.sigmoid().reshape(Q, -1).T @ probs[:, :-1]).argmax(1).numpy()].reshape(40, 30)
    got = semantic_inference(probs, masks, ids)
    assert (got == want).all() and (got[:5] == 1000).all()


def _panoptic_direct(p, m, object_threshold, overlap_threshold):
    """Mask2Former's panoptic_inference written pixel by pixel."""
    K = p.shape[1] - 1
    kept = [q for q in range(p.shape[0]) if p[q].argmax() != K and p[q].max() > object_threshold]
    H, W = m.shape[1:]
    prob = _sigmoid(m)
    owner = {}
    for y, x in itertools.product(range(H), range(W)):
        if kept:
            owner[y, x] = max(kept, key=lambda q: (p[q].max() * prob[q, y, x], -q))
    out, segs, stuff = np.zeros((H, W), np.int32), [], {}
    for q in kept:
        c = int(p[q].argmax())
        owned = [px for px, o in owner.items() if o == q]
        on = [(y, x) for y, x in itertools.product(range(H), range(W)) if prob[q, y, x] >= 0.5]
        paint = [px for px in owned if prob[q][px] >= 0.5]
        if not owned or not on or not paint or len(owned) / len(on) < overlap_threshold:
            continue
        if not ISTHING[c] and c in stuff:
            sid = stuff[c]
        else:
            sid = len(segs) + 1
            segs.append(CLASS_IDS[c])
            if not ISTHING[c]:
                stuff[c] = sid
        for px in paint:
            out[px] = sid
    return out, segs


@pytest.mark.parametrize("seed", range(6))
def test_panoptic_rule_equals_the_formula(seed):
    probs, masks = _case(seed, Q=6)
    want_ids, want_cats = _panoptic_direct(probs.numpy().astype(np.float64), masks.numpy().astype(np.float64), 0.3, 0.6)
    ids, segs = panoptic_inference(probs, masks, CLASS_IDS, ISTHING, 0.3, 0.6)
    assert (ids == want_ids).all()
    assert [s["category_id"] for s in segs] == want_cats


def test_panoptic_overlap_ratio_uses_the_owned_area():
    """Mask2Former compares the area a query wins (argmax, any probability) with its own mask
    (probability >= 0.5); only the painting requires probability >= 0.5. Query 0's mask covers
    pixels 0-4 but loses 3-4 to query 1 and wins 5-6 off its mask: owned 5 / own 5 -> kept
    (a rule using owned-and-on pixels, 3 / 5 < 0.8, would drop it); it paints pixels 0-2."""
    probs = torch.tensor([[0.9, 0.0, 0.0, 0.0, 0.1], [0.0, 0.8, 0.0, 0.0, 0.2]])
    masks = torch.full((2, 1, 10), -4.0)
    masks[0, 0, :3], masks[0, 0, 3:5], masks[0, 0, 5:7] = 4.0, 0.3, -0.5
    masks[1, 0, 3:5], masks[1, 0, 7:] = 4.0, 4.0
    ids, segs = panoptic_inference(probs, masks, CLASS_IDS, ISTHING, 0.5, 0.8)
    assert [(s["category_id"], s["area"]) for s in segs] == [(10, 3), (20, 5)]
    assert ids[0].tolist() == [1, 1, 1, 2, 2, 0, 0, 2, 2, 2]


# ---- the evaluator on hand-made predictions ---------------------------------------------------

def _cats():
    return {1: Category(1, "a", True, {}), 2: Category(2, "b", True, {}), 3: Category(3, "c", True, {}),
            4: Category(4, "d", False, {})}


def _det(mask, cat, score, image_id=1):
    return {"image_id": image_id, "category_id": cat, "segmentation": encode_masks(mask[None])[0], "score": score}


def test_overlapping_detections_ap_and_recall_by_hand():
    """Class 1: GT A and B; detections A∪B∪row 4 (0.9, IoU 16/42 with each: FP), A (0.8), B (0.7).
    Precision at recall 1/2 and 1 is 1/2 and 2/3 -> interpolated 2/3 at every recall: AP = 2/3,
    R@100 = 1. Class 2 (unseen): exact -> AP 1. Class 3 (unseen): only predicted -> absent (COCO)."""
    H, W = 10, 10
    gt = np.zeros((H, W), np.uint32)
    gt[:4, :4] = 1  # A, 16 px
    gt[6:, 6:] = 2  # B, 16 px
    gt[:3, 6:] = 3  # C (class 2), 12 px
    gsegs = [{"id": 1, "category_id": 1, "area": 16, "iscrowd": 0},
             {"id": 2, "category_id": 1, "area": 16, "iscrowd": 0},
             {"id": 3, "category_id": 2, "area": 12, "iscrowd": 0}]
    a, b, c = gt == 1, gt == 2, gt == 3
    big = a | b
    big[4] = True
    dets = [_det(big, 1, 0.9), _det(a, 1, 0.8), _det(b, 1, 0.7), _det(c, 2, 0.6), _det(a, 3, 0.5)]
    ev = UniversalEvaluator(_cats(), unseen_ids={2, 3})
    ev.add(1, gt, gsegs, gt, [dict(s) for s in gsegs], instances=dets)
    m = ev.metrics()
    assert m["map50_seen"] == pytest.approx(2 / 3) and m["r100_seen"] == pytest.approx(1.0)
    assert m["map50_unseen"] == pytest.approx(1.0) and m["r100_unseen"] == pytest.approx(1.0)
    assert m["map50_hm"] == pytest.approx(0.8)
    assert "miou" not in m  # no semantic prediction given: not scored, never derived from the panoptic output


def test_semantic_void_and_predicted_only_class_by_hand():
    """GT rows 0: class 1, 1: class 2 (unseen), 2-3: VOID. Prediction row 1 half class 2, half
    class 4 (unseen stuff, never in the GT); rows 2-3 class 3 on VOID (ignored). IoU 1, 1/2, 0
    -> mIoU (1 + 1/2 + 0) / 3; seen 1, unseen 1/4; class 3 (only on VOID) does not count."""
    gt = np.zeros((4, 4), np.uint32)
    gt[0], gt[1] = 1, 2
    gsegs = [{"id": 1, "category_id": 1, "area": 4, "iscrowd": 0}, {"id": 2, "category_id": 2, "area": 4, "iscrowd": 0}]
    sem = np.array([[1] * 4, [2, 2, 4, 4], [3] * 4, [3] * 4])
    ev = UniversalEvaluator(_cats(), unseen_ids={2, 4})
    ev.add(1, gt, gsegs, gt, [dict(s) for s in gsegs], semantic=sem)
    m = ev.metrics()
    assert m["miou"] == pytest.approx(0.5)
    assert m["miou_seen"] == pytest.approx(1.0) and m["miou_unseen"] == pytest.approx(0.25)
    assert m["miou_hm"] == pytest.approx(0.4)
    assert m["pixel_acc"] == pytest.approx(6 / 8)
    assert "map50" not in m


def test_partial_predictions_and_bad_ids_fail():
    from zeroseg.errors import DataError

    gt = np.zeros((4, 4), np.uint32)
    gt[0] = 1
    gsegs = [{"id": 1, "category_id": 1, "area": 4, "iscrowd": 0}]
    ev = UniversalEvaluator(_cats())
    ev.add(1, gt, gsegs, gt, [dict(s) for s in gsegs], semantic=np.ones((4, 4), np.int64))
    ev.add(2, gt, gsegs, gt, [dict(s) for s in gsegs])
    with pytest.raises(DataError, match="semantic predictions for 1 of 2 images"):
        ev.metrics()
    with pytest.raises(DataError, match=r"image 3 semantic prediction: unknown category id\(s\) \[77\]"):
        ev.add(3, gt, gsegs, gt, [dict(s) for s in gsegs], semantic=np.full((4, 4), 77))
    with pytest.raises(DataError, match="semantic prediction is 3x4 but ground truth is 4x4"):
        ev.add(4, gt, gsegs, gt, [dict(s) for s in gsegs], semantic=np.ones((4, 3), np.int64))
