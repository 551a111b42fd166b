import numpy as np
import pandas as pd
import pytest
import torch

from zeroseg.embed.space import class_space
from zeroseg.errors import DataError
from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.checkpoint import joint_head, load_generator, synthesize
from zeroseg.generator.config import GeneratorConfig
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd
from zeroseg.generator.models import GMMNGenerator, PrimitiveGenerator, PrimitiveSpec
from zeroseg.generator.train import train_generator
from zeroseg.head.train import ClassifierConfig, SeenRows, UnseenPool, retrain_head


@pytest.mark.parametrize("gen", [GMMNGenerator(12, 8, hidden=32, noise_dim=12),
                                 PrimitiveGenerator(12, 8, PrimitiveSpec(num_primitives=20, layers=2, heads=2,
                                                                         ffn=32))])
def test_generator_shapes_gradients_and_noise(gen):
    sem = torch.randn(5, 12)
    out = gen(sem)
    assert out.shape == (5, 8)
    out.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters() if p.requires_grad)
    gen.eval()
    assert not torch.allclose(gen(sem), gen(sem))  # different noise draws -> different features


def test_mmd_zero_for_identical_positive_otherwise():
    x = torch.randn(20, 6)
    assert mmd(x, x.clone(), (1.0, 5.0)).abs() < 1e-6
    assert mmd(x, x + 0.5, (1.0, 5.0)) > 1e-3
    assert mmd(x, torch.randn(20, 6) + 3, (1.0, 5.0)) > mmd(x, x + 0.5, (1.0, 5.0))


def test_alignment_zero_when_similarities_match():
    sem_s, sem_u = (torch.nn.functional.normalize(torch.randn(6, 4), dim=-1),
                    torch.nn.functional.normalize(torch.randn(3, 4), dim=-1))
    assert alignment_loss(sem_s * 3, sem_s, sem_u * 2, sem_u, 0.1).abs() < 1e-5  # same directions, any norm
    assert alignment_loss(torch.randn(6, 4), sem_s, torch.randn(3, 4), sem_u, 0.1) > 1e-3


def test_disentangler_losses_and_gradients():
    dis = Disentangler(8, 4, unrelated_dim=3, hidden=16)
    emb = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    x = torch.randn(10, 8, requires_grad=True)
    loss, related = dis.losses(x, torch.randint(0, 5, (10,)), emb, 0.1)
    assert related.shape == (10, 4) and loss.ndim == 0
    loss.backward()
    assert x.grad is not None and all(p.grad is not None for p in dis.parameters())


# ---- generator training on a small store ------------------------------------------------

def _store(tmp_path, nan=False):
    rng = np.random.default_rng(0)
    centres = {1: rng.normal(size=8) * 3, 2: rng.normal(size=8) * 3, 3: rng.normal(size=8) * 3}
    tmp = tmp_path / ".st.tmp"
    w = ShardWriter(tmp, "rank-000", 8, "float32")
    for i in range(30):
        c = 1 + i % 3
        f = (centres[c] + rng.normal(size=(4, 8))).astype(np.float32)
        w.add_image(i, f, {"label": np.array([c, -1, -1, -1], np.int32), "mask_iou": np.full(4, 0.9, np.float32),
                           "score": np.ones(4, np.float32), "query_index": np.arange(4, dtype=np.int16)})
    w.close()
    finalize_store(tmp, tmp_path / "st", {"dim": 8, "classes": [{"id": c} for c in (1, 2, 3)]})
    if nan:  # a store corrupted on disk (the writer itself refuses non-finite rows)
        import zarr

        zarr.open_group(str(tmp_path / "st" / "shards" / "rank-000"), mode="r+")["features"][21, 0] = np.inf
    return tmp_path / "st"


def _emb(tmp_path, rows, dims=None):
    rng = np.random.default_rng(1)
    vecs = [rng.normal(size=(dims or {}).get(c, 6)).astype(np.float32) for c, _ in rows]
    vecs = [v / np.linalg.norm(v) for v in vecs]
    df = pd.DataFrame({"category_id": [c for c, _ in rows], "name": [f"c{c}" for c, _ in rows],
                       "split": [s for _, s in rows], "vector": vecs})
    df.to_parquet(tmp_path / "emb.parquet")
    return tmp_path / "emb.parquet"


ROWS = [(1, "seen"), (2, "seen"), (3, "seen"), (4, "unseen"), (5, "unseen")]
SMALL = dict(num_primitives=16, layers=1, heads=2, ffn=32, iterations=5, classes_per_batch=2, per_class=4,
             unseen_per_class=2, sigmas=(1.0, 4.0))


def _segmenter(tmp_path, class_ids=(1, 2, 3), dim=8):
    """A checkpoint with what the classifier reads of a segmenter: its seen head and class list."""
    g = torch.Generator().manual_seed(3)
    ck = {"model": {"class_predictor.weight": torch.randn(len(class_ids) + 1, dim, generator=g),
                    "class_predictor.bias": torch.zeros(len(class_ids) + 1)},
          "config": {}, "hf_config": {}, "step": 0,
          "classes": [{"id": c, "name": f"c{c}", "isthing": 1} for c in class_ids]}
    torch.save(ck, tmp_path / "seg.pt")
    return tmp_path / "seg.pt"


@pytest.mark.parametrize("flags", [dict(arch="gmmn", align=False, disentangle=False), dict(arch="primitive"),
                                   dict(arch="primitive", recipe="official"),
                                   dict(arch="gmmn", align=False, disentangle=False, schedule="joint",
                                        batch="classes")])
def test_train_generator_deterministic(tmp_path, flags):
    st, emb, seg = _store(tmp_path), _emb(tmp_path, ROWS), _segmenter(tmp_path)
    cfg = GeneratorConfig(**SMALL, **flags)
    head_cfg = ClassifierConfig(images_per_batch=3, unseen_per_step=1)
    train_generator(cfg, st, emb, tmp_path / "a.pt", show_progress=False, segmenter=seg, head_cfg=head_cfg)
    train_generator(cfg, st, emb, tmp_path / "b.pt", show_progress=False, segmenter=seg, head_cfg=head_cfg)
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert all(torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])
    gen, cfg2, space = load_generator(tmp_path / "a.pt")
    assert cfg2 == cfg.resolved() and space.unseen_ids == [4, 5]
    joint = joint_head(tmp_path / "a.pt")
    assert (joint is not None) == (cfg.resolved().schedule == "joint")
    if joint is not None:
        assert joint.weight.shape == (6, 8) and torch.equal(joint.weight, b["joint_head"]["weight"])
        assert joint.class_ids == space.all_ids
    x, idx = synthesize(gen, space.emb, 3)
    assert x.shape == (15, 8) and np.isfinite(x).all()


class _ToyGenerator(torch.nn.Module):
    """A test-only architecture: one Linear over [a_c; z], z ~ N(0, noise²) of the semantic's size."""

    def __init__(self, sem_dim: int, feat_dim: int, noise: float) -> None:
        super().__init__()
        self.lin, self.noise = torch.nn.Linear(2 * sem_dim, feat_dim), noise

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([sem, torch.randn_like(sem) * self.noise], -1))


def test_an_architecture_registered_from_outside_is_validated_built_trained_and_loaded(tmp_path, monkeypatch):
    """A new architecture is a module and one entry of ARCHITECTURES, here made from this test
    module: params validation accepts its name (and refuses it before it is registered), the
    trainer builds and trains it, a checkpoint loads back into it; without a learned projection
    it is refused for the official structure."""
    import dataclasses

    import yaml

    from zeroseg.config import load_section
    from zeroseg.errors import ConfigError
    from zeroseg.generator.architectures import ARCHITECTURES, Architecture

    built = []

    def toy(cfg, sem_dim, feat_dim):
        module = _ToyGenerator(sem_dim, feat_dim, cfg.noise)
        built.append((sem_dim, feat_dim, module.lin.weight.detach().clone()))
        return module

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"generator": dict(SMALL, arch="toy", sigmas=list(SMALL["sigmas"]))}))
    with pytest.raises(ConfigError, match=f"generator.arch: one of {', '.join(ARCHITECTURES)}, got 'toy'"):
        load_section(params, "generator", GeneratorConfig)
    monkeypatch.setitem(ARCHITECTURES, "toy", Architecture(toy))
    cfg = load_section(params, "generator", GeneratorConfig)
    with pytest.raises(ConfigError, match="the toy generator has none"):
        dataclasses.replace(cfg, structure="official").resolved()
    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    train_generator(cfg, st, emb, tmp_path / "toy.pt", show_progress=False)
    gen, cfg2, space = load_generator(tmp_path / "toy.pt")
    assert isinstance(gen, _ToyGenerator) and cfg2 == cfg.resolved() and [b[:2] for b in built] == [(6, 8), (6, 8)]
    assert not torch.equal(gen.lin.weight, built[0][2])  # the trained weights, not the initial ones
    x, _ = synthesize(gen, space.emb, 3)
    assert x.shape == (15, 8) and np.isfinite(x).all()


def test_a_checkpoint_written_before_the_primitive_layout_rename_loads(tmp_path):
    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    cfg = GeneratorConfig(**SMALL, recipe="official", schedule="after", cls_weight=0.0)
    train_generator(cfg, st, emb, tmp_path / "g.pt", show_progress=False)
    ck = torch.load(tmp_path / "g.pt", weights_only=True)
    ck["config"]["architecture"] = ck["config"].pop("primitive_layout")
    torch.save(ck, tmp_path / "old.pt")
    gen, cfg, _ = load_generator(tmp_path / "old.pt")
    assert cfg.primitive_layout == "official" and isinstance(gen.out, torch.nn.Identity)


def test_a_baseline_registered_from_outside_makes_the_rows_head(tmp_path, monkeypatch):
    """A new baseline is a function and one entry of BASELINES, here made from this test module:
    retrain_classifier (the stage's and the CLI's function) saves the head it returns; an
    unregistered name is refused before anything is read; the registered ones still work."""
    import json

    from zeroseg.errors import ConfigError
    from zeroseg.head.baselines import BASELINES
    from zeroseg.head.model import Head, load_head
    from zeroseg.head.retrain import HeadFiles, retrain_classifier

    def seen_means(inputs):
        """Each class's row: its mean seen feature (unseen rows and no-object: the segmenter's no-object)."""
        x, y = torch.from_numpy(inputs.seen.x), torch.from_numpy(inputs.seen.y)
        rows = [x[y == k].mean(0) for k in range(len(inputs.space.seen_ids))]
        rows += [inputs.segmenter.weight[-1]] * (len(inputs.space.unseen_ids) + 1)
        return Head(torch.stack(rows), torch.zeros(len(rows)), inputs.space.all_ids, inputs.isthing), "seen means"

    st, emb, seg = _store(tmp_path), _emb(tmp_path, ROWS), _segmenter(tmp_path)
    cats = [{"id": c, "name": f"c{c}", "isthing": 1, "split": s} for c, s in ROWS]
    (tmp_path / "all.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    files = HeadFiles(seg, st, emb, tmp_path / "all.json", tmp_path / "head.pt")
    cfg = ClassifierConfig(iterations=5, images_per_batch=3)
    with pytest.raises(ConfigError, match="baseline: one of projection, oracle, got 'seen_means'"):
        retrain_classifier(cfg, files, "seen_means")
    monkeypatch.setitem(BASELINES, "seen_means", seen_means)
    head = retrain_classifier(cfg, files, "seen_means")
    saved = torch.load(tmp_path / "head.pt", weights_only=True)
    assert saved["kind"] == "seen means" and torch.equal(load_head(tmp_path / "head.pt").weight, head.weight)
    assert head.weight.shape == (6, 8) and head.class_ids == [1, 2, 3, 4, 5]
    assert torch.allclose(head.weight[0], torch.from_numpy(FeatureStore(st).features(np.flatnonzero(
        FeatureStore(st).labels == 1))).mean(0))
    assert retrain_classifier(cfg, files, "projection").proj_weight is not None
    with pytest.raises(DataError, match="baseline oracle: give the store of the real unseen features"):
        retrain_classifier(cfg, files, "oracle")


def test_bad_inputs_fail_before_training(tmp_path):
    st = _store(tmp_path)
    cfg = GeneratorConfig(**SMALL)
    with pytest.raises(DataError, match=r"no embedding for seen class id\(s\) \[3\]"):
        train_generator(cfg, st, _emb(tmp_path, [(1, "seen"), (2, "seen"), (4, "unseen")]), tmp_path / "g.pt")
    with pytest.raises(DataError, match=r"seen classes \[9\] are not among the segmenter's classes"):
        train_generator(cfg, st, _emb(tmp_path, ROWS + [(9, "seen")]), tmp_path / "g.pt")
    with pytest.raises(DataError, match="different dimensions"):
        train_generator(cfg, st, _emb(tmp_path, ROWS, dims={4: 5}), tmp_path / "g.pt")
    with pytest.raises(DataError, match="no class has split 'unseen'"):
        class_space(_emb(tmp_path, ROWS[:3]), [1, 2, 3])
    (tmp_path / "st").rename(tmp_path / "ok")
    bad = _store(tmp_path, nan=True)
    with pytest.raises(DataError, match="non-finite values"):
        train_generator(cfg, bad, _emb(tmp_path, ROWS), tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_cli_train_generator_calls_the_same_function(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from zeroseg.cli import app
    from zeroseg.generator.config import params_dict

    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    p = params_dict(GeneratorConfig(**SMALL))
    p["sigmas"] = list(p["sigmas"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generator": p}))
    r = CliRunner().invoke(app, ["train-generator", str(st), str(emb), str(tmp_path / "g.pt"), "--params",
                                 str(tmp_path / "params.yaml")])
    assert r.exit_code == 0, r.output
    train_generator(GeneratorConfig(**SMALL), st, emb, tmp_path / "h.pt", show_progress=False)
    a, b = (torch.load(tmp_path / n, weights_only=True)["generator"] for n in ("g.pt", "h.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seen_rows_label_every_query_and_batch_whole_images(tmp_path):
    st = FeatureStore(_store(tmp_path))
    rows = SeenRows(st, [1, 2, 3], 0.5)
    assert rows.x.shape == (120, 8) and (rows.y >= 0).sum() == 30 and set(rows.y[rows.y >= 0]) == {0, 1, 2}
    assert (SeenRows(st, [1, 2, 3], 0.95).y == -1).all()  # below the IoU floor: no-object
    batch = st.image_batch(0, 4, seed=0)
    ids = st.column("image_id")[batch].reshape(4, 4)
    assert (ids == ids[:, :1]).all() and len(set(ids[:, 0])) == 4  # every query of 4 distinct whole images
    seen = np.concatenate([st.column("image_id")[st.image_batch(k, 4, 0)][::4] for k in range(8)])[:30]
    assert sorted(seen.tolist()) == list(range(30))  # one pass over the images before any repeats
    with pytest.raises(DataError, match="not seen classes"):
        SeenRows(st, [1, 2], 0.5)


def test_classifier_retraining_keeps_seen_and_learns_unseen(tmp_path):
    """Official composition on a store of 3 well-separated seen classes; the unseen class's
    features come from its own cluster: every class is recognised afterwards."""
    st = FeatureStore(_store(tmp_path))
    rng = np.random.default_rng(5)
    centre = rng.normal(size=8) * 3
    pool = UnseenPool((centre + rng.normal(size=(40, 8))).astype(np.float32), np.zeros(40, int), 1)
    w, b = retrain_head(ClassifierConfig(iterations=300, images_per_batch=4, unseen_per_step=1, lr=0.05),
                        SeenRows(st, [1, 2, 3], 0.5), pool, torch.zeros(4, 8), torch.zeros(4), n_seen=3, n_unseen=1)
    assert w.shape == (5, 8)
    lab = st.labels
    matched = np.flatnonzero(lab >= 0)
    pred = (torch.from_numpy(st.features(matched)) @ w.T + b)[:, :4].argmax(-1).numpy()
    assert (pred == lab[matched] - 1).mean() >= 0.95
    test_u = torch.from_numpy((centre + rng.normal(size=(20, 8))).astype(np.float32))
    assert ((test_u @ w.T + b).argmax(-1) == 3).float().mean() >= 0.9
    with pytest.raises(DataError, match="cover 1 of 2 unseen classes"):
        UnseenPool(np.zeros((3, 8), np.float32), np.zeros(3, int), 2)
