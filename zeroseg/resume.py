"""Exact resume of long training loops: the global RNG states in a form
``torch.load(weights_only=True)`` accepts, and the test hook that interrupts a run.

A resume file is used only when it was written by a run of the same config on the same data;
otherwise the run starts afresh and says why on stderr (:func:`start_afresh`). A resume file
that cannot be read (truncated, garbage bytes) is an error naming it (:func:`read_resume_file`).

Test hook: with the environment variable ``ZEROSEG_TEST_KILL_AT_STEP=N`` a training loop
kills its own process with SIGKILL right after step N (tests/test_resume.py). Unset, nothing.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroseg.errors import DataError

KILL_AT_STEP = "ZEROSEG_TEST_KILL_AT_STEP"
UNREADABLE_HINT = "the resume file of an interrupted run: delete it to start afresh"


def read_resume_file(path: str | os.PathLike, keys: tuple[str, ...]) -> dict:
    """The dict saved at ``path`` (``torch.load(weights_only=True)``) with ``keys``; anything else
    (truncated, garbage bytes, another object) is a :class:`DataError` naming the file."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, garbage bytes, or an object weights_only refuses
        why = type(exc).__name__
        raise DataError(f"{path}: not readable, truncated or corrupt ({why}); {UNREADABLE_HINT}") from exc
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise DataError(f"{path}: no {missing} in it; {UNREADABLE_HINT}")
    return ck


def changed_keys(old: Any, new: dict) -> list[str]:
    """The keys of ``new`` whose value in ``old`` (a dict, else everything differs) is another."""
    return sorted(k for k in set(new) | set(old if isinstance(old, dict) else {})
                  if not isinstance(old, dict) or old.get(k) != new.get(k))


def start_afresh(path: str | os.PathLike, why: str) -> None:
    """Say on stderr that the resume file ``path`` is not used and why."""
    print(f"note: {path} is from another run ({why}): not resuming from it, training starts afresh", file=sys.stderr)


def kill_point(done: int) -> None:
    """Call after each completed step ``done`` (1-based): the test hook above."""
    if os.environ.get(KILL_AT_STEP) == str(done):
        os.kill(os.getpid(), signal.SIGKILL)


def rng_state(generator: np.random.Generator | None = None) -> dict:
    """torch, Python and NumPy global RNG states (+ ``generator``'s, if given)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                       float(np_state[4])]}
    if generator is not None:  # PCG64's 128-bit integers as strings (weights_only pickles stay simple)
        bg = generator.bit_generator.state
        state["generator"] = {"bit_generator": bg["bit_generator"], "state": str(bg["state"]["state"]),
                              "inc": str(bg["state"]["inc"]), "has_uint32": int(bg["has_uint32"]),
                              "uinteger": int(bg["uinteger"])}
    return state


def set_rng_state(state: dict, generator: np.random.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if generator is not None:
        g = state["generator"]
        generator.bit_generator.state = {"bit_generator": g["bit_generator"],
                                         "state": {"state": int(g["state"]), "inc": int(g["inc"])},
                                         "has_uint32": g["has_uint32"], "uinteger": g["uinteger"]}
