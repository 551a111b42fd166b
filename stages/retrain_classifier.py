"""Stage retrain_classifier: a head over seen + unseen + no-object (params section `classifier`).

cmd: python stages/retrain_classifier.py SEGMENTER SEEN_STORE EMBEDDINGS SPLIT_ALL_JSON OUT
       (--unseen-features STORE [--generator CHECKPOINT] | --projection) --seed N
A generator trained with the joint schedule carries its head: with --generator, that head is the
row's head and nothing is retrained.
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.generator.classifier import ClassifierConfig, retrain_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("segmenter", "seen_store", "embeddings", "split_all_json", "out"):
        ap.add_argument(name)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--unseen-features", help="store with unseen features (synthesized, or real: the oracle)")
    g.add_argument("--projection", action="store_true", help="the projection baseline (no unseen features)")
    ap.add_argument("--generator", help="the row's generator: its head, when trained jointly with it")
    ap.add_argument("--seed", type=int, required=True, help="initialisation and batch order (the ablation seed)")
    a = ap.parse_args()
    retrain_classifier(replace(stage.section("classifier", ClassifierConfig), seed=a.seed), a.segmenter, a.seen_store,
                       a.embeddings, a.split_all_json, a.out, a.unseen_features, a.projection, a.generator)


if __name__ == "__main__":
    stage.run(main)
