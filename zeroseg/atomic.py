"""Atomic writes: a reader never sees a half-written artifact.

Every artifact is first written under a temporary name in the same folder as its final
path and renamed into place only when complete; on error the temporary is removed, so an
interrupted stage leaves nothing a later stage would read. A temporary is named
``.<final name>.tmp-<pid>-<random>`` (a folder; a file is written inside it under its
final name, so formats that record their file name, e.g. ``torch.save``'s archive name,
come out byte-identical run after run). What a killed process leaves (SIGKILL, power
cut: no ``except`` runs) is removed by the next write of the same path, once its pid is
no longer alive; a concurrent live writer's temporaries are never touched.

A stage with several outputs writes them through :func:`atomic_outputs`, which commits them
together: never a mix of previous and new outputs.

Test hooks: :func:`written` counts each file or chunk completed in a temporary location;
with the environment variable ``ZEROSEG_TEST_KILL_AFTER_WRITES=N`` the process kills itself
with SIGKILL at the N-th (tests/test_interrupt.py: an interruption in the middle of a
stage's writes). ``ZEROSEG_TEST_KILL_IN_COMMIT=N`` does the same after the N-th step (one
removal of a previous version or one rename) of a multi-output commit. Unset, they do nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KILL_AFTER_WRITES = "ZEROSEG_TEST_KILL_AFTER_WRITES"
KILL_IN_COMMIT = "ZEROSEG_TEST_KILL_IN_COMMIT"
_counts = {KILL_AFTER_WRITES: 0, KILL_IN_COMMIT: 0}


def _count(hook: str) -> None:
    n = os.environ.get(hook)
    if not n:
        return
    _counts[hook] += 1
    if _counts[hook] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def written() -> None:
    """One more file or chunk complete in a temporary location (the test hook, see above)."""
    _count(KILL_AFTER_WRITES)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: str | os.PathLike) -> None:
    """Remove the temporaries (``.<name>.tmp-<pid>-*``, ``.<name>.old-<pid>``) that writers of
    ``final`` which are no longer running left beside it."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    for kind in ("tmp", "old"):
        prefix = f".{final.name}.{kind}-"
        for p in final.parent.iterdir():
            if p.name.startswith(prefix):
                pid = p.name[len(prefix):].split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    _remove(p)


def _temp_dir(final: Path) -> Path:
    """A fresh, private temporary folder beside ``final`` (ordinary permissions, not mkdtemp's 0700)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename folder ``tmp`` onto ``final`` (a folder cannot replace a non-empty one in one step:
    the previous version is moved aside first, then removed)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists() or old.is_symlink():
        _remove(old)


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``final`` when the block succeeds."""
    final = Path(final)
    tmp = _temp_dir(final)
    try:
        yield tmp
        written()  # complete in its temporary folder, not yet in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


@contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (not yet existing; same name as ``final``, in a temporary folder
    beside it) renamed onto ``final`` when the block succeeds."""
    final = Path(final)
    box = _temp_dir(final)
    tmp = box / final.name
    try:
        yield tmp
        written()
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(box, ignore_errors=True)
        raise
    shutil.rmtree(box, ignore_errors=True)


class Outputs:
    """The outputs of one stage, replaced together (see :func:`atomic_outputs`)."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path, Path]] = []  # (temporary folder, temporary path, final)
        self._gone: list[Path] = []  # outputs not produced this time

    def _add(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        if any(f == final for _, _, f in self._items):
            raise ValueError(f"{final}: already an output of this commit")
        box = _temp_dir(final)
        self._items.append((box, box / final.name, final))
        return box / final.name

    @contextmanager
    def file(self, final: str | os.PathLike) -> Iterator[Path]:
        """Yield the temporary path of output file ``final`` (write it within the block)."""
        yield self._add(final)
        written()

    @contextmanager
    def dir(self, final: str | os.PathLike) -> Iterator[Path]:
        """Yield the (empty, existing) temporary folder of output folder ``final``."""
        tmp = self._add(final)
        tmp.mkdir()
        yield tmp
        written()

    def absent(self, final: str | os.PathLike) -> None:
        """Output ``final`` is not produced this time: its previous version goes at the commit."""
        self._gone.append(Path(final))

    def commit(self) -> None:
        """Remove every previous version, the last added first, then rename the temporaries into
        place in the order they were added (put the headline metric last). At every instant the
        last output is present only while the whole set of one version is: a reader that checks
        it (the report checks each row's metric) never reads a set half removed or half renamed."""
        for _, tmp, final in self._items:
            if not (tmp.exists() or tmp.is_symlink()):
                raise FileNotFoundError(f"{final}: its temporary {tmp} was never written")
        for final in [f for _, _, f in reversed(self._items)] + self._gone:
            _remove(final)
            _count(KILL_IN_COMMIT)
        for box, tmp, final in self._items:
            os.replace(tmp, final)
            _count(KILL_IN_COMMIT)
            shutil.rmtree(box, ignore_errors=True)
        self._items, self._gone = [], []

    def abort(self) -> None:
        for box, _, _ in self._items:
            shutil.rmtree(box, ignore_errors=True)
        self._items = []


@contextmanager
def atomic_outputs() -> Iterator[Outputs]:
    """Several outputs of one stage committed together when the block succeeds::

        with atomic_outputs() as outs:
            with outs.file(table_path) as tmp:
                df.to_parquet(tmp)
            with outs.file(metrics_path) as tmp:
                tmp.write_text(json_text(metrics))

    Each is written under a temporary name; at the commit every previous version is removed
    (the last output's first) before any new one is renamed into place (the last output last),
    so an interruption leaves each output absent, previous or new and complete, never previous
    ones beside new ones (a later stage would read a mix), and the last output present only
    beside the complete set of its version. On error nothing is replaced."""
    outs = Outputs()
    try:
        yield outs
    except BaseException:
        outs.abort()
        raise
    outs.commit()


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as the JSON text :func:`write_json` writes."""
    return json.dumps(obj, indent=indent) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json_text(obj, indent))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file; every way it can be unreadable (missing, a folder, not UTF-8, not
    JSON, numbers of thousands of digits, nesting too deep) is a :class:`DataError` naming it."""
    from zeroseg.errors import DataError

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{p}: {what} not found") from exc
    except OSError as exc:
        raise DataError(f"{p}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: the {what} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from exc
    except (ValueError, RecursionError) as exc:  # e.g. integers over 4300 digits, nesting past the recursion limit
        raise DataError(f"{p}: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from exc
