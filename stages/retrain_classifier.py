"""Stage retrain_classifier: a head over seen + unseen + no-object (params section `classifier`).

cmd: python stages/retrain_classifier.py SEGMENTER SEEN_STORE EMBEDDINGS SPLIT_ALL_JSON OUT
       (--unseen-features STORE | --projection)
"""

import argparse

from zeroseg import stage
from zeroseg.generator.classifier import ClassifierConfig, retrain_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("segmenter", "seen_store", "embeddings", "split_all_json", "out"):
        ap.add_argument(name)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--unseen-features", help="store with unseen features (synthesized, or real: the oracle)")
    g.add_argument("--projection", action="store_true", help="the projection baseline (no unseen features)")
    a = ap.parse_args()
    retrain_classifier(stage.section("classifier", ClassifierConfig), a.segmenter, a.seen_store, a.embeddings,
                       a.split_all_json, a.out, a.unseen_features, a.projection)


if __name__ == "__main__":
    stage.run(main)
