"""Stage ceilings: the transfer checks of the dumped query features, before any generator
(params section `ceilings`): leave-one-seen-class-out placement with ideal attributes and with
the class-name embeddings, the same placement for every unseen class, and nearest-class-mean
GZSL accuracy with the real unseen means and with linearly placed ones.

cmd: python stages/ceilings.py SEEN_STORE UNSEEN_STORE VAL_STORE EMBEDDINGS SPLIT_ALL_JSON METRICS_JSON TABLE_PARQUET
"""

import argparse

from zeroseg import stage
from zeroseg.evaluate.ceilings import CeilingsConfig, transfer_checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("seen_store", "unseen_store", "val_store", "embeddings", "split_all_json", "metrics_json", "table"):
        ap.add_argument(name)
    a = ap.parse_args()
    res = transfer_checks(stage.section("ceilings", CeilingsConfig), a.seen_store, a.unseen_store, a.val_store,
                          a.embeddings, a.split_all_json)
    stage.write_tables_and_metric({a.table: res.per_class}, a.metrics_json, res.metrics)


if __name__ == "__main__":
    stage.run(main)
