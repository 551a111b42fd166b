"""Mask2Former's three inference rules on the SAME per-query outputs of one model.

Every rule takes the class probabilities (Q, K + 1) — a softmax over K classes and
no-object, last column — and the mask logits (Q, H, W) at the original image size, as
Mask2Former's ``MaskFormer.forward`` does after ``sem_seg_postprocess``:

- :func:`panoptic_inference`: confident non-no-object queries, each pixel to the query with
  the highest score × mask probability, segments mostly covered by others dropped, stuff
  merged by class.
- :func:`instance_inference`: the top-k (query, class) pairs of the flattened (Q, K) scores
  (a query may appear with several classes), thing classes kept, binary mask = logit > 0,
  score = class score × mean mask probability inside the binary mask (masks overlap).
- :func:`semantic_inference`: per pixel, argmax over classes of Σ_q p_q(c) · sigmoid(m_q).

We do not call ``transformers``' ``Mask2FormerImageProcessor`` post-processing: its module
imports torchvision (not usable with our CPU torch), it resizes every mask to 384 × 384
first, its instance rule keeps the top Q pairs (not 100) with no thing filter, and its
panoptic rule paints the argmax region without the ``mask prob >= 0.5`` condition. The
formulas below follow Mask2Former's ``maskformer_model.py``; tests check them against
direct computations on hand-made cases.

:class:`InferenceConfig` (params section ``inference``) holds their thresholds and the seen
offset γ; :meth:`InferenceConfig.predict_logits` is the one entry from a head's logits to the
rules' outputs, for the table, the seen–unseen curve and ``zeroseg predict``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.evaluate.calibration import offset_logits, seen_columns
from zeroseg.head.model import Head

#: the rules :meth:`InferenceConfig.predict_logits` runs beside the panoptic one by default
OTHER_RULES = ("instance", "semantic")


def upsample_masks(mask_logits: torch.Tensor, padded: int, valid: tuple[int, int],
                   orig: tuple[int, int]) -> torch.Tensor:
    """(Q, h, w) logits at S/4 -> (Q, H, W) logits at the original image size (padded canvas
    upsampled, cropped to the valid region, resized to the original size)."""
    m = F.interpolate(mask_logits[None].float(), size=(padded, padded), mode="bilinear", align_corners=False)[0]
    m = m[:, : valid[0], : valid[1]]
    return F.interpolate(m[None], size=orig, mode="bilinear", align_corners=False)[0]


def panoptic_inference(class_probs: torch.Tensor, mask_logits: torch.Tensor, class_ids: list[int],
                       isthing: list[bool], object_threshold: float = 0.5, overlap_threshold: float = 0.8,
                       mask_probs: torch.Tensor | None = None) -> tuple[np.ndarray, list[dict]]:
    """class_probs (Q, K + 1) (last = no object), mask_logits (Q, H, W) ->
    (ids (H, W) int32 with 0 = VOID, segments_info with id, category_id, isthing, score, area).

    A kept query k owns the pixels where it has the highest score × mask probability; it is
    dropped when that area is below ``overlap_threshold`` × the area of its own mask
    (probability >= 0.5); it paints the owned pixels where its mask probability is >= 0.5.
    ``mask_probs``: sigmoid(mask_logits) when the caller has it."""
    K = class_probs.shape[1] - 1
    scores, labels = class_probs.max(-1)
    keep = (labels != K) & (scores > object_threshold)
    H, W = mask_logits.shape[-2:]
    ids = np.zeros((H, W), np.int32)
    segments: list[dict] = []
    if not keep.any():
        return ids, segments
    masks = mask_probs[keep] if mask_probs is not None else mask_logits[keep].sigmoid()
    scores, labels = scores[keep], labels[keep]
    n = len(scores)
    # owner of each pixel (the first of equal maxima, as argmax); argmax over the last, contiguous
    # axis: torch's argmax over the first axis is several times slower
    owner = (scores[:, None, None] * masks).reshape(n, H * W).T.contiguous().argmax(1).numpy()
    on = (masks >= 0.5).reshape(n, H * W).numpy()
    on_owner = on[owner, np.arange(H * W)]  # the owner's own mask covers the pixel
    area = np.bincount(owner, minlength=n)  # pixels owned
    original = on.sum(1)  # pixels of the query's own mask
    mine = np.bincount(owner[on_owner], minlength=n)  # owned and covered: what the query paints
    seg_of = np.zeros(n + 1, np.int32)  # query -> segment id (0: dropped)
    stuff_seg: dict[int, dict] = {}
    for k in range(n):
        cls = int(labels[k])
        a, o = int(area[k]), int(original[k])
        if a == 0 or o == 0 or mine[k] == 0 or a / o < overlap_threshold:
            continue
        cat = class_ids[cls]
        if not isthing[cls] and cat in stuff_seg:
            seg = stuff_seg[cat]
            seg_of[k] = seg["id"]
            seg["score"] = max(seg["score"], float(scores[k]))
            continue
        seg = {"id": len(segments) + 1, "category_id": int(cat), "isthing": bool(isthing[cls]),
               "score": float(scores[k])}
        seg_of[k] = seg["id"]
        segments.append(seg)
        if not isthing[cls]:
            stuff_seg[cat] = seg
    ids = np.where(on_owner, seg_of[owner], 0).astype(np.int32).reshape(H, W)
    present = np.bincount(ids.ravel(), minlength=len(segments) + 1)
    segments = [dict(s, area=int(present[s["id"]])) for s in segments if present[s["id"]] > 0]
    return ids, segments


@dataclass
class Instances:
    """Overlapping instance predictions of one image (N detections)."""

    masks: np.ndarray  # (N, H, W) bool
    scores: np.ndarray  # (N,) float
    category_ids: np.ndarray  # (N,) int

    def __len__(self) -> int:
        return len(self.scores)


def instance_inference(class_probs: torch.Tensor, mask_logits: torch.Tensor, class_ids: list[int],
                       isthing: list[bool], topk: int = 100, mask_probs: torch.Tensor | None = None) -> Instances:
    """class_probs (Q, K + 1), mask_logits (Q, H, W) -> at most ``topk`` thing detections.

    scores (Q, K) = class_probs without no-object; the ``topk`` largest of the Q·K flattened
    (query, class) scores are taken first, then non-thing pairs are dropped (so fewer than
    ``topk`` may remain, as in Mask2Former); mask = logit > 0; score × mean sigmoid inside it.
    ``mask_probs``: sigmoid(mask_logits) when the caller has it. A query that appears with
    several classes has its mask and mask score computed once."""
    Q, K1 = class_probs.shape
    K = K1 - 1
    scores = class_probs[:, :K]
    top, flat = scores.flatten().topk(min(topk, Q * K))
    query, cls = flat // K, flat % K
    thing = torch.tensor(isthing, dtype=torch.bool)[cls]
    top, query, cls = top[thing], query[thing], cls[thing]
    uq, inv = torch.unique(query, return_inverse=True)
    binary = mask_logits[uq] > 0
    probs = mask_probs[uq] if mask_probs is not None else mask_logits[uq].sigmoid()
    mask_score = (probs * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    ids = torch.tensor(class_ids, dtype=torch.int64)[cls]
    return Instances(binary.numpy()[inv.numpy()], (top * mask_score[inv]).double().numpy(), ids.numpy())


def semantic_inference(class_probs: torch.Tensor, mask_logits: torch.Tensor, class_ids: list[int],
                       mask_probs: torch.Tensor | None = None) -> np.ndarray:
    """class_probs (Q, K + 1), mask_logits (Q, H, W) -> (H, W) int64 category ids:
    argmax_c Σ_q class_probs[q, c] · sigmoid(mask_logits[q]) (no-object dropped, no threshold).

    Computed as one (H·W, Q) @ (Q, K') product over the K' classes that can win a pixel: a
    class whose probabilities are, query by query, at most those of a class listed before it
    never can (mask probabilities are ≥ 0, so its score is at most that class's, and a tie goes
    to the earlier class, as argmax does). On COCO-sized class lists this keeps ~20% of them."""
    Q, H, W = mask_logits.shape
    probs = mask_probs if mask_probs is not None else mask_logits.sigmoid()
    C = class_probs[:, :-1]
    covers = (C[:, None, :] >= C[:, :, None]).all(0)  # covers[j, k]: class k >= class j in every query
    dominated = (covers & torch.ones_like(covers).tril(-1)).any(1)  # ... for some k listed before j
    keep = (~dominated).nonzero().squeeze(1)
    semseg = probs.reshape(Q, H * W).T @ C[:, keep]
    return np.asarray(class_ids, np.int64)[keep.numpy()[semseg.argmax(1).numpy()]].reshape(H, W)


@dataclass
class UniversalPrediction:
    """One image's outputs of the three rules (instances and semantic are optional for
    predictions read from files that only hold a panoptic result)."""

    panoptic_ids: np.ndarray  # (H, W) segment ids, 0 = VOID
    panoptic_segments: list[dict]
    instances: Instances | None = None
    semantic: np.ndarray | None = None  # (H, W) category ids, 0 = no prediction


@dataclass(frozen=True)
class InferenceConfig:
    """params.yaml section ``inference``: Mask2Former's post-processing."""

    object_threshold: float = 0.5  # panoptic: keep a query when its best class probability exceeds this
    overlap_threshold: float = 0.8  # panoptic: drop a segment when less than this share of its mask survives
    instance_topk: int = 100  # instance: (query, class) pairs kept per image (Mask2Former's test_topk_per_image)
    seen_offset: float = 0.0  # γ: lowered seen-class logits (< 0: unseen ones), see zeroseg.evaluate.calibration
    curve_points: int = 10  # γ values of each head's seen–unseen curve (quantiles of the flip offsets) + ends

    def __post_init__(self) -> None:
        if self.instance_topk < 1:
            raise ConfigError(f"inference.instance_topk: at least 1, got {self.instance_topk}")
        if not math.isfinite(self.seen_offset):
            raise ConfigError(f"inference.seen_offset: a finite number, got {self.seen_offset}")
        if self.curve_points < 0:
            raise ConfigError(f"inference.curve_points: 0 or more, got {self.curve_points}")

    def predict(self, head: Head, feats: torch.Tensor, mask_logits: torch.Tensor,
                unseen_ids: Collection[int] = frozenset()) -> UniversalPrediction:
        """(Q, D) query features, (Q, H, W) mask logits -> the three rules' outputs; the seen
        offset applies to heads with both seen and unseen outputs (``unseen_ids``)."""
        return self.predict_logits(head, head.logits(feats), mask_logits, unseen_ids)

    def predict_logits(self, head: Head, logits: torch.Tensor, mask_logits: torch.Tensor,
                       unseen_ids: Collection[int] = frozenset(), mask_probs: torch.Tensor | None = None, *,
                       offset: float | None = None, also: Collection[str] = OTHER_RULES) -> UniversalPrediction:
        """:meth:`predict` from the head's (Q, K + 1) logits (and the masks' sigmoid, if computed):
        the logits calibrated by ``offset`` (default: ``seen_offset``; ±inf drops one side), their
        softmax, the panoptic rule and the rules of ``also`` (``instance``, ``semantic``) on it."""
        unknown = set(also) - set(OTHER_RULES)
        if unknown:
            raise ValueError(f"also: rules among {OTHER_RULES}, got {sorted(unknown)}")
        gamma = self.seen_offset if offset is None else offset
        probs = offset_logits(logits, seen_columns(head.class_ids, unseen_ids), gamma).softmax(-1)
        mask_probs = mask_logits.sigmoid() if mask_probs is None else mask_probs
        ids, segs = panoptic_inference(probs, mask_logits, head.class_ids, head.isthing, self.object_threshold,
                                       self.overlap_threshold, mask_probs)
        instances = None
        if "instance" in also:
            instances = instance_inference(probs, mask_logits, head.class_ids, head.isthing, self.instance_topk,
                                           mask_probs)
        semantic = semantic_inference(probs, mask_logits, head.class_ids, mask_probs) if "semantic" in also else None
        return UniversalPrediction(ids, segs, instances, semantic)
