"""The zeroseg modules a stage script can execute: the static closure of its ``zeroseg`` imports
(module level and inside functions: every import statement of every reached module), as file
paths. A stage's code dependencies in ``dvc.yaml`` must be exactly these files
(tests/test_architecture.py), so editing a module re-runs exactly the stages that use it.

``python -m tests.stage_deps`` prints the list of every stage script."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_path(name: str) -> Path | None:
    """zeroseg.a.b -> zeroseg/a/b.py or zeroseg/a/b/__init__.py (None if neither exists)."""
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def imported_modules(path: Path) -> set[str]:
    """The zeroseg modules one file imports (anywhere in it)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "zeroseg"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "zeroseg":
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if module_path(f"{node.module}.{a.name}")}
    return out


def closure(script: Path) -> list[str]:
    """Repository-relative paths of the zeroseg modules ``script`` reaches, sorted; packages'
    ``__init__.py`` files (docstrings only: tests/test_architecture.py checks) are left out."""
    seen, todo = set(), list(imported_modules(script))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = module_path(name)
        if path is not None:
            todo += sorted(imported_modules(path) - seen)
    files = {module_path(n) for n in seen} - {None}
    return sorted(str(p.relative_to(ROOT)) for p in files if p.name != "__init__.py")


if __name__ == "__main__":
    for script in sorted((ROOT / "stages").glob("*.py")):
        print(f"{script.relative_to(ROOT)}:")
        for f in closure(script):
            print(f"  - {f}")
    sys.exit(0)
