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
from zeroseg.data.panoptic import Category, PanopticDataset, load_panoptic, read_ids
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
            pred_ids: np.ndarray, pred_segments: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """gt_ids, pred_ids: (H, W) segment ids (0 = VOID); segments: their segments_info.

        Returns the dense maps (H, W) int16 for GT and prediction: 0 = VOID, i = segment i-1.
        """
        if gt_ids.shape != pred_ids.shape:
            raise DataError(f"image {image_id}: prediction is {pred_ids.shape[1]}x{pred_ids.shape[0]} but ground truth is "
                            f"{gt_ids.shape[1]}x{gt_ids.shape[0]} (width x height)")
        for s in pred_segments:
            if s["category_id"] not in self._cat_pos:
                raise DataError(f"image {image_id}: predicted segment {s['id']} has unknown category_id {s['category_id']}")
        kg, kp = len(gt_segments), len(pred_segments)
        g_sid = np.array([s["id"] for s in gt_segments], np.int64)
        p_sid = np.array([s["id"] for s in pred_segments], np.int64)
        if len(set(p_sid.tolist())) != kp:
            raise DataError(f"image {image_id}: duplicate segment id in predicted segments_info")
        g = self._dense(gt_ids, g_sid, f"image {image_id} ground truth")
        p = self._dense(pred_ids, p_sid, f"image {image_id} prediction")
        # ids present in the PNG but not in segments_info map to 0: tell them from VOID
        for dense, ids, sids, what in ((g, gt_ids, g_sid, "ground-truth"), (p, pred_ids, p_sid, "predicted")):
            unknown_px = np.count_nonzero(dense == 0) - np.count_nonzero(ids == 0)
            if unknown_px:
                extra = sorted(set(np.unique(ids[(dense == 0) & (ids != 0)]).tolist()))
                raise DataError(f"image {image_id}: {what} PNG segment id(s) {extra[:5]} are not in segments_info")
        joint = g.astype(np.int32)
        joint *= kp + 1
        joint += p
        inter = np.bincount(joint.ravel(), minlength=(kg + 1) * (kp + 1)).reshape(kg + 1, kp + 1)
        p_area = inter.sum(0)
        for what, sids, area in (("predicted", p_sid, p_area[1:]), ("ground-truth", g_sid, inter.sum(1)[1:])):
            missing = sids[area == 0].tolist()
            if missing:
                raise DataError(f"image {image_id}: {what} segments_info id(s) {missing[:5]} are absent from the PNG")
        try:
            g_area = np.array([s["area"] for s in gt_segments], np.int64)
        except KeyError as exc:
            raise DataError(f"image {image_id}: a ground-truth segments_info entry has no field 'area'") from exc
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

    def result(self) -> "PanopticResult":
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
    """Prediction JSON (panopticapi format: ``annotations`` suffices) -> image id -> annotation."""
    pred_json = Path(pred_json)
    raw = read_json(pred_json, "prediction file")
    if not isinstance(raw.get("annotations"), list):
        raise DataError(f"{pred_json}: top-level field 'annotations' missing or not a list")
    out: dict[int, dict] = {}
    for i, a in enumerate(raw["annotations"]):
        for key in ("image_id", "file_name", "segments_info"):
            if key not in a:
                raise DataError(f"{pred_json}: annotations[{i}] has no field '{key}'")
        if a["image_id"] in out:
            raise DataError(f"{pred_json}: annotations[{i}]: duplicate image_id {a['image_id']}")
        for j, s in enumerate(a["segments_info"]):
            if "id" not in s or "category_id" not in s:
                raise DataError(f"{pred_json}: annotations[{i}] (image {a['image_id']}).segments_info[{j}] needs 'id' and 'category_id'")
        out[a["image_id"]] = a
    return out


def iter_panoptic_pairs(gt: PanopticDataset, gt_dir: str | os.PathLike,
                        pred_json: str | os.PathLike, pred_dir: str | os.PathLike,
                        ) -> Iterator[tuple[int, np.ndarray, list, np.ndarray, list, str]]:
    """Yield (image_id, gt ids, gt segments, pred ids, pred segments, pred PNG file name) for
    every image of the loaded ground truth ``gt``."""
    preds = load_predictions(pred_json)
    for iid, ann in gt.annotations.items():
        if iid not in preds:
            raise DataError(f"{pred_json}: no prediction for image {iid} ({gt.images[iid]['file_name']})")
        g = read_ids(Path(gt_dir) / ann["file_name"], "ground-truth", iid)
        p = read_ids(Path(pred_dir) / preds[iid]["file_name"], "prediction", iid)
        yield iid, g, ann["segments_info"], p, preds[iid]["segments_info"], preds[iid]["file_name"]


def unseen_ids_of(categories: dict[int, Category], unseen: str | None, source: object = "ground truth") -> set[int] | None:
    """Unseen category ids from a preset/name list, else from the categories' ``split`` field."""
    if unseen:
        from zeroseg.presets import resolve_unseen
        from zeroseg.split import match_class_names

        return set(match_class_names(categories, resolve_unseen(unseen), source).values())
    if categories and all("split" in c.raw for c in categories.values()):
        return {cid for cid, c in categories.items() if c.raw["split"] == "unseen"}
    return None


def pq_files(gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_json: str | os.PathLike,
             pred_dir: str | os.PathLike, unseen: str | None = None) -> PanopticResult:
    """PQ/SQ/RQ of a prediction folder against a ground-truth folder (COCO panoptic format)."""
    gt = load_panoptic(gt_json)
    ev = PanopticEvaluator(gt.categories, unseen_ids_of(gt.categories, unseen, gt_json))
    for iid, g, gs, p, ps, _ in iter_panoptic_pairs(gt, gt_dir, pred_json, pred_dir):
        ev.add(iid, g, gs, p, ps)
    return ev.result()
