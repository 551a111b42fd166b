"""Stage retrain_classifier: the class head of one ablation row over seen + unseen + no-object
(params section `classifier`).

cmd: python stages/retrain_classifier.py SEGMENTER SEEN_STORE EMBEDDINGS SPLIT_ALL_JSON OUT
       (--unseen-features STORE --generator CHECKPOINT | --baseline NAME [--unseen-features STORE])
       --seed N
A generator row draws its unseen features from its synthetic store; a generator trained with the
joint schedule carries its head, which is the row's head (nothing is retrained). The baselines
(zeroseg/head/baselines.py): `projection` (no unseen features) and `oracle` (the real unseen
features of --unseen-features).
"""

import argparse
from dataclasses import replace

from zeroseg import stage
from zeroseg.errors import ConfigError
from zeroseg.generator.checkpoint import joint_head
from zeroseg.head.baselines import BASELINES
from zeroseg.head.retrain import HeadFiles, retrain_classifier
from zeroseg.head.train import ClassifierConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("segmenter", "seen_store", "embeddings", "split_all_json", "out"):
        ap.add_argument(name)
    ap.add_argument("--unseen-features", help="store with unseen features (synthesized, or real: the oracle)")
    ap.add_argument("--generator", help="the row's generator: its head, when trained jointly with it")
    ap.add_argument("--baseline", choices=list(BASELINES), help="a baseline row instead of a generator row")
    ap.add_argument("--seed", type=int, required=True, help="initialisation and batch order (the ablation seed)")
    a = ap.parse_args()
    if a.baseline is None and (a.generator is None or a.unseen_features is None):
        raise ConfigError("retrain_classifier: a generator row needs --unseen-features and --generator")
    joint = joint_head(a.generator) if a.generator else None
    files = HeadFiles(a.segmenter, a.seen_store, a.embeddings, a.split_all_json, a.out, a.unseen_features)
    retrain_classifier(replace(stage.section("classifier", ClassifierConfig), seed=a.seed), files, a.baseline, joint)


if __name__ == "__main__":
    stage.run(main)
