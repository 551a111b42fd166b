"""Stage fixtures (pipelines/fixtures): a COCO panoptic set -> the same images' annotations in
the official COCO-Stuff label-map or COCO instances format, for the CPU smoke pipelines.

cmd: python stages/coco_fixture.py {stuff,instances} PANOPTIC_JSON OUT
"""

import argparse

from zeroseg import stage
from zeroseg.testing.fixtures import panoptic_to_instances, panoptic_to_stuffmaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("kind", choices=("stuff", "instances"))
    ap.add_argument("panoptic_json")
    ap.add_argument("out", help="label-map folder (stuff) or instances JSON (instances)")
    a = ap.parse_args()
    convert = panoptic_to_stuffmaps if a.kind == "stuff" else panoptic_to_instances
    convert(a.panoptic_json, a.out)


if __name__ == "__main__":
    stage.run(main)
