"""The ablation rows that train a generator, parsed in one place.

Params ``generators`` maps each row to ``key=value`` overrides of the ``generator`` section
(``gmmn: arch=gmmn align=false disentangle=false``). :func:`row_config` merges them for the
pipeline (``stages/generator_config.py``) and for ``zeroseg train-generator --row``, and keeps
only the keys the row's training reads (:func:`keys_read`): the pipeline's ``train_generator``
stage depends on that file, not on the whole section, so a sweep of ``generator.num_primitives``
re-trains the primitive rows and leaves the GMMN row cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from zeroseg.config import from_dict, load_yaml, params_value
from zeroseg.errors import ConfigError
from zeroseg.generator.architectures import ARCHITECTURES
from zeroseg.generator.config import GeneratorConfig, params_dict

#: keys every row's training reads (params names); the others depend on the row (keys_read)
ALWAYS_READ = ("arch", "recipe", "ffn", "dropout", "noise", "align", "disentangle", "iterations", "checkpoint_every",
               "mmd", "sigmas", "structure", "optimizer", "lr", "lr_schedule", "batch", "min_iou", "schedule",
               "cls_weight")


def parse_overrides(spec: Any, where: str) -> dict[str, Any]:
    """``'key=value ...'`` -> {key: value}, each value read as a YAML scalar the way params are
    read (YAML 1.2: ``false`` a boolean, ``0.0001`` and ``1e-4`` numbers, ``official`` a string).
    An empty row (``""`` or nothing) overrides nothing."""
    if spec is None:
        spec = ""
    if not isinstance(spec, str) or not all(kv.partition("=")[0] and "=" in kv for kv in spec.split()):
        raise ConfigError(f"{where} must be 'key=value ...', got {spec!r}")
    out: dict[str, Any] = {}
    for kv in spec.split():
        key, _, value = kv.partition("=")
        if key in out:
            raise ConfigError(f"{where}: '{key}' given twice in {spec!r}")
        if key == "seed":
            raise ConfigError(f"{where}: 'seed' is not a row setting (params seeds sets each run's)")
        out[key] = load_yaml(value, f"{where}: {key}")
    return out


def row_generator(params_file: str | os.PathLike, row: str) -> GeneratorConfig:
    """The ``generator`` section of ``params_file`` with row ``row``'s overrides, checked
    (every key known and typed, the combination valid); not resolved."""
    rows = params_value(params_file, "generators", "top-level key")
    if not isinstance(rows, dict) or row not in rows:
        known = sorted(rows) if isinstance(rows, dict) else rows
        raise ConfigError(f"{params_file}: generators.{row} not found; rows: {known}")
    section = params_value(params_file, "generator") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{params_file}: generator must be a mapping, got {section!r}")
    merged = {**section, **parse_overrides(rows[row], f"{params_file}: generators.{row}")}
    cfg = from_dict(GeneratorConfig, merged, f"{params_file}:generator (with generators.{row})")
    cfg.resolved()  # the combination checks (e.g. the official structure needs the primitive generator)
    return cfg


def keys_read(cfg: GeneratorConfig) -> list[str]:
    """The ``generator`` keys (params names, params order) whose values training ``cfg`` reads;
    the others take no part in its run (``seed`` aside: each run's own). Follows
    zeroseg/generator/train.py and checkpoint.py (tests/test_rows.py checks it against a run)."""
    c = cfg.resolved()
    arch = ARCHITECTURES[c.arch]
    if arch.fit is not None:  # closed form: no loop; real rows of IoU >= min_iou; the switches it refuses
        fixed = {"arch", "recipe", "noise", "min_iou", "align", "disentangle", "schedule", "cls_weight"}
        return [k for k in params_dict(c) if k in fixed | set(arch.reads)]
    read = set(ALWAYS_READ) | set(arch.reads)
    if c.align or c.disentangle:  # the structure terms: their weight, unseen fakes, temperature
        read.add("lambda")
        if c.align or c.structure == "official":
            read.add("unseen_per_class")
        if c.structure == "paper":
            read.add("tau")
    if c.batch == "classes":
        read |= {"classes_per_batch", "per_class"}
    if c.batch == "images" or c.schedule == "joint":
        read.add("images_per_batch")
    return [k for k in params_dict(c) if k in read]


@dataclass(frozen=True)
class RowConfig:
    """What one generator row trains with.

    generator: the row's resolved config; the keys it does not read (:func:`keys_read`) hold the
    dataclass defaults, so a change of one of them leaves the row's config, and its run, as they
    were. classifier: the raw ``classifier`` section for a row whose head trains alongside the
    generator (schedule joint), else None."""

    generator: GeneratorConfig
    classifier: dict | None

    def params(self) -> dict[str, dict]:
        """As params sections (``generator`` with the read keys only; ``classifier`` if joint)."""
        full = params_dict(self.generator)
        out = {"generator": {k: full[k] for k in keys_read(self.generator)}}
        if self.classifier is not None:
            out["classifier"] = self.classifier
        return out


def row_config(params_file: str | os.PathLike, row: str) -> RowConfig:
    """Row ``row`` of ``params_file``: its generator config reduced to the keys it reads (the rest
    at their defaults, resolved) and, for a joint row, the classifier section."""
    cfg = row_generator(params_file, row).resolved()
    read = params_dict(cfg)
    reduced = from_dict(GeneratorConfig, {k: read[k] for k in keys_read(cfg)}, f"{params_file}: generators.{row}")
    reduced = replace(reduced.resolved(), seed=cfg.seed)
    classifier = None
    if cfg.schedule == "joint":
        classifier = params_value(params_file, "classifier") or {}
        if not isinstance(classifier, dict):
            raise ConfigError(f"{params_file}: classifier must be a mapping, got {classifier!r}")
    return RowConfig(reduced, classifier)
