"""Hungarian matching of predicted queries to ground-truth segments, with Mask2Former's
training cost: class (−p[gt class]) + mask sigmoid BCE + mask dice, solved by scipy's
``linear_sum_assignment``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatchWeights:
    cls: float = 2.0
    mask: float = 5.0
    dice: float = 5.0


def match_cost(class_probs: torch.Tensor, mask_logits: torch.Tensor, gt_labels: torch.Tensor,
               gt_masks: torch.Tensor, w: MatchWeights = MatchWeights()) -> torch.Tensor:
    """Cost matrix (Q, n).

    class_probs: (Q, C + 1) softmax over the model's classes + no-object.
    mask_logits: (Q, P) per-query mask logits at P sampled pixels.
    gt_labels: (n,) class index into the model's classes, or −1 for a class the model does
      not know (e.g. an unseen class): its class cost is 0, the mask costs still apply.
    gt_masks: (n, P) float targets in [0, 1].
    """
    Q, n = mask_logits.shape[0], gt_masks.shape[0]
    if n == 0:
        return mask_logits.new_zeros((Q, 0))
    known = gt_labels >= 0
    cost_cls = torch.zeros(Q, n, dtype=mask_logits.dtype)
    if known.any():
        cost_cls[:, known] = -class_probs[:, gt_labels[known]]
    P = mask_logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(mask_logits, torch.ones_like(mask_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(mask_logits, torch.zeros_like(mask_logits), reduction="none")
    cost_bce = (pos @ gt_masks.T + neg @ (1 - gt_masks).T) / P
    prob = mask_logits.sigmoid()
    numer = 2 * prob @ gt_masks.T
    denom = prob.sum(-1)[:, None] + gt_masks.sum(-1)[None, :]
    cost_dice = 1 - (numer + 1) / (denom + 1)
    return w.cls * cost_cls + w.mask * cost_bce + w.dice * cost_dice


def hungarian(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, gt indices) of the minimum-cost assignment (min(Q, n) pairs)."""
    if cost.numel() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    q, g = linear_sum_assignment(cost.detach().cpu().numpy())
    return q.astype(np.int64), g.astype(np.int64)


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU (Q, n) between binary masks pred (Q, P) and gt (n, P)."""
    pred, gt = pred.float(), gt.float()
    inter = pred @ gt.T
    union = pred.sum(-1)[:, None] + gt.sum(-1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
