"""Generator rows (params `generators`): the overrides are parsed in one place
(zeroseg/generator/rows.py) for the pipeline's stage and the CLI, and each row's config keeps
only the keys its training reads, so a sweep re-trains exactly the rows that read the swept key."""

import json
from dataclasses import replace

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.test_generator import ROWS, SMALL, _emb, _segmenter, _store
from zeroseg.config import from_dict
from zeroseg.errors import ConfigError
from zeroseg.generator import train as train_module
from zeroseg.generator.config import GeneratorConfig, params_dict
from zeroseg.generator.rows import keys_read, parse_overrides, row_config, row_generator
from zeroseg.generator.train import train_generator
from zeroseg.head.train import ClassifierConfig

PARAMS = ROOT / "params.yaml"
ROOT_ROWS = list(yaml.safe_load(PARAMS.read_text())["generators"])
#: combinations the root rows do not cover: the official structure with one of its terms, a joint
#: head on class batches
EXTRA = [dict(recipe="official", align=False, disentangle=True), dict(recipe="official", align=True, disentangle=False),
         dict(schedule="joint", batch="classes", align=False, disentangle=False)]
#: another valid value for every key some row does not read
OTHER = {"num_primitives": 7, "layers": 2, "heads": 1, "dim": 4, "primitive_layout": "official", "lambda": 0.7,
         "tau": 0.3,
         "unseen_per_class": 3, "classes_per_batch": 3, "per_class": 5, "images_per_batch": 2, "ridge": 0.5,
         # keys only a closed-form row (linear) leaves unread
         "ffn": 16, "dropout": 0.3, "iterations": 3, "checkpoint_every": 2, "mmd": "official", "sigmas": [1.0, 3.0],
         "structure": "official", "optimizer": "official", "lr": 0.1, "lr_schedule": "poly", "batch": "images"}
HEAD = ClassifierConfig(images_per_batch=3, unseen_per_step=1)


def _small(cfg: GeneratorConfig) -> GeneratorConfig:
    """A row's config at the tiny store's scale (same switches)."""
    return replace(cfg, **SMALL, images_per_batch=3)


def _configs() -> list[tuple[str, GeneratorConfig]]:
    out = [(row, _small(row_generator(PARAMS, row))) for row in ROOT_ROWS]
    return out + [(f"extra{i}", _small(GeneratorConfig(**flags))) for i, flags in enumerate(EXTRA)]


CONFIGS = _configs()


@pytest.fixture
def data(tmp_path):
    return _store(tmp_path), _emb(tmp_path, ROWS), _segmenter(tmp_path)


def _train(cfg, data, out):
    st, emb, seg = data
    train_generator(cfg, st, emb, out, show_progress=False, segmenter=seg, head_cfg=HEAD)
    return torch.load(out, weights_only=True)


def test_overrides_read_as_params_are_read():
    assert parse_overrides("arch=gmmn align=false lambda=1e-4 recipe=official", "r") == \
        {"arch": "gmmn", "align": False, "lambda": 0.0001, "recipe": "official"}
    assert parse_overrides("", "r") == {} and parse_overrides(None, "r") == {}
    for bad, msg in [("arch", "must be 'key=value"), ("=gmmn", "must be 'key=value"), (["arch=gmmn"], "must be"),
                     ("align=true align=false", "'align' given twice"), ("seed=3", "params seeds sets")]:
        with pytest.raises(ConfigError, match=msg):
            parse_overrides(bad, "params.yaml: generators.r")


def test_row_errors_name_the_file_and_row(tmp_path):
    p = tmp_path / "params.yaml"
    rows = {"a": "archh=gmmn", "b": "arch=gmmn"}
    p.write_text(yaml.safe_dump({"generator": {"arch": "primitive"}, "generators": rows, "classifier": {}}))
    with pytest.raises(ConfigError, match=r"generators.zz not found; rows: \['a', 'b'\]"):
        row_generator(p, "zz")
    with pytest.raises(ConfigError, match=r"with generators.a\): unknown key\(s\) \['archh'\]"):
        row_generator(p, "a")
    p.write_text(yaml.safe_dump({"generator": {"structure": "official"}, "generators": {"b": "arch=gmmn"}}))
    with pytest.raises(ConfigError, match="the gmmn generator has none"):
        row_generator(p, "b")


def test_a_row_reads_the_keys_of_its_parts():
    """The issue's sweep: num_primitives is the primitive generator's, not the GMMN's; lambda and
    tau weigh the structure terms; a joint row brings the classifier section."""
    read = {row: set(keys_read(row_generator(PARAMS, row))) for row in ROOT_ROWS}
    assert "num_primitives" not in read["gmmn"] and "num_primitives" in read["primitive"]
    assert not {"lambda", "tau"} & read["primitive"] and {"lambda", "tau"} <= read["pading"]
    assert "seed" not in set().union(*read.values())
    assert {row for row in ROOT_ROWS if row_config(PARAMS, row).classifier is not None} == {"pading_official"}


class _Reads:
    """A resolved config that records the attributes a run reads."""

    def __init__(self, cfg: GeneratorConfig):
        object.__setattr__(self, "_cfg", cfg.resolved())
        object.__setattr__(self, "seen", set())

    def resolved(self):
        return self

    def __getattr__(self, name):
        self.seen.add(name)
        return getattr(self._cfg, name)


@pytest.mark.parametrize("name,cfg", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_a_run_reads_no_key_outside_keys_read(name, cfg, data, tmp_path, monkeypatch):
    """Every config attribute a training run touches is among keys_read (or the run's seed)."""
    rec = _Reads(cfg)
    monkeypatch.setattr(train_module, "params_dict", lambda c: params_dict(c._cfg if isinstance(c, _Reads) else c))
    st, emb, seg = data
    train_generator(rec, st, emb, tmp_path / "g.pt", show_progress=False, segmenter=seg, head_cfg=HEAD)
    key = {"lam": "lambda"}
    seen = {key.get(a, a) for a in rec.seen if a in {f for f in GeneratorConfig.__dataclass_fields__}}
    assert seen - {"seed"} <= set(keys_read(cfg)), sorted(seen - {"seed"} - set(keys_read(cfg)))


@pytest.mark.parametrize("name,cfg", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_the_keys_a_row_does_not_read_change_nothing(name, cfg, data, tmp_path):
    """The row's run with every key outside keys_read set otherwise: the same weights (and head)."""
    unread = [k for k in params_dict(cfg) if k not in keys_read(cfg) and k != "seed"]
    assert set(unread) <= set(OTHER), sorted(set(unread) - set(OTHER))
    other = from_dict(GeneratorConfig, {**params_dict(cfg), **{k: OTHER[k] for k in unread}})
    a, b = _train(cfg, data, tmp_path / "a.pt"), _train(other, data, tmp_path / "b.pt")
    for part in ("generator", "joint_head"):
        assert (part in a) == (part in b)
        for k, v in a.get(part, {}).items():
            assert torch.equal(v, b[part][k]) if isinstance(v, torch.Tensor) else v == b[part][k], (part, k)


@pytest.mark.parametrize("row", ROOT_ROWS)
def test_root_rows_train_with_their_full_config(row):
    """The root's params equal the dataclass defaults, so each row's reduced config (unread keys
    at their defaults) is its full config: the checkpoints store what they stored before."""
    full = row_generator(PARAMS, row).resolved()
    rc = row_config(PARAMS, row)
    assert rc.generator == full
    back = from_dict(GeneratorConfig, json.loads(json.dumps(rc.params()))["generator"]).resolved()
    assert back == rc.generator  # what stages/train_generator.py reads from the stage's file


def test_cli_row_trains_what_the_stage_trains(data, tmp_path):
    from typer.testing import CliRunner

    from zeroseg.cli import app

    st, emb, seg = data
    gen = params_dict(_small(GeneratorConfig()))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generator": gen, "generators": {"g": "arch=gmmn align=false "
                                                          "disentangle=false num_primitives=3"}, "classifier": {}}))
    r = CliRunner().invoke(app, ["train-generator", str(st), str(emb), str(tmp_path / "c.pt"), "--params",
                                 str(tmp_path / "params.yaml"), "--row", "g", "--seed", "2"])
    assert r.exit_code == 0, r.output
    cfg = replace(row_config(tmp_path / "params.yaml", "g").generator, seed=2)
    assert cfg.arch == "gmmn" and cfg.num_primitives == GeneratorConfig().num_primitives  # not read by gmmn
    train_generator(cfg, st, emb, tmp_path / "s.pt", show_progress=False)
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("c.pt", "s.pt"))
    assert a["config"] == b["config"] and all(torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])
