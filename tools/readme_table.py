"""The README's results table, generated from a committed report (``<folder>/zero_shot_full.json``).

    python -m tools.readme_table metrics/seeds-0-1-2     # print the table
    python -m tools.readme_table --write README.md       # regenerate every marked block in place

A block in a markdown file is marked as

    <!-- results:metrics/seeds-0-1-2 -->
    | row | PQ seen | ... |
    <!-- /results -->

and ``--write`` replaces what lies between the two markers by ``results_table(<folder>)``, the
folder taken relative to the file's own directory. The report's values are fractions; the table
prints them in % with one decimal, as ``mean ± std`` (``mean`` alone for a one-seed report, ``–``
where the report has no value), one line per row in the report's row order.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from zeroseg.atomic import atomic_file
from zeroseg.errors import DataError

#: (column header, metric key of zero_shot_full.json), in table order.
COLUMNS = (("PQ seen", "pq_seen"), ("PQ unseen", "pq_unseen"), ("PQ HM", "pq_hm"), ("AUSUC", "ausuc"))
FULL_JSON = "zero_shot_full.json"
BLOCK = re.compile(r"(<!-- results:(?P<folder>[^ ]+) -->\n)(?P<body>.*?)(\n<!-- /results -->)", re.DOTALL)


def _rows(report: dict) -> list[str]:
    """The ablation rows of a flat report (keys ``<row>.<metric>.<stat>``; a row has a PQ HM, which
    the report's other sections, ``segmenter`` and ``ceilings``, do not), in the order they first appear."""
    rows: list[str] = []
    for key in report:
        parts = key.rsplit(".", 2)
        if len(parts) == 3 and parts[0] not in rows and f"{parts[0]}.pq_hm.mean" in report:
            rows.append(parts[0])
    return rows


def _cell(report: dict, row: str, metric: str, path: Path) -> str:
    """``mean ± std`` in % (one decimal); ``mean`` when std is null (one seed); ``–`` when absent."""
    key = f"{row}.{metric}.mean"
    if key not in report:
        raise DataError(f"{path}: no key {key!r} (row {row!r}, metric {metric!r})")
    mean, std = report[key], report.get(f"{row}.{metric}.std")
    if mean is None:
        return "–"
    if not isinstance(mean, (int, float)) or not (std is None or isinstance(std, (int, float))):
        raise DataError(f"{path}: {key} = {mean!r}, std = {std!r}: expected numbers")
    return f"{100 * mean:.1f}" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def results_table(folder: str | Path) -> str:
    """The markdown table (no trailing newline) of ``<folder>/zero_shot_full.json``: per row, PQ
    seen / unseen / HM and AUSUC, mean ± std over the report's seeds, in %."""
    path = Path(folder) / FULL_JSON
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (a report of the pipeline's stage 'report')") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    if not isinstance(report, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(report).__name__}")
    rows = _rows(report)
    if not rows:
        raise DataError(f"{path}: no row keys '<row>.<metric>.mean'")
    lines = ["| row | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {row} | " + " | ".join(_cell(report, row, m, path) for _, m in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(folder, body) of every marked results block of a markdown text, in order."""
    return [(m["folder"], m["body"]) for m in BLOCK.finditer(text)]


def rewrite(markdown: str | Path) -> int:
    """Regenerate every marked block of ``markdown`` in place (atomically). Returns the number of
    blocks; a file with none is an error naming it."""
    path = Path(markdown)
    text = path.read_text()
    if not BLOCK.search(text):
        raise DataError(f"{path}: no block '<!-- results:FOLDER -->' ... '<!-- /results -->'")

    def table(m: re.Match) -> str:
        return m[1] + results_table(path.parent / m["folder"]) + m[4]

    new, count = BLOCK.subn(table, text)
    if new != text:
        with atomic_file(path) as tmp:
            tmp.write_text(new)
    return count


def main(argv: list[str]) -> int:
    if len(argv) == 1 and not argv[0].startswith("-"):
        print(results_table(argv[0]))
        return 0
    if len(argv) >= 2 and argv[0] == "--write":
        for name in argv[1:]:
            print(f"{name}: {rewrite(name)} block(s) regenerated")
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
