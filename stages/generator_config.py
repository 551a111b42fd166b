"""Stage generator_config: params `generator` + the row's overrides `generators.ROW` (+ `classifier`
for a row whose head trains alongside, schedule joint) -> the row's config file (JSON), holding
only the keys the row's training reads (zeroseg/generator/rows.py).

cmd: python stages/generator_config.py ROW OUT_JSON
train_generator depends on this file, not on the params sections: a sweep of a key the row does
not read (`-S generator.num_primitives=400` for the GMMN row) writes the same bytes again, and
DVC keeps the row's generator and everything after it.
"""

import argparse

from zeroseg import stage
from zeroseg.atomic import write_json
from zeroseg.generator.rows import row_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("row", help="ablation row: a key of params `generators`")
    ap.add_argument("out", help="the row's config file (JSON; params sections generator [, classifier])")
    a = ap.parse_args()
    write_json(a.out, row_config(stage.PARAMS_FILE, a.row).params())


if __name__ == "__main__":
    stage.run(main)
