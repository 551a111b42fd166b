"""Helpers for the thin scripts in ``stages/``: read one params section, report errors plainly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from zeroseg.config import load_section
from zeroseg.errors import ZerosegError

T = TypeVar("T")

PARAMS_FILE = "params.yaml"


def section(name: str, cls: type[T], params_file: str = PARAMS_FILE) -> T:
    """This stage's params section as a typed config (dvc runs stages from the pipeline folder)."""
    return load_section(params_file, name, cls)


def run(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; a :class:`ZerosegError` exits 2 with its message, no traceback."""
    try:
        main()
    except ZerosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
