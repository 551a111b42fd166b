"""The class head: a linear classifier over K classes + no-object that replaces the segmenter's
(``Head``), the segmenter's own seen head, and head checkpoints (save / load).

Shapes: query features (Q, D) -> logits (Q, K + 1); the last output is no-object."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from zeroseg.atomic import atomic_file
from zeroseg.errors import DataError


@dataclass(frozen=True)
class Head:
    """A classifier over K classes + no-object: logits = f(x) Wᵀ + b with W (K + 1, D') and
    f = identity, or f(x) = normalize(x Pᵀ + p) for the projection baseline (P (D', D))."""

    weight: torch.Tensor
    bias: torch.Tensor
    class_ids: list[int]  # category id of each of the first K outputs
    isthing: list[bool]
    proj_weight: torch.Tensor | None = None
    proj_bias: torch.Tensor | None = None

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(Q, D) -> (Q, K + 1)."""
        if self.proj_weight is not None:
            feats = torch.nn.functional.normalize(feats @ self.proj_weight.T + self.proj_bias, dim=-1)
        return feats @ self.weight.T + self.bias

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        """(Q, D) -> (Q, K + 1) softmax probabilities."""
        return self.logits(feats).softmax(-1)


@dataclass(frozen=True)
class JointHead:
    """A head trained jointly with a generator, as stored in its checkpoint."""

    weight: torch.Tensor  # (K + 1, D)
    bias: torch.Tensor  # (K + 1,)
    class_ids: list[int]  # category id of each of the first K outputs
    source: str  # the generator checkpoint it came from


def segmenter_head(checkpoint: str | os.PathLike) -> Head:
    """The trained segmenter's own class head (seen classes + no-object)."""
    from zeroseg.segmenter.model import load_checkpoint

    ck = load_checkpoint(checkpoint)
    sd = ck["model"]
    return Head(sd["class_predictor.weight"].float(), sd["class_predictor.bias"].float(),
                [c["id"] for c in ck["classes"]], [bool(c["isthing"]) for c in ck["classes"]])


def save_head(path: str | os.PathLike, head: Head, cfg: Any, kind: str) -> None:
    """Atomic save of the head with the config (a dataclass) that trained it and how it was made."""
    state = {"weight": head.weight, "bias": head.bias, "class_ids": head.class_ids, "isthing": head.isthing,
             "proj_weight": head.proj_weight, "proj_bias": head.proj_bias, "config": asdict(cfg), "kind": kind}
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name


def load_head(path: str | os.PathLike) -> Head:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: classifier head not found") from exc
    except Exception as exc:  # corrupt or truncated file, or an object weights_only refuses
        raise DataError(f"{path}: not a readable classifier head: {exc}") from exc
    for key in ("weight", "bias", "class_ids", "isthing"):
        if not isinstance(ck, dict) or key not in ck:
            raise DataError(f"{path}: classifier head has no '{key}'")
    return Head(ck["weight"], ck["bias"], list(ck["class_ids"]), list(ck["isthing"]), ck.get("proj_weight"),
                ck.get("proj_bias"))
