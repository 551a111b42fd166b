"""The README as a front page: short, its results table generated from the committed report, and
every page it sends a reader to (and every link of those pages) present."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.conftest import ROOT
from tools.readme_table import marked_blocks, results_table, rewrite
from zeroseg.errors import DataError

README = ROOT / "README.md"
PAGES = [README, ROOT / "ARCHITECTURE.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (``\\w``, ``-`` and spaces kept),
    spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in _prose(text) if line.startswith("#")}


def test_readme_table_is_generated_from_the_committed_report():
    blocks = marked_blocks(README.read_text())
    assert [folder for folder, _ in blocks] == ["metrics/seeds-0-1-2"]
    assert blocks[0][1] == results_table(ROOT / "metrics/seeds-0-1-2")


def test_readme_is_a_front_page():
    text = README.read_text()
    lines = text.split("\n")
    assert len(text.splitlines()) <= 200
    head = "\n".join(lines[:30])
    assert "zero-shot segmentation" in head and "PADing" in head
    assert head.count("```bash") == 2 and "dvc repro" in head and "pytest" in head
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "dated logs belong in CHANGELOG.md"


def test_every_page_is_linked_from_the_readme():
    links = set(LINK.findall(README.read_text()))
    assert [p.relative_to(ROOT).as_posix() for p in PAGES[1:] if p.relative_to(ROOT).as_posix() not in links] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_resolve(page):
    """Every relative link of the README and the docs pages names an existing file, and its
    #anchor a heading of that file."""
    bad = []
    for target in LINK.findall("\n".join(_prose(page.read_text()))):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert bad == []


def _report(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    flat = {"seeds": [0, 1]}
    for row, cells in rows.items():
        for metric, (mean, std) in cells.items():
            flat[f"{row}.{metric}.mean"], flat[f"{row}.{metric}.std"] = mean, std
            flat[f"{row}.{metric}.s0"] = mean
    (folder / "zero_shot_full.json").write_text(json.dumps(flat))


def test_table_cells_rows_in_file_order_and_named_errors(tmp_path):
    cells = {"pq_seen": (0.5, 0.01), "pq_unseen": (0.25, None), "pq_hm": (1 / 3, 0.0456), "ausuc": (None, None)}
    _report(tmp_path / "r", {"zeta": cells, "alpha": dict(cells, ausuc=(0.1234, 0.005))})
    assert results_table(tmp_path / "r").split("\n") == [
        "| row | PQ seen | PQ unseen | PQ HM | AUSUC |",
        "|---|---|---|---|---|",
        "| zeta | 50.0 ± 1.0 | 25.0 | 33.3 ± 4.6 | – |",
        "| alpha | 50.0 ± 1.0 | 25.0 | 33.3 ± 4.6 | 12.3 ± 0.5 |",
    ]
    _report(tmp_path / "short", {"zeta": {"pq_seen": (0.5, 0.0), "pq_hm": (0.4, 0.0)}})
    with pytest.raises(DataError, match=r"short/zero_shot_full.json: no key 'zeta.pq_unseen.mean'"):
        results_table(tmp_path / "short")
    # the report's other sections (the segmenter's head, the transfer checks) are not ablation rows
    _report(tmp_path / "side", {"zeta": cells, "ceilings": {"loo_attr_median": (1.1, 0.1)}})
    assert [line.split(" |")[0] for line in results_table(tmp_path / "side").split("\n")[2:]] == ["| zeta"]
    with pytest.raises(DataError, match=r"none/zero_shot_full.json: no such file"):
        results_table(tmp_path / "none")


def test_write_regenerates_the_block_in_place(tmp_path):
    shutil.copytree(ROOT / "metrics/seeds-0-1-2", tmp_path / "metrics/seeds-0-1-2")
    doc = tmp_path / "README.md"
    stale = "# t\n\n<!-- results:metrics/seeds-0-1-2 -->\n| old |\n<!-- /results -->\n\nafter\n"
    doc.write_text(stale)
    assert rewrite(doc) == 1
    fresh = doc.read_text()
    assert fresh == stale.replace("| old |", results_table(ROOT / "metrics/seeds-0-1-2"))
    rewrite(doc)
    assert doc.read_text() == fresh  # idempotent
    doc.write_text("# no block\n")
    with pytest.raises(DataError, match="README.md: no block"):
        rewrite(doc)
