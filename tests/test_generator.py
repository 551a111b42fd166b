import numpy as np
import pandas as pd
import pytest
import torch

from zeroseg.errors import ConfigError, DataError
from zeroseg.features.store import ShardWriter, finalize_store
from zeroseg.generator.align import alignment_loss
from zeroseg.generator.classifier import ClassifierConfig, TrainingSet, retrain_head
from zeroseg.generator.disentangle import Disentangler
from zeroseg.generator.mmd import mmd
from zeroseg.generator.models import GMMNGenerator, PrimitiveGenerator
from zeroseg.generator.train import GeneratorConfig, class_space, load_generator, synthesize, train_generator


@pytest.mark.parametrize("gen", [GMMNGenerator(12, 8, hidden=32, noise_dim=12),
                                 PrimitiveGenerator(12, 8, num_primitives=20, layers=2, heads=2, ffn=32)])
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
    sem_s, sem_u = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1), torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
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


def test_classifier_retraining_separates_tiny_set():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 4
    xs = torch.cat([centres[c] + torch.randn(50, 16, generator=g) for c in range(3)])
    ys = torch.arange(3).repeat_interleave(50)
    unseen_x = (centres[3] + torch.randn(50, 16, generator=g)).numpy()
    w0, b0 = torch.randn(4, 16) * 0.01, torch.zeros(4)  # 3 seen + no-object
    w, b = retrain_head(ClassifierConfig(epochs=40, lr=0.05), TrainingSet(xs, ys), unseen_x, np.zeros(50, int),
                        w0, b0, n_seen=3, n_unseen=1)
    test_x = torch.cat([centres[c] + torch.randn(30, 16, generator=g) for c in range(4)])
    pred = (test_x @ w.T + b)[:, :4].argmax(-1)
    acc = (pred == torch.arange(4).repeat_interleave(30)).float().mean()
    assert w.shape == (5, 16) and acc >= 0.95


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


@pytest.mark.parametrize("flags", [dict(arch="gmmn", align=False, disentangle=False), dict(arch="primitive")])
def test_train_generator_deterministic(tmp_path, flags):
    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    cfg = GeneratorConfig(**SMALL, **flags)
    train_generator(cfg, st, emb, tmp_path / "a.pt", show_progress=False)
    train_generator(cfg, st, emb, tmp_path / "b.pt", show_progress=False)
    a = torch.load(tmp_path / "a.pt", weights_only=True)["generator"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    gen, cfg2, space = load_generator(tmp_path / "a.pt")
    assert cfg2 == cfg and space.unseen_ids == [4, 5]
    x, idx = synthesize(gen, space.emb, 3)
    assert x.shape == (15, 8) and np.isfinite(x).all()


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
    from zeroseg.generator.train import params_dict

    st, emb = _store(tmp_path), _emb(tmp_path, ROWS)
    p = params_dict(GeneratorConfig(**SMALL))
    p["sigmas"] = list(p["sigmas"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generator": p}))
    r = CliRunner().invoke(app, ["train-generator", str(st), str(emb), str(tmp_path / "g.pt"), "--params", str(tmp_path / "params.yaml")])
    assert r.exit_code == 0, r.output
    train_generator(GeneratorConfig(**SMALL), st, emb, tmp_path / "h.pt", show_progress=False)
    a, b = (torch.load(tmp_path / n, weights_only=True)["generator"] for n in ("g.pt", "h.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_real_seen_set_keeps_a_share_of_no_object_rows(tmp_path):
    from zeroseg.features.store import FeatureStore
    from zeroseg.generator.classifier import real_seen_set

    st = FeatureStore(_store(tmp_path))
    full = real_seen_set(st, [1, 2, 3], 0.5)
    assert len(full.y) == 120 and (full.y >= 0).sum() == 30
    part = real_seen_set(st, [1, 2, 3], 0.5, no_object_keep=0.3, seed=1)
    assert (part.y >= 0).sum() == 30 and 10 < (part.y < 0).sum() < 50  # ~27 of 90 no-object rows
    matched = full.x[full.y >= 0]
    assert torch.equal(part.x[part.y >= 0], matched)  # the right features stay with their labels
    with pytest.raises(ConfigError, match="no_object_keep"):
        ClassifierConfig(no_object_keep=0.0)
