"""The experiments view: ``dvc exp show`` narrowed to what a sweep changed and what it scored.

``dvc exp show`` lists every param and metric of every pipeline in the repository (over a
thousand columns here). ``zeroseg exp [PIPELINE]`` reads the same data (``dvc exp show --json``)
and prints, for the pipeline in folder PIPELINE (the root by default, or ``pipelines/<name>``),
one block per commit and experiment: the params that differ from its commit (``params.yaml``)
and each ablation row's headline scores from ``metrics/zero_shot.json`` (PQ HM and AUSUC, in
%, ``mean±std`` over the seeds), at most ``width`` characters wide (docs/experiments.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroseg.errors import DataError

PARAMS = "params.yaml"
METRICS = "metrics/zero_shot.json"
HEADLINE = (("pq_hm", "PQ HM"), ("ausuc", "AUSUC"))  # metrics/zero_shot.json keys <row>.<key>.mean / .std
_KEY = re.compile(r"^(?P<row>.+)\.(?P<metric>" + "|".join(k for k, _ in HEADLINE) + r")\.(?P<stat>mean|std)$")


@dataclass(frozen=True)
class Experiment:
    """One line of ``dvc exp show``: a commit, an experiment on it, or the workspace.

    changed: the params (dotted keys) that differ from its commit's, as ``key=value`` text;
    scores: ablation row -> headline metric -> (mean, std), fractions; empty when there are no
    metrics, and ``note`` says why."""

    name: str
    changed: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, tuple[float | None, float | None]]] = field(default_factory=dict)
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict, repr=False)


def repo_root(start: str | os.PathLike = ".") -> Path:
    """The DVC repository holding ``start`` (the first parent with a ``.dvc`` folder)."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir():
            return d
    raise DataError(f"{start}: not inside a DVC repository (no .dvc folder above it)")


def locate(pipeline: str | os.PathLike = ".") -> tuple[Path, str]:
    """(the repository root, the pipeline's folder relative to it, "" for the root) of the
    pipeline in folder ``pipeline`` (its dvc.yaml and params.yaml)."""
    folder = Path(pipeline).resolve()
    if not (folder / PARAMS).is_file():
        raise DataError(f"{pipeline}: no {PARAMS} there (give a pipeline's folder: . or pipelines/<benchmark>)")
    root = repo_root(folder)
    rel = folder.relative_to(root).as_posix()
    return root, "" if rel == "." else rel


def exp_show(root: str | os.PathLike) -> list[dict]:
    """``dvc exp show --json`` run in ``root`` (the workspace, HEAD and HEAD's experiments)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        raise DataError(f"dvc exp show --json failed in {root}: {r.stderr.strip()[-2000:]}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as exc:
        raise DataError(f"dvc exp show --json in {root}: not JSON ({exc}): {r.stdout[:300]!r}") from exc


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _file_data(data: dict | None, section: str, path: str) -> tuple[dict | None, str]:
    """(the file's data, '') or (None, why not) from one ``dvc exp show`` entry's data."""
    if not data:
        return None, "no data"
    entry = (data.get(section) or {}).get(path)
    if entry is None:
        return None, f"no {path}"
    if entry.get("error"):
        err = entry["error"]
        return None, "not run" if err.get("type") == "FileNotFoundError" else f"{path}: {err.get('msg', err)}"
    return entry.get("data") or {}, ""


def scores_of(metrics: dict) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """metrics/zero_shot.json -> row -> headline metric -> (mean, std), rows in file order."""
    out: dict[str, dict[str, list]] = {}
    for key, value in metrics.items():
        m = _KEY.match(key)
        if m:
            stat = out.setdefault(m["row"], {}).setdefault(m["metric"], [None, None])
            stat[m["stat"] == "std"] = value if isinstance(value, (int, float)) else None
    return {row: {k: tuple(v) for k, v in ms.items()} for row, ms in out.items()}


def _entry(e: dict, name: str, params_path: str, metrics_path: str, base: dict[str, Any] | None) -> Experiment:
    data = e.get("data")
    if e.get("error"):
        return Experiment(name, note=f"error: {e['error'].get('msg', e['error'])}")
    params, why = _file_data(data, "params", params_path)
    if params is None:
        return Experiment(name, note=why)
    flat = _flat(params)
    changed = []
    if base is not None:
        changed = [f"{k}={_text(v)}" for k, v in flat.items() if k not in base or base[k] != v]
        changed += [f"{k} deleted" for k in base if k not in flat]
    metrics, why = _file_data(data, "metrics", metrics_path)
    scores = scores_of(metrics) if metrics is not None else {}
    if metrics is not None and not scores:
        why = f"no PQ HM / AUSUC in {metrics_path}"
    return Experiment(name, changed, scores, why, flat)


def _text(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def experiments(shown: list[dict], pipeline: str = "") -> list[Experiment]:
    """The commits and experiments of ``dvc exp show --json`` output for the pipeline in folder
    ``pipeline`` (repository-relative, "" = the root): each commit, then its experiments, newest
    first (params compared with the commit's; an experiment that changed none of this pipeline's
    params and has no metrics of it is another pipeline's, left out); the workspace first when it
    differs from all of them."""
    prefix = f"{pipeline.strip('/')}/" if pipeline.strip("/. ") else ""
    params_path, metrics_path = prefix + PARAMS, prefix + METRICS
    out: list[Experiment] = []
    workspace = None
    for e in shown:
        if e.get("rev") == "workspace":
            workspace = e
            continue
        commit = _entry(e, f"{e.get('name') or ''} {str(e.get('rev'))[:7]}".strip(), params_path, metrics_path, None)
        out.append(commit)
        for group in e.get("experiments") or []:
            for x in group.get("revs") or []:
                name = x.get("name") or group.get("name") or str(x.get("rev"))[:7]
                state = (group.get("executor") or {}).get("state")
                exp = _entry(x, name, params_path, metrics_path, commit.params or None)
                if state and state not in ("success", "failed") and not exp.scores:
                    exp = Experiment(exp.name, exp.changed, {}, state, exp.params)
                if exp.changed or exp.scores or exp.note != "not run":  # else: another pipeline's experiment
                    out.append(exp)
    if workspace is not None:
        base = (out[0].params or None) if out else None
        ws = _entry(workspace, "workspace", params_path, metrics_path, base)
        if not any(ws.params == x.params and ws.scores == x.scores for x in out):
            out.insert(0, ws)
    return out


def _pct(v: tuple[float | None, float | None] | None) -> str:
    if v is None or v[0] is None:
        return "-"
    mean, std = v
    return f"{100 * mean:.1f}" + (f"±{100 * std:.1f}" if std is not None else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def table(exps: list[Experiment], width: int = 120) -> str:
    """The experiments as text at most ``width`` characters wide: per experiment, one line per
    ablation row (PQ HM and AUSUC in %), its changed params beside them, one per line."""
    metric_w = 11
    rows = [r for x in exps for r in x.scores] or ["row"]
    name_w = min(max([len("experiment")] + [len(x.name) for x in exps]), 24)
    row_w = min(max(len(r) for r in rows + ["row"]), 20)
    fixed = name_w + row_w + len(HEADLINE) * (metric_w + 2) + 4
    params_w = max(width - fixed, 12)
    longest = max([len(c) for x in exps for c in x.changed] + [len("changed params")])
    params_w = min(params_w, longest)

    def line(name: str, changed: str, row: str, cells: list[str], row_span: int = row_w) -> str:
        text = (f"{_cut(name, name_w):<{name_w}}  {_cut(changed, params_w):<{params_w}}  {_cut(row, row_span):<{row_w}}"
                + "".join(f"  {c:>{metric_w}}" for c in cells))
        return text.rstrip()

    out = [line("experiment", "changed params", "row", [label for _, label in HEADLINE]),
           "-" * (name_w + params_w + row_w + 4 + len(HEADLINE) * (metric_w + 2))]
    for x in exps:
        changed = x.changed or ["-"]
        if x.scores:
            body = [(r, [_pct(s.get(k)) for k, _ in HEADLINE]) for r, s in x.scores.items()]
        else:  # the reason spans the row and metric columns
            body = [(f"({x.note or 'no metrics'})", [])]
        for i in range(max(len(changed), len(body))):
            row, cells = body[i] if i < len(body) else ("", [])
            span = row_w if x.scores else row_w + len(HEADLINE) * (metric_w + 2)
            out.append(line(x.name if i == 0 else "", changed[i] if i < len(changed) else "", row, cells, span))
    return "\n".join(out)
