"""Precomputed class-vector tables: a ``.npy``/``.pkl`` matrix or comma-separated text (rows or
columns are classes, e.g. the "withbg" word2vec files) plus a names file. Classes are matched
by name (``tree-merged`` matches ``tree``), never by position.

Every format is safe to take from others: ``.npy`` is read with ``allow_pickle=False`` and
``.pkl``/``.pickle`` with a restricted unpickler (:mod:`zeroseg.embed.safe_pickle`) that accepts
NumPy arrays and plain containers only, so no file can run code while it is read."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroseg.data.names import match_key
from zeroseg.embed.safe_pickle import load_pickle
from zeroseg.errors import ConfigError, DataError


def read_names(path: str | os.PathLike) -> list[str]:
    """One class a line, either ``name`` or ``<index>\\t<name>``."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"embed.table_names: file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: class names are not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"embed.table_names: cannot read {p}: {exc}") from exc
    names = []
    for i, line in enumerate(re.split(r"\r\n|\n|\r", text),
                             start=1):  # not str.splitlines: \x0c, \x1c, ... are no line ends
        if not line.strip():
            continue
        parts = line.split("\t")
        name = parts[-1].strip()
        if not name:
            raise DataError(f"{p}:{i}: empty class name")
        names.append(name)
    return names


def load_table(path: str | os.PathLike, names_path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(names, (K, D) float64 matrix) with rows in the names file's order."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"embed.table: file not found: {p}")
    try:
        if p.suffix == ".npy":
            m = np.load(p, allow_pickle=False)
        elif p.suffix in (".pkl", ".pickle"):
            m = load_pickle(p)
            if isinstance(m, dict):
                raise DataError(f"{p}: the pickle holds a dict (keys {list(m)[:3]}...); a vector table is one "
                                "(classes, dim) matrix with its names in embed.table_names")
            m = np.asarray(m)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": reported below
                m = np.loadtxt(p, delimiter=",", ndmin=2)
    except DataError:
        raise
    except Exception as exc:  # numpy raises ValueError, OSError, UnicodeDecodeError, ... on a bad file
        raise DataError(f"{p}: cannot read a vector table: {exc}") from exc
    names = read_names(names_path)
    if m.ndim != 2:
        raise DataError(f"{p}: expected a 2-d matrix, got shape {m.shape}")
    if m.size == 0:
        raise DataError(f"{p}: the vector table is empty (shape {m.shape})")
    if m.dtype.kind not in "biuf":
        raise DataError(f"{p}: expected a matrix of real numbers, got dtype {m.dtype}")
    if m.shape[0] == len(names):
        pass
    elif m.shape[1] == len(names):
        m = m.T  # columns are classes (the "withbg" text format)
    else:
        raise DataError(f"{p}: matrix shape {m.shape} fits neither rows nor columns to the {len(names)} names in "
                        f"{names_path}")
    if not np.isfinite(m).all():
        raise DataError(f"{p}: the table has NaN or infinite values")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{names_path}: duplicate class names {dup}")
    return names, np.asarray(m, np.float64)


def match_table(class_names: Sequence[str], table_names: Sequence[str],
                matrix: np.ndarray) -> tuple[dict[str, np.ndarray], list[str]]:
    """Match classes to table rows by name (exact first, then cleaned). Returns the vectors of
    the matched classes and the list of class names that matched no row."""
    exact = {n: i for i, n in enumerate(table_names)}
    keyed: dict[str, int] = {}
    for i, n in enumerate(table_names):
        keyed.setdefault(match_key(n), i)
    found, missing = {}, []
    for name in class_names:
        i = exact.get(name, keyed.get(match_key(name)))
        if i is None:
            missing.append(name)
        else:
            found[name] = matrix[i]
    return found, missing
