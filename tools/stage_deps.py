"""The zeroseg modules a stage script can execute: the static closure of its ``zeroseg`` imports
(module level and inside functions: every import statement of every reached module), as file
paths. A stage's code dependencies in ``dvc.yaml`` must be exactly these files
(tests/test_architecture.py), so editing a module re-runs exactly the stages that use it.

    python -m tools.stage_deps                 # print the code dependencies of every stage script
    python -m tools.stage_deps --write FILE..  # rewrite them in pipeline files (dvc.yaml,
                                               # pipelines/coco-pipeline.yaml, pipelines/fixtures/dvc.yaml)

``--write`` replaces, in each stage's ``deps``, the entries under ``stages/`` and ``zeroseg/``
(with the file's prefix: ``${repo}/`` or ``../../``) by the script of the stage's command and its
closure, sorted, where the first of them stood; every other line is kept as it is. After editing
pipelines/coco-pipeline.yaml, run ``python pipelines/sync.py`` to copy it."""

from __future__ import annotations

import ast
import re
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


def _names(node: ast.AST) -> set[str]:
    """The zeroseg modules one import statement names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "zeroseg"}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "zeroseg":
        return {node.module} | {f"{node.module}.{a.name}" for a in node.names if module_path(f"{node.module}.{a.name}")}
    return set()


def imported_modules(path: Path) -> set[str]:
    """The zeroseg modules one file imports (anywhere in it, ``if TYPE_CHECKING:`` blocks included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        out |= _names(node)
    return out


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(path: Path) -> set[str]:
    """The zeroseg modules one file can import when it runs: :func:`imported_modules` without the
    ``if TYPE_CHECKING:`` blocks (annotations only, never executed)."""
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        out |= _names(node)
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                todo += child.orelse  # the else branch runs
            else:
                todo.append(child)
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


_STAGE = re.compile(r"^  ([\w-]+):")
_SCRIPT = re.compile(r"(\$\{repo\}/|(?:\.\./)+)?(stages/\w+\.py)")
_CODE_DEP = re.compile(r"^(\s+)- (\$\{repo\}/|(?:\.\./)+)?((?:stages|zeroseg)/\S+)\s*$")


def rewrite(text: str) -> str:
    """``text`` of a pipeline file with every stage's code dependencies set to its script's closure."""
    out: list[str] = []
    script = prefix = None
    placed = False
    for line in text.splitlines(keepends=True):
        if _STAGE.match(line):
            script, placed = None, False
        m = _SCRIPT.search(line) if script is None and "cmd:" in line else None
        if m:
            prefix, script = m.group(1) or "", m.group(2)
        dep = _CODE_DEP.match(line)
        if dep and script is not None:
            if not placed:
                indent = dep.group(1)
                out += [f"{indent}- {prefix}{f}\n" for f in [script] + closure(ROOT / script)]
                placed = True
            continue
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        for name in argv[1:]:
            path = Path(name)
            new = rewrite(path.read_text())
            if new != path.read_text():
                path.write_text(new)
                print(f"wrote {path}")
        return 0
    for script in sorted((ROOT / "stages").glob("*.py")):
        print(f"{script.relative_to(ROOT)}:")
        for f in closure(script):
            print(f"  - {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
