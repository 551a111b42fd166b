"""Panoptic inference from per-query class probabilities and masks (Mask2Former's rule):
keep confident non-"no object" queries, assign each pixel to the query with the highest
score × mask probability, drop segments mostly covered by others, merge stuff by class."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample_masks(mask_logits: torch.Tensor, padded: int, valid: tuple[int, int], orig: tuple[int, int]) -> torch.Tensor:
    """(Q, h, w) logits at S/4 -> (Q, H, W) logits at the original image size."""
    m = F.interpolate(mask_logits[None].float(), size=(padded, padded), mode="bilinear", align_corners=False)[0]
    m = m[:, : valid[0], : valid[1]]
    return F.interpolate(m[None], size=orig, mode="bilinear", align_corners=False)[0]


def panoptic_inference(class_probs: torch.Tensor, mask_logits: torch.Tensor, class_ids: list[int],
                       isthing: list[bool], object_threshold: float = 0.5, overlap_threshold: float = 0.8
                       ) -> tuple[np.ndarray, list[dict]]:
    """class_probs (Q, K + 1) (last = no object), mask_logits (Q, H, W) ->
    (ids (H, W) int32 with 0 = VOID, segments_info with id, category_id, isthing, score, area)."""
    K = class_probs.shape[1] - 1
    scores, labels = class_probs.max(-1)
    keep = (labels != K) & (scores > object_threshold)
    H, W = mask_logits.shape[-2:]
    ids = np.zeros((H, W), np.int32)
    segments: list[dict] = []
    if not keep.any():
        return ids, segments
    scores, labels, masks = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    owner = (scores[:, None, None] * masks).argmax(0)
    stuff_seg: dict[int, int] = {}
    for k in range(len(scores)):
        cls = int(labels[k])
        mine = (owner == k) & (masks[k] >= 0.5)
        area, original = int(mine.sum()), int((masks[k] >= 0.5).sum())
        if area == 0 or original == 0 or area / original < overlap_threshold:
            continue
        cat = class_ids[cls]
        m = mine.numpy()
        if not isthing[cls] and cat in stuff_seg:
            sid = stuff_seg[cat]
            ids[m] = sid
            seg = next(s for s in segments if s["id"] == sid)
            seg["score"] = max(seg["score"], float(scores[k]))
            continue
        sid = len(segments) + 1
        ids[m] = sid
        segments.append({"id": sid, "category_id": int(cat), "isthing": bool(isthing[cls]), "score": float(scores[k])})
        if not isthing[cls]:
            stuff_seg[cat] = sid
    present = np.bincount(ids.ravel(), minlength=len(segments) + 1)
    segments = [dict(s, area=int(present[s["id"]])) for s in segments if present[s["id"]] > 0]
    return ids, segments
