"""Generator architectures: params ``generator.arch`` -> how to build the module.

The one mapping :data:`ARCHITECTURES` is read by the config's validation
(:class:`zeroseg.generator.config.GeneratorConfig`: an unknown ``arch`` is refused when params
are read) and by the builder (:func:`zeroseg.generator.checkpoint.build_generator`, for training
and for loading a checkpoint). A new architecture is its ``nn.Module`` ((B, E) semantic ->
(B, D) features, e.g. in :mod:`zeroseg.generator.models`) and one entry here: a function
``(resolved config, sem_dim E, feat_dim D) -> module``, the ``generator`` keys it reads beyond
those every trained row reads (``reads``: a sweep of another key leaves the row cached), and for a
closed-form generator its ``fit`` (then no training loop runs: see the ``linear`` row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.nn as nn

from zeroseg.errors import ConfigError
from zeroseg.generator.linear import LinearGenerator
from zeroseg.generator.models import GMMNGenerator, PrimitiveGenerator, PrimitiveSpec

if TYPE_CHECKING:  # annotations only: the config module reads this one
    from zeroseg.generator.config import GeneratorConfig


@dataclass(frozen=True)
class Architecture:
    """One entry of :data:`ARCHITECTURES`."""

    build: Callable[[GeneratorConfig, int, int], nn.Module]  # (resolved config, E, D) -> (B, E) -> (B, D)
    #: the module has ``project(sem) -> (B, d)``, a learned semantic projection: the class side of
    #: ``generator.structure: official`` (the official code's ``fc_projection``)
    projection: bool = False
    #: ``generator`` keys (params names) the builder or the fit reads besides the trained rows' own
    reads: tuple[str, ...] = ()
    #: closed form instead of a training loop: ``(module, resolved config, real (N, D), idx (N,) rows
    #: of emb, emb (K, E)) -> {name: value}``; None: the module trains (zeroseg/generator/train.py)
    fit: Callable[..., dict[str, float]] | None = None


def gmmn(cfg: GeneratorConfig, sem_dim: int, feat_dim: int) -> nn.Module:
    """GMMN (ZS3Net): an MLP over [a_c; z] with ``ffn`` hidden units, noise of the semantic's size."""
    return GMMNGenerator(sem_dim, feat_dim, hidden=cfg.ffn, noise_dim=sem_dim, noise_std=cfg.noise, dropout=cfg.dropout)


def primitive(cfg: GeneratorConfig, sem_dim: int, feat_dim: int) -> nn.Module:
    """PADing's primitive generator, primitives of width ``dim`` (0: the feature dimension)."""
    width = cfg.dim or feat_dim
    if cfg.primitive_layout == "official" and width != feat_dim:
        raise ConfigError(f"generator.dim {cfg.dim}: the official primitive layout has no output Linear, so the "
                          f"primitive width must be the feature dimension {feat_dim} (dim: 0)")
    spec = PrimitiveSpec(cfg.num_primitives, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout, cfg.noise,
                         cfg.primitive_layout)
    return PrimitiveGenerator(sem_dim, width, spec, out_dim=feat_dim)


def linear(cfg: GeneratorConfig, sem_dim: int, feat_dim: int) -> nn.Module:
    """The linear row: ridge map of the semantics to the class mean + pooled seen covariance."""
    return LinearGenerator(sem_dim, feat_dim, noise_std=cfg.noise)


def fit_linear(module: nn.Module, cfg: GeneratorConfig, real, idx, emb) -> dict[str, float]:
    return module.fit(real, idx, emb, cfg.ridge)


ARCHITECTURES: dict[str, Architecture] = {
    "primitive": Architecture(primitive, projection=True,
                              reads=("num_primitives", "layers", "heads", "dim", "primitive_layout")),
    "gmmn": Architecture(gmmn),
    "linear": Architecture(linear, reads=("ridge",), fit=fit_linear),
}
