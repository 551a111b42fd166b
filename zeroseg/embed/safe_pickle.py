"""Restricted unpickling for files that come from other people.

``pickle.load`` calls whatever a file names: a pickle whose ``__reduce__`` returns
``(os.system, ("...",))`` runs a shell command while it is being read. The
:class:`RestrictedUnpickler` resolves a global only from a fixed allow-list: the functions
NumPy's own pickles call to rebuild an array, dtype or scalar (NumPy 1 and 2 module paths, every
protocol 0-5), and the few builtin containers the pickle protocol cannot spell with an opcode.
Any other global fails with a :class:`~zeroseg.errors.DataError` that names the file and the
refused global (e.g. ``posix.system``), before anything is called.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

try:  # NumPy 2 (and the forward-compatible alias in 1.26)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - older NumPy
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

from zeroseg.errors import DataError


def _latin1_encode(obj: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 0-2 pickles use it for ``bytes``; only latin-1, so a file
    cannot reach other codecs (zlib, bz2, ...) through it."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for latin-1 text, got {encoding!r}")
    return obj.encode("latin1")


def _both(module: str, names: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """NumPy 2 writes ``numpy._core.X``, NumPy 1 (and old files) ``numpy.core.X``: same objects."""
    return {(m, n): f for m in (f"numpy._core.{module}", f"numpy.core.{module}") for n, f in names.items()}


def _builtins(*types: type) -> dict[tuple[str, str], Any]:
    """Protocols 0-2 write ``__builtin__`` (the Python 2 name), protocol 3+ ``builtins``."""
    return {(m, t.__name__): t for m in ("builtins", "__builtin__") for t in types}


#: (module, name) -> object: what a pickled NumPy array, dtype, scalar or plain container needs.
ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    **_both("multiarray", {"_reconstruct": _multiarray._reconstruct, "scalar": _multiarray.scalar}),
    **_both("numeric", {"_frombuffer": _numeric._frombuffer}),  # protocol 5
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,  # bytes under protocols 0-2
    # containers without an opcode of their own (dict, list, tuple, str, int, float, bool,
    # None and bytes need no global at protocol 3+)
    **_builtins(set, frozenset, bytearray, complex, bytes),
    ("collections", "OrderedDict"): OrderedDict,
}


IN_MEMORY = 256 * 2**20  # pickles up to this size are unpickled from memory
TABLE_HINT = "NumPy arrays and plain containers are accepted; or save the table as .npy or comma-separated text"


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose globals come only from ``allowed``; ``source`` (the file)
    is named in the error."""

    def __init__(self, file: io.BufferedIOBase, source: object, allowed: dict[tuple[str, str], Any] | None = None,
                 hint: str = TABLE_HINT, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source, self.hint = source, hint
        self.allowed = ARRAY_GLOBALS if allowed is None else allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise DataError(
                f"{self.source}: refused to unpickle the global '{module}.{name}' (a pickle can run code when it is "
                f"read, so only {self.hint})") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused a persistent id in the pickle (only {self.hint})")


def load_pickle(path: str | os.PathLike, allowed: dict[tuple[str, str], Any] | None = None,
                encoding: str = "ASCII", hint: str = TABLE_HINT) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`. A refused global, or any corrupt or
    truncated file, raises :class:`DataError` naming the file."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            # small files from memory: a corrupt length field then fails fast ("truncated")
            # instead of asking the file object for gigabytes
            src = io.BytesIO(f.read()) if os.fstat(f.fileno()).st_size <= IN_MEMORY else f
            return RestrictedUnpickler(src, p, allowed, hint, encoding=encoding).load()
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{p}: pickle file not found") from exc
    except MemoryError as exc:
        raise DataError(f"{p}: not a readable pickle: it asks for more memory than there is") from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError, ... on corrupt data
        raise DataError(f"{p}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
