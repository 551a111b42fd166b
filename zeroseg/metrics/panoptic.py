"""Panoptic quality (PQ, SQ, RQ), following panopticapi's ``pq_compute`` rule for rule.

Per image: a predicted and a ground-truth segment of the same category match when
IoU > 0.5, the union excluding the prediction's VOID pixels; crowd ground truth is never
a false negative; an unmatched prediction is not a false positive when more than half of
it lies on VOID or on the (last listed) crowd region of its category. The ground-truth
area comes from the JSON, the predicted area from the PNG, as in panopticapi.

Speed: segment ids are mapped to dense indices with a reusable lookup table and the
intersections counted with one ``bincount`` (no sorting), instead of ``np.unique`` on
64-bit joint labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroseg.atomic import read_json
from zeroseg.data.classes import unseen_ids_of
from zeroseg.data.panoptic import (
    MAX_INT64,
    MAX_SEGMENT_ID,
    Category,
    PanopticDataset,
    _file_name,
    _int,
    _require,
    _show,
    load_panoptic,
    read_id_png,
    read_ids,
)
from zeroseg.errors import DataError
from zeroseg.metrics.summary import split_summary

_LUT_SIZE = 256**3


class _DenseIndex:
    """Maps 24-bit segment ids to 1..k (0 = VOID) through one reusable lookup table."""

    def __init__(self) -> None:
        self.lut = np.zeros(_LUT_SIZE, np.int16)

    def __call__(self, ids: np.ndarray, seg_ids: np.ndarray, where: str) -> np.ndarray:
        if len(seg_ids) and (seg_ids.min() <= 0 or seg_ids.max() >= _LUT_SIZE):
            raise DataError(f"{where}: segments_info ids must be in 1..{_LUT_SIZE - 1}, got {seg_ids.tolist()[:5]}")
        if len(seg_ids) >= np.iinfo(np.int16).max:
            raise DataError(f"{where}: {len(seg_ids)} segments in one image; at most 32766 are supported")
        self.lut[seg_ids] = np.arange(1, len(seg_ids) + 1, dtype=np.int16)
        try:
            return np.take(self.lut, ids)
        finally:
            self.lut[seg_ids] = 0


def _is_int(v: Any) -> bool:
    """An integer from JSON (int) or from in-memory callers (NumPy integers); never a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _segment_ids(segments: list[dict[str, Any]], where: str) -> np.ndarray:
    """(k,) int64 ids of a segments_info list: each entry an object with an integer 'id' in
    1..2^24-1 and a 'category_id', no id twice."""
    ids = []
    for j, s in enumerate(segments):
        if not isinstance(s, dict) or "id" not in s or "category_id" not in s:
            raise DataError(f"{where}[{j}] needs 'id' and 'category_id'")
        if not _is_int(s["id"]) or not 1 <= s["id"] <= MAX_SEGMENT_ID:
            raise DataError(f"{where}[{j}].id must be an integer in 1..{MAX_SEGMENT_ID}, got {_show(s['id'])}")
        ids.append(int(s["id"]))
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{where}: duplicate segment id(s) {dup[:5]}")
    return np.array(ids, np.int64)


@dataclass
class PQStats:
    """Per-category accumulators (arrays indexed by position in ``cat_ids``)."""

    cat_ids: np.ndarray
    iou: np.ndarray = field(init=False)
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.cat_ids)
        self.iou = np.zeros(n, np.float64)
        self.tp, self.fp, self.fn = (np.zeros(n, np.int64) for _ in range(3))

    def present(self) -> np.ndarray:
        return (self.tp + self.fp + self.fn) > 0

    def per_class(self) -> dict[int, dict[str, float]]:
        """category id -> pq/sq/rq/tp/fp/fn, only for categories with TP+FP+FN > 0."""
        out = {}
        for i in np.nonzero(self.present())[0]:
            tp, fp, fn, iou = int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), float(self.iou[i])
            denom = tp + 0.5 * fp + 0.5 * fn
            out[int(self.cat_ids[i])] = {"pq": iou / denom, "sq": iou / tp if tp else 0.0, "rq": tp / denom,
                                         "tp": tp, "fp": fp, "fn": fn}
        return out


class PanopticEvaluator:
    """In-memory PQ: call :meth:`add` per image, then :meth:`result`.

    ``categories``: category id -> :class:`Category` (from the ground truth).
    """

    def __init__(self, categories: dict[int, Category], unseen_ids: set[int] | None = None) -> None:
        self.categories = categories
        self.unseen_ids = unseen_ids
        cat_ids = np.array(sorted(categories), np.int64)
        self.stats = PQStats(cat_ids)
        self._cat_pos = {int(c): i for i, c in enumerate(cat_ids)}
        self._dense = _DenseIndex()

    def add(self, image_id: int, gt_ids: np.ndarray, gt_segments: list[dict[str, Any]],
            pred_ids: np.ndarray, pred_segments: list[dict[str, Any]],
            gt_source: str | None = None, pred_source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """gt_ids, pred_ids: (H, W) segment ids (0 = VOID); segments: their segments_info;
        ``gt_source``/``pred_source``: the files they came from, named in errors.

        Returns the dense maps (H, W) int16 for GT and prediction: 0 = VOID, i = segment i-1.
        """
        gsrc = f"{gt_source}: image {image_id}" if gt_source else f"image {image_id}"
        psrc = f"{pred_source}: image {image_id}" if pred_source else f"image {image_id}"
        if gt_ids.shape != pred_ids.shape:
            raise DataError(f"{psrc}: prediction is {pred_ids.shape[1]}x{pred_ids.shape[0]} but ground truth is "
                            f"{gt_ids.shape[1]}x{gt_ids.shape[0]} (width x "
                            f"height){'; ground truth: ' + gt_source if gt_source else ''}")
        g_sid = _segment_ids(gt_segments, f"{gsrc}: ground-truth segments_info")
        p_sid = _segment_ids(pred_segments, f"{psrc}: predicted segments_info")
        for src, what, segments in ((psrc, "predicted", pred_segments), (gsrc, "ground-truth", gt_segments)):
            for j, s in enumerate(segments):
                if not _is_int(s["category_id"]) or s["category_id"] not in self._cat_pos:
                    raise DataError(f"{src}: {what} segment {s['id']} (segments_info[{j}]) has unknown category_id "
                                    f"{_show(s['category_id'])}")
        kg, kp = len(gt_segments), len(pred_segments)
        g = self._dense(gt_ids, g_sid, f"{gsrc} ground truth")
        p = self._dense(pred_ids, p_sid, f"{psrc} prediction")
        # ids present in the PNG but not in segments_info map to 0: tell them from VOID
        for dense, ids, src, what in ((g, gt_ids, gsrc, "ground-truth"), (p, pred_ids, psrc, "predicted")):
            unknown_px = np.count_nonzero(dense == 0) - np.count_nonzero(ids == 0)
            if unknown_px:
                extra = sorted(set(np.unique(ids[(dense == 0) & (ids != 0)]).tolist()))
                raise DataError(f"{src}: {what} PNG segment id(s) {extra[:5]} are not in segments_info")
        joint = g.astype(np.int32)
        joint *= kp + 1
        joint += p
        inter = np.bincount(joint.ravel(), minlength=(kg + 1) * (kp + 1)).reshape(kg + 1, kp + 1)
        p_area = inter.sum(0)
        for src, what, sids, area in ((psrc, "predicted", p_sid, p_area[1:]),
                                      (gsrc, "ground-truth", g_sid, inter.sum(1)[1:])):
            missing = sids[area == 0].tolist()
            if missing:
                raise DataError(f"{src}: {what} segments_info id(s) {missing[:5]} are absent from the PNG")
        for j, s in enumerate(gt_segments):
            if "area" not in s:
                raise DataError(f"{gsrc}: ground-truth segments_info[{j}] has no field 'area'")
            if not _is_int(s["area"]) or not 0 <= s["area"] <= MAX_INT64:
                raise DataError(f"{gsrc}: ground-truth segments_info[{j}].area must be a non-negative integer, "
                                f"got {_show(s['area'])}")
        g_area = np.array([s["area"] for s in gt_segments], np.int64)
        g_cat = np.array([self._cat_pos[s["category_id"]] for s in gt_segments], np.int64)
        p_cat = np.array([self._cat_pos[s["category_id"]] for s in pred_segments], np.int64)
        g_crowd = np.array([s.get("iscrowd", 0) == 1 for s in gt_segments], bool)
        void_p = inter[0, 1:]
        I = inter[1:, 1:]
        union = p_area[None, 1:] + g_area[:, None] - I - void_p[None, :]
        cand = (I > 0) & (g_cat[:, None] == p_cat[None, :]) & ~g_crowd[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(cand, I / np.where(union > 0, union, 1), 0.0)
        gi, pj = np.nonzero(iou > 0.5)
        st = self.stats
        np.add.at(st.tp, g_cat[gi], 1)
        np.add.at(st.iou, g_cat[gi], iou[gi, pj])
        g_matched = np.zeros(kg, bool)
        g_matched[gi] = True
        p_matched = np.zeros(kp, bool)
        p_matched[pj] = True
        # false negatives: unmatched, non-crowd ground truth
        np.add.at(st.fn, g_cat[~g_matched & ~g_crowd], 1)
        # the crowd region per category: the last crowd segment listed, as panopticapi
        crowd_of: dict[int, int] = {}
        for i in np.nonzero(g_crowd & ~g_matched)[0]:
            crowd_of[int(g_cat[i])] = int(i)
        for j in np.nonzero(~p_matched)[0]:
            ignored = void_p[j] + (I[crowd_of[p_cat[j]], j] if p_cat[j] in crowd_of else 0)
            if ignored / p_area[j + 1] > 0.5:
                continue
            st.fp[p_cat[j]] += 1
        return g, p

    def result(self) -> PanopticResult:
        return PanopticResult(self.stats.per_class(), self.categories, self.unseen_ids)


@dataclass
class PanopticResult:
    per_class: dict[int, dict[str, float]]  # only classes with TP+FP+FN > 0
    categories: dict[int, Category]
    unseen_ids: set[int] | None

    def flat(self) -> dict[str, float | None]:
        """Flat keys: pq, sq, rq, {pq,sq,rq}_things, _stuff, and with a split _seen, _unseen, _hm."""
        out: dict[str, float | None] = {}
        for m in ("pq", "sq", "rq"):
            vals = {c: r[m] for c, r in self.per_class.items()}
            out.update(split_summary(m, vals, self.unseen_ids))
            for kind, isthing in (("things", True), ("stuff", False)):
                sub = {c: v for c, v in vals.items() if self.categories[c].isthing == isthing}
                out[f"{m}_{kind}"] = split_summary(m, sub, None)[m]
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per category (classes without TP+FP+FN have null pq/sq/rq)."""
        rows = []
        for cid, cat in sorted(self.categories.items()):
            r = self.per_class.get(cid)
            split = None if self.unseen_ids is None else ("unseen" if cid in self.unseen_ids else "seen")
            rows.append({"category_id": cid, "name": cat.name, "isthing": cat.isthing, "split": split,
                         **({k: r[k] for k in ("pq", "sq", "rq", "tp", "fp", "fn")} if r else
                            {"pq": None, "sq": None, "rq": None, "tp": 0, "fp": 0, "fn": 0})})
        return rows


def load_predictions(pred_json: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Prediction JSON (panopticapi format: ``annotations`` suffices) -> image id -> annotation.
    Every field the evaluator reads is checked (type and range); errors name the file and the field."""
    pred_json = Path(pred_json)
    raw = read_json(pred_json, "prediction file")
    if not isinstance(raw, dict) or not isinstance(raw.get("annotations"), list):
        raise DataError(f"{pred_json}: top-level field 'annotations' missing or not a list")
    out: dict[int, dict] = {}
    for i, a in enumerate(raw["annotations"]):
        for key in ("image_id", "file_name", "segments_info"):
            _require(a, key, f"annotations[{i}]", pred_json)
        iid = _int(a, "image_id", f"annotations[{i}]", pred_json, -MAX_INT64 - 1, MAX_INT64)
        where = f"annotations[{i}] (image {iid})"
        _file_name(a["file_name"], f"{where}.file_name", pred_json, plain=True)
        if iid in out:
            raise DataError(f"{pred_json}: annotations[{i}]: duplicate image_id {iid}")
        if not isinstance(a["segments_info"], list):
            raise DataError(f"{pred_json}: {where}.segments_info must be a list, got {_show(a['segments_info'])}")
        _segment_ids(a["segments_info"], f"{pred_json}: {where}.segments_info")
        for j, s in enumerate(a["segments_info"]):
            _int(s, "category_id", f"{where}.segments_info[{j}]", pred_json, -MAX_INT64 - 1, MAX_INT64)
        out[iid] = a
    return out


def iter_panoptic_pairs(gt: PanopticDataset, gt_dir: str | os.PathLike,
                        pred_json: str | os.PathLike, pred_dir: str | os.PathLike,
                        ) -> Iterator[tuple[int, np.ndarray, list, np.ndarray, list, str]]:
    """Yield (image_id, gt ids, gt segments, pred ids, pred segments, pred PNG file name) for
    every image of the loaded ground truth ``gt``."""
    preds = load_predictions(pred_json)
    for iid, ann in gt.annotations.items():
        if iid not in preds:
            raise DataError(f"{pred_json}: no prediction for image {iid} ({gt.images[iid]['file_name']}) in "
                            "'annotations'")
        g = read_id_png(gt_dir, ann, gt.images[iid], "ground-truth")  # also checked against the JSON's width x height
        p = read_ids(Path(pred_dir) / preds[iid]["file_name"], "prediction", iid)
        yield iid, g, ann["segments_info"], p, preds[iid]["segments_info"], preds[iid]["file_name"]


def pq_files(gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_json: str | os.PathLike,
             pred_dir: str | os.PathLike, unseen: str | None = None) -> PanopticResult:
    """PQ/SQ/RQ of a prediction folder against a ground-truth folder (COCO panoptic format)."""
    gt = load_panoptic(gt_json)
    ev = PanopticEvaluator(gt.categories, unseen_ids_of(gt.categories, unseen, gt_json))
    for iid, g, gs, p, ps, name in iter_panoptic_pairs(gt, gt_dir, pred_json, pred_dir):
        ev.add(iid, g, gs, p, ps, gt_source=f"{Path(gt_dir) / gt.annotations[iid]['file_name']} ({gt_json})",
               pred_source=f"{Path(pred_dir) / name} ({pred_json})")
    return ev.result()
