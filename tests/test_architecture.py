"""The layers of the code and the pipelines' dependencies, checked on the code itself.

- Layers point down only: no zeroseg module imports from a layer above its own (ARCHITECTURE.md),
  and no zeroseg modules import each other in a cycle.
- No public function or method of zeroseg takes more than 8 parameters (a typed dataclass groups
  them instead); the CLI's commands, whose parameters are its command-line options, aside.
- Every stage of the root pipeline, of the COCO pipeline definition and of the smoke fixtures lists
  exactly the code it can execute (its script + the static closure of the script's zeroseg imports:
  tools/stage_deps.py) and declares every input path of its command; editing a module marks
  exactly its users changed.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tools.stage_deps import closure, imported_modules, module_path, rewrite, runtime_imports

#: low -> high; a module may import its own layer and the ones before it. Within the model parts
#: the order is segmenter < features < embed < head < generator.
LAYERS = (
    ("zeroseg.errors", "zeroseg.atomic", "zeroseg.config", "zeroseg.resume"),  # plumbing
    ("zeroseg.data",),  # COCO formats, class names and class sets
    ("zeroseg.split", "zeroseg.benchmark"),  # the seen/unseen split; the embedded benchmark's generator
    ("zeroseg.metrics",),  # PQ, mAP, mIoU
    ("zeroseg.testing",),  # made-up inputs for tests and smoke runs: COCO fixtures, perturbed predictions
    ("zeroseg.segmenter",), ("zeroseg.features",), ("zeroseg.embed",), ("zeroseg.head",), ("zeroseg.generator",),
    ("zeroseg.evaluate",),  # a head scored on stored queries, curves, fidelity, drawings
    ("zeroseg.report", "zeroseg.predict", "zeroseg.experiments", "zeroseg.cli", "zeroseg.stage"),  # entry points
)


def _layer(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: place it")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / "zeroseg").rglob("*.py")):
        out[".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = p
    return out


def test_no_module_imports_from_a_layer_above_its_own():
    up = [f"{mod} -> {imp}" for mod, path in _modules().items() for imp in sorted(imported_modules(path))
          if module_path(imp) is not None and _layer(imp) > _layer(mod)]
    assert up == []


def test_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule is not vacuous: a data module importing the evaluation layer is reported."""
    bad = tmp_path / "x.py"
    bad.write_text("from zeroseg.evaluate.score import evaluate_head\n")
    assert any(_layer(i) > _layer("zeroseg.data.panoptic") for i in imported_modules(bad))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a module -> imported modules graph, one per strongly connected component of
    more than one module (or a module importing itself), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _import_graph() -> dict[str, set[str]]:
    """zeroseg module -> the zeroseg modules it imports when it runs (``if TYPE_CHECKING:``
    imports, annotations only, left out); packages' ``__init__`` files import nothing."""
    modules = _modules()
    return {mod: {i for i in runtime_imports(path) if i in modules} for mod, path in modules.items()}


def test_no_import_cycle():
    assert import_cycles(_import_graph()) == []


def test_cycle_check_catches_an_import_cycle():
    """The check is not vacuous: score <-> curve (the cycle this package once had) is found, as is
    a longer one; imports under ``if TYPE_CHECKING:`` only do not count."""
    graph = _import_graph()
    graph["zeroseg.evaluate.curve"] = graph["zeroseg.evaluate.curve"] | {"zeroseg.evaluate.score"}
    assert ["zeroseg.evaluate.curve", "zeroseg.evaluate.score"] in import_cycles(graph)
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"a"}}) == [["a"]]
    assert "zeroseg.generator.config" not in runtime_imports(ROOT / "zeroseg/generator/architectures.py")
    assert "zeroseg.generator.config" in imported_modules(ROOT / "zeroseg/generator/architectures.py")


MAX_PARAMETERS = 8


def _long_signatures(tree: ast.Module) -> list[str]:
    """Public functions and methods (of public classes) of a module with more than
    MAX_PARAMETERS parameters (``self`` / ``cls`` not counted); Typer commands aside."""
    def command(fn: ast.FunctionDef) -> bool:
        return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
                   for d in fn.decorator_list)

    out = []
    todo: list[tuple[ast.AST, str]] = [(tree, "")]
    while todo:
        node, prefix = todo.pop()
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
                todo.append((n, f"{prefix}{n.name}."))
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and not command(n) and (
                    not n.name.startswith("_") or n.name == "__init__"):
                a = n.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                if len(names) > MAX_PARAMETERS:
                    out.append(f"{prefix}{n.name} ({len(names)})")
    return out


def test_no_public_function_takes_more_than_8_parameters():
    long = [f"{path.relative_to(ROOT)}: {name}" for path in _modules().values()
            for name in _long_signatures(ast.parse(path.read_text()))]
    assert long == []


def test_signature_check_catches_a_long_signature():
    """Not vacuous: a 9-parameter function or method is reported, a private one or a CLI command not."""
    src = ("def f(a, b, c, d, e, f, g, h, i): pass\n"
           "def g(a, b, c, d, e, f, g, h): pass\n"
           "def _h(a, b, c, d, e, f, g, h, i): pass\n"
           "class C:\n    def m(self, a, b, c, d, e, *, f, g, h, i): pass\n"
           "@app.command()\ndef cmd(a, b, c, d, e, f, g, h, i): pass\n")
    assert sorted(_long_signatures(ast.parse(src))) == ["C.m (9)", "f (9)"]


def test_package_inits_hold_no_code():
    """The stage dependencies leave ``__init__.py`` out: they must stay docstrings (and constants
    such as ``__version__``), importing nothing."""
    for p in (ROOT / "zeroseg").rglob("__init__.py"):
        body = ast.parse(p.read_text()).body
        assert all(isinstance(n, (ast.Expr, ast.Assign)) and isinstance(n.value, ast.Constant) for n in body), p


def _stages(dvc_yaml: Path, params: dict) -> dict[str, dict]:
    """name -> {'cmd', 'deps', 'outs'} with matrix / foreach and ${...} resolved from ``params``
    (the COCO definition: the first generator row and seed; paths kept as written)."""
    raw = yaml.safe_load(dvc_yaml.read_text())["stages"]

    def sub(text: str, item: dict, key: str) -> str:
        def one(m: re.Match) -> str:
            name = m.group(1)
            if name == "key":
                return key
            value: object = params
            if name.startswith("item."):
                value, name = item, name[5:]
            for part in name.split("."):
                value = value[part]
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    out = {}
    for name, st in raw.items():
        items: list[tuple[str, dict]] = [("", {})]
        if "matrix" in st:  # the first value of every matrix key
            first = {k: next(iter(params[v[2:-1]] if isinstance(v, str) else v)) for k, v in st["matrix"].items()}
            items = [("-".join(str(v.get("name", v)) if isinstance(v, dict) else str(v) for v in first.values()),
                      first)]
        elif "foreach" in st:
            items = [(k, v) for k, v in st["foreach"].items()]
        body = st.get("do", st)
        for key, item in items:
            def paths(entries):
                return [sub(next(iter(e)) if isinstance(e, dict) else e, item, key)  # noqa: B023 (called at once)
                        for e in entries or []]
            out[f"{name}@{key}" if key else name] = {
                "cmd": sub(body["cmd"], item, key), "deps": paths(body.get("deps")),
                "outs": paths(body.get("outs")) + paths(body.get("metrics")) + paths(body.get("plots"))}
    return out


PIPELINES = [(ROOT / "dvc.yaml", ROOT / "params.yaml", ""),
             (ROOT / "pipelines/coco-pipeline.yaml", ROOT / "pipelines/coco-panoptic/params.yaml", "../../"),
             (ROOT / "pipelines/fixtures/dvc.yaml", None, "../../")]


def _params(params_file: Path | None) -> dict:
    return yaml.safe_load(params_file.read_text()) if params_file is not None else {}


@pytest.mark.parametrize("dvc_yaml,params_file,repo", PIPELINES, ids=["root", "coco", "fixtures"])
def test_stage_code_deps_are_exactly_what_the_script_imports(dvc_yaml, params_file, repo):
    params = _params(params_file)
    wrong = []
    for name, st in _stages(dvc_yaml, params).items():
        script = next(t for t in shlex.split(st["cmd"]) if t.endswith(".py"))
        script = script.removeprefix(repo)
        want = {script} | set(closure(ROOT / script))
        have = {d.removeprefix(repo) for d in st["deps"]}
        have = {d for d in have if d.startswith(("zeroseg/", "zeroseg", "stages/"))}
        if have != want:
            wrong.append(f"{name}: add {sorted(want - have)}, remove {sorted(have - want)}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("dvc_yaml", [p for p, _, _ in PIPELINES], ids=["root", "coco", "fixtures"])
def test_stage_deps_write_keeps_the_pipeline_files_and_mends_a_stale_one(dvc_yaml):
    """`python -m tools.stage_deps --write` leaves the committed files as they are (their code deps
    are the closures) and puts back a code dep that was removed, in its sorted place."""
    text = dvc_yaml.read_text()
    assert rewrite(text) == text
    line = next(ln for ln in text.splitlines(keepends=True) if ln.rstrip().endswith("zeroseg/errors.py"))
    assert rewrite(text.replace(line, "", 1)) == text


@pytest.mark.parametrize("dvc_yaml,params_file,repo", PIPELINES, ids=["root", "coco", "fixtures"])
def test_every_input_path_of_a_command_is_declared(dvc_yaml, params_file, repo):
    """A path in a stage's command is one of its outs or lies inside one of its deps (the COCO
    image folders excepted: official, read in place, not hashed)."""
    params = _params(params_file)
    exempt = {params.get("prepare", {}).get(k) for k in ("train_images", "val_images")} - {None}
    undeclared = []
    for name, st in _stages(dvc_yaml, params).items():
        tokens = [t for t in shlex.split(st["cmd"]) if "/" in t and not t.endswith(".py") and not t.startswith("-")]
        for t in tokens:
            inside = any(t == d or t.startswith(d.rstrip("/") + "/") for d in st["deps"] + st["outs"])
            out_parent = any(o.startswith(t.rstrip("/") + "/") for o in st["outs"])  # an output folder
            if not (inside or out_parent or t in exempt):
                undeclared.append(f"{name}: {t}")
    assert undeclared == []


def test_editing_the_panoptic_rule_changes_only_the_stages_that_use_it():
    """What `dvc status` reports after an edit of zeroseg/evaluate/inference.py: the stages
    whose deps hold it (evaluation), never the segmenter's training or the feature dumps."""
    stages = _stages(ROOT / "dvc.yaml", yaml.safe_load((ROOT / "params.yaml").read_text()))
    users = {n.split("@")[0] for n, st in stages.items() if "zeroseg/evaluate/inference.py" in st["deps"]}
    assert {"eval_segmenter", "evaluate", "evaluate_baseline", "report"} <= users
    assert not users & {"train_segmenter", "dump_features", "train_generator", "retrain_classifier", "benchmark",
                        "split"}


def test_each_ablation_row_is_declared_once():
    """Rows are declared in params.yaml only, once each (`generators` keys, `baselines` items):
    no row name is typed in dvc.yaml, whose matrices read them (file names such as
    per_class_pq_pading.png aside), and the report takes its rows from the same two keys."""
    from zeroseg.stage import rows

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    declared = list(params["generators"]) + params["baselines"]
    assert len(declared) == len(set(declared)) and "heads" not in params
    dvc_text = re.sub(r"#.*", "", (ROOT / "dvc.yaml").read_text())
    assert [r for r in declared if re.search(rf"(?<![\w/.-]){re.escape(r)}(?![\w.-])", dvc_text)] == []
    assert sorted(rows(str(ROOT / "params.yaml"))[0]) == sorted(declared)


@pytest.mark.parametrize("params_file", [ROOT / "params.yaml"] + sorted(ROOT.glob("pipelines/**/params.yaml")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_params_baselines_are_registered_and_ordered(params_file):
    """Every params file's `baselines` are entries of the baseline registry (stage retrain_baseline
    refuses others); the report lists them before the generator rows, the upper bounds after."""
    from zeroseg.head.baselines import BASELINES
    from zeroseg.stage import UPPER_BOUNDS, rows

    params = yaml.safe_load(params_file.read_text())
    assert set(params["baselines"]) <= set(BASELINES) and set(UPPER_BOUNDS) <= set(BASELINES)
    order, gens = rows(str(params_file))
    lower = [b for b in params["baselines"] if b not in UPPER_BOUNDS]
    assert order == lower + gens + [b for b in params["baselines"] if b in UPPER_BOUNDS]
    assert order[0] == "projection" and gens == list(params["generators"])  # the table's first row
    assert ("oracle" not in order or order[-1] == "oracle") and "oracle" in UPPER_BOUNDS  # the upper bound: last
