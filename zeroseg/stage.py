"""Helpers for the thin scripts in ``stages/``: read one params section, report errors plainly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from zeroseg.config import load_section, params_value
from zeroseg.errors import ConfigError, ZerosegError

T = TypeVar("T")

PARAMS_FILE = "params.yaml"


def section(name: str, cls: type[T], params_file: str = PARAMS_FILE) -> T:
    """This stage's params section as a typed config (dvc runs stages from the pipeline folder)."""
    return load_section(params_file, name, cls)


def value(name: str, params_file: str = PARAMS_FILE) -> Any:
    """A top-level params value that several stages share (``seeds``, ``generators``, ``baselines``)."""
    return params_value(params_file, name, "top-level key")


#: baselines the report lists after the generator rows: they see real unseen features (upper
#: bounds); the other baselines come before them. The baselines themselves: zeroseg/head/baselines.py.
UPPER_BOUNDS = ("oracle",)


def rows(params_file: str = PARAMS_FILE) -> tuple[list[str], list[str]]:
    """(every ablation row in the report's order: the ``baselines`` in params order, the
    ``generators`` rows in params order, the upper-bound baselines (:data:`UPPER_BOUNDS`); the
    generator rows alone). Rows are declared once: params ``generators`` (a mapping) and
    ``baselines`` (names of zeroseg.head.baselines.BASELINES; stage retrain_baseline refuses others)."""
    gens, base = value("generators", params_file), value("baselines", params_file)
    if not isinstance(gens, dict) or not gens:
        raise ConfigError(f"{params_file}: generators must be a mapping row -> 'key=value ...', got {gens!r}")
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base) or len(set(base)) != len(base):
        raise ConfigError(f"{params_file}: baselines must be a list of distinct baseline names, got {base!r}")
    clash = sorted(set(gens) & set(base))
    if clash:
        raise ConfigError(f"{params_file}: rows {clash} are both a generator row and a baseline")
    return ([b for b in base if b not in UPPER_BOUNDS] + list(gens) + [b for b in base if b in UPPER_BOUNDS],
            list(gens))


def seeds(params_file: str = PARAMS_FILE) -> list[int]:
    """Top-level ``seeds``: the generator/classifier seeds every ablation row is run with."""
    s = value("seeds", params_file)
    if not isinstance(s, list) or not s or not all(isinstance(x, int) and not isinstance(x, bool) for x in s) \
            or len(set(s)) != len(s):
        raise ConfigError(f"{params_file}: seeds must be a non-empty list of distinct integers, got {s!r}")
    return s


def write_tables_and_metric(tables: dict[str, Any], metrics_json: str, metrics: dict) -> None:
    """Parquet ``tables`` (path -> pandas DataFrame) and the flat JSON ``metrics``, committed
    together (all or none: a later stage reads them together), the metric last."""
    from zeroseg.atomic import atomic_outputs, json_text

    with atomic_outputs() as outs:
        for path, df in tables.items():
            with outs.file(path) as tmp:
                df.to_parquet(tmp, index=False)
        with outs.file(metrics_json) as tmp:
            tmp.write_text(json_text(metrics))


def run(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; a :class:`ZerosegError` exits 2 with its message, no traceback."""
    try:
        main()
    except ZerosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
