"""The linter is part of the test command: ``ruff check`` over the whole repository is clean.

The rules live in pyproject.toml (``[tool.ruff]``): line length 120, import order (isort), pyflakes,
pycodestyle, bugbear and pyupgrade for Python 3.11.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the 'test' extra (pip install -e '.[test]'); not installed here")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"ruff check found problems (fix them or run `ruff check --fix`):\n{r.stdout}{r.stderr}"
