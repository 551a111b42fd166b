"""Generator checkpoints: building a generator from its resolved config, loading a trained one
(and the head a joint schedule trained alongside it), and drawing synthetic features from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from zeroseg.config import from_dict
from zeroseg.embed.space import ClassSpace
from zeroseg.errors import DataError
from zeroseg.generator.architectures import ARCHITECTURES
from zeroseg.generator.config import GeneratorConfig
from zeroseg.head.model import JointHead


def build_generator(cfg: GeneratorConfig, sem_dim: int, feat_dim: int) -> torch.nn.Module:
    """The generator of a resolved config, (B, sem_dim) -> (B, feat_dim): the ``generator.arch``
    entry of :data:`~zeroseg.generator.architectures.ARCHITECTURES`."""
    return ARCHITECTURES[cfg.arch].build(cfg, sem_dim, feat_dim)


def _load(path: str | os.PathLike) -> dict:
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: generator checkpoint not found") from exc
    except Exception as exc:  # corrupt or truncated file, or an object weights_only refuses
        raise DataError(f"{path}: not a readable generator checkpoint: {exc}") from exc
    for key in ("generator", "config", "seen_ids", "unseen_ids", "emb", "feat_dim"):
        if not isinstance(ck, dict) or key not in ck:
            raise DataError(f"{path}: generator checkpoint has no '{key}'")
    return ck


def load_generator(path: str | os.PathLike) -> tuple[torch.nn.Module, GeneratorConfig, ClassSpace]:
    """A saved generator (``torch.load(weights_only=True)``), its resolved config and class space."""
    ck = _load(path)
    config = dict(ck["config"])
    if "architecture" in config:  # written before the key was renamed primitive_layout
        config["primitive_layout"] = config.pop("architecture")
    cfg = from_dict(GeneratorConfig, config, f"{path}: config")
    space = ClassSpace(ck["seen_ids"], ck["unseen_ids"], ck["emb"])
    gen = build_generator(cfg, space.emb.shape[1], ck["feat_dim"])
    gen.load_state_dict(ck["generator"])
    return gen.eval(), cfg, space


def joint_head(path: str | os.PathLike) -> JointHead | None:
    """The head trained jointly with the generator at ``path`` (schedule joint), or None when the
    generator was trained alone."""
    head = _load(path).get("joint_head")
    if head is None:
        return None
    return JointHead(head["weight"], head["bias"], list(head["class_ids"]), str(path))


@torch.no_grad()
def synthesize(gen: torch.nn.Module, emb: torch.Tensor, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(len(emb) * per_class, D) synthetic features and the row index of their class in ``emb``."""
    torch.manual_seed(seed)
    idx = torch.arange(len(emb)).repeat_interleave(per_class)
    return gen(emb[idx]).numpy().astype(np.float32), idx.numpy()
