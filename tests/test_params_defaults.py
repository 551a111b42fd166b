"""One source of defaults: the root params.yaml sets every key to its dataclass default (a library
user who builds ``GeneratorConfig()`` gets the root pipeline's settings), and the COCO pipelines
write out every key, so retuning a default never changes a COCO run behind its params' back."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from zeroseg.benchmark import BenchmarkConfig
from zeroseg.config import load_section
from zeroseg.data.prepare import PrepareConfig
from zeroseg.embed.sources import EmbedConfig
from zeroseg.evaluate.ceilings import CeilingsConfig
from zeroseg.evaluate.fidelity import FidelityConfig
from zeroseg.evaluate.inference import InferenceConfig
from zeroseg.features.dump import DumpConfig
from zeroseg.generator.config import GeneratorConfig
from zeroseg.generator.rows import row_generator
from zeroseg.generator.synthesize import SynthesizeConfig
from zeroseg.head.train import ClassifierConfig
from zeroseg.report import ReportConfig
from zeroseg.segmenter.model import SegmenterConfig
from zeroseg.split import SplitConfig

SECTIONS = {"prepare": PrepareConfig, "benchmark": BenchmarkConfig, "split": SplitConfig, "embed": EmbedConfig,
            "segmenter": SegmenterConfig, "dump": DumpConfig, "inference": InferenceConfig,
            "generator": GeneratorConfig, "synthesize": SynthesizeConfig, "classifier": ClassifierConfig,
            "fidelity": FidelityConfig, "report": ReportConfig, "ceilings": CeilingsConfig}
VALUES = {"seeds", "baselines", "generators", "repo", "launch"}  # top-level values, not dataclass sections
RUN_SEED = {"segmenter", "generator", "synthesize", "classifier",
            "fidelity"}  # their seed is each run's (the stages' --seed)
COCO = sorted(ROOT.glob("pipelines/*/params.yaml")) + sorted(ROOT.glob("pipelines/*/smoke/params.yaml"))


def _defaults(cls) -> dict:
    """params key -> default (tuples as lists, as YAML writes them)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            d = f.default
        elif f.default_factory is not dataclasses.MISSING:
            d = f.default_factory()
        else:
            continue
        out[f.metadata.get("key", f.name)] = list(d) if isinstance(d, tuple) else d
    return out


def _lists(v):
    return [_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


def _params(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", [ROOT / "params.yaml"] + COCO, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_top_level_key_is_a_known_section_or_value(path):
    params = _params(path)
    assert set(params) <= set(SECTIONS) | VALUES, sorted(set(params) - set(SECTIONS) - VALUES)
    for name in set(params) & set(SECTIONS):
        load_section(path, name, SECTIONS[name])  # known keys, right types
    for row in params.get("generators", {}):
        row_generator(path, row)  # every row's overrides parse and combine


def test_root_params_equal_the_dataclass_defaults():
    params = _params(ROOT / "params.yaml")
    differ = {}
    for name, body in params.items():
        if name not in SECTIONS:
            continue
        defaults = _defaults(SECTIONS[name])
        for key, value in body.items():
            if key not in defaults:
                differ[(name, key)] = (value, "no default")
            elif _lists(value) != _lists(defaults[key]):
                differ[(name, key)] = (value, defaults[key])
    assert differ == {}


@pytest.mark.parametrize("path", COCO, ids=lambda p: str(p.relative_to(ROOT)))
def test_coco_params_write_out_every_key(path):
    """Every key of every section a COCO pipeline has, but the per-run seeds."""
    params = _params(path)
    missing = {name: sorted(set(_defaults(SECTIONS[name])) - set(body) - ({"seed"} if name in RUN_SEED else set()))
               for name, body in params.items() if name in SECTIONS}
    assert {k: v for k, v in missing.items() if v} == {}
