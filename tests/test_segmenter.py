import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import COCO_JSON, COCO_MINI, ROOT, read_json
from zeroseg.errors import ConfigError, DataError
from zeroseg.features.dump import DumpConfig, dump_features
from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store
from zeroseg.segmenter.data import PanopticSegments
from zeroseg.segmenter.matcher import hungarian, mask_iou, match_cost
from zeroseg.segmenter.model import SegmenterConfig, load_checkpoint, model_from_checkpoint
from zeroseg.segmenter.train import train_segmenter
from zeroseg.split import split_dataset

TINY = dict(backbone_widths=(16, 32, 64, 64), backbone_stem=16, num_queries=8, hidden_dim=32, encoder_layers=1,
            decoder_layers=2, heads=2, ffn_dim=64, image_size=64, batch_size=2, iterations=3, warmup=1,
            checkpoint_every=2, train_num_points=256)


# ---- matching ---------------------------------------------------------------------------

def test_hungarian_recovers_the_obvious_assignment():
    P = 16
    gt = torch.zeros(3, P)
    gt[0, :5], gt[1, 5:10], gt[2, 10:] = 1, 1, 1
    logits = torch.full((4, P), -8.0)
    logits[2, :5] = 8  # query 2 = segment 0
    logits[0, 5:10] = 8  # query 0 = segment 1
    logits[3, 10:] = 8  # query 3 = segment 2
    probs = torch.full((4, 4), 0.1)
    labels = torch.tensor([0, 1, 2])
    q, g = hungarian(match_cost(probs, logits, labels, gt))
    assert dict(zip(g.tolist(), q.tolist())) == {0: 2, 1: 0, 2: 3}
    iou = mask_iou(logits > 0, gt > 0.5)
    assert iou[2, 0] == 1 and iou[0, 1] == 1 and iou[1].sum() == 0


def test_class_cost_decides_between_equal_masks_and_unknown_classes_use_masks_only():
    gt = torch.ones(1, 4)
    logits = torch.full((2, 4), 5.0)
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
    q, g = hungarian(match_cost(probs, logits, torch.tensor([0]), gt))
    assert q.tolist() == [1]  # query 1 is confident in class 0
    c = match_cost(probs, logits, torch.tensor([-1]), gt)
    assert c[0, 0] == c[1, 0]  # no class term for a class the model does not know


# ---- feature store ----------------------------------------------------------------------

def _records(q, label0):
    return {"label": np.array([label0] + [-1] * (q - 1), np.int32), "mask_iou": np.linspace(0, 1, q, dtype=np.float32),
            "score": np.full(q, 0.5, np.float32), "query_index": np.arange(q, dtype=np.int16)}


def test_store_roundtrip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    tmp = tmp_path / ".store.tmp"
    feats = {}
    for shard, ids in (("rank-000", [1, 3, 5]), ("rank-001", [2, 4])):
        w = ShardWriter(tmp, shard, dim=6, dtype="float32", chunk_rows=5)
        for i in ids:
            feats[i] = rng.normal(size=(4, 6)).astype(np.float32)
            w.add_image(i, feats[i], _records(4, i % 2 + 7))
        w.close()
    assert not (tmp_path / "store").exists()  # not visible before finalize
    finalize_store(tmp, tmp_path / "store", {"dim": 6})
    st = FeatureStore(tmp_path / "store")
    assert st.num_rows == 20 and len(st.index) == 5 and not tmp.exists()
    rows = np.array([19, 0, 7, 7, 12])
    got = st.features(rows)
    all_feats = np.concatenate([feats[i] for i in (1, 3, 5, 2, 4)])
    assert np.array_equal(got, all_feats[rows])
    assert sorted(st.labels[st.labels >= 0].tolist()) == [7, 7, 8, 8, 8]
    f, l = next(st.class_batches([7, 8], 3, np.random.default_rng(1)))
    assert f.shape == (6, 6) and l.tolist() == [7, 7, 7, 8, 8, 8]
    seq = np.concatenate([b for b, _ in st.iter_sequential(batch_rows=7)])
    assert np.array_equal(seq, all_feats)


def test_aborted_shard_leaves_nothing(tmp_path):
    w = ShardWriter(tmp_path / "s", "rank-000", dim=2)
    w.add_image(1, np.ones((2, 2), np.float32), _records(2, 1))
    w.abort()
    assert list((tmp_path / "s" / "shards").iterdir()) == []
    with pytest.raises(DataError, match="not a finished feature store"):
        FeatureStore(tmp_path / "s")


def test_store_rejects_non_finite_features(tmp_path):
    w = ShardWriter(tmp_path / "s", "rank-000", dim=2)
    with pytest.raises(DataError, match="image 9: non-finite features"):
        w.add_image(9, np.array([[np.nan, 0.0]], np.float32), _records(1, 1))


# ---- training, checkpoints, dump --------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_benchmark):
    d = tmp_path_factory.mktemp("seg")
    split = split_dataset(tiny_benchmark / "annotations" / "panoptic_train.json", "benchmark-default", d / "split")
    cfg = SegmenterConfig(**TINY)
    res = train_segmenter(cfg, split.seen_json, tiny_benchmark / "train", d / "model",
                          tiny_benchmark / "annotations" / "panoptic_train", d / "live", show_progress=False)
    return d, split, res, cfg


def test_checkpoint_stores_config_and_classes(trained):
    d, split, res, cfg = trained
    ck = torch.load(res.checkpoint, weights_only=True)
    assert ck["config"]["num_queries"] == 8 and ck["step"] == 3
    seen = [c for c in read_json(split.all_json)["categories"] if c["split"] == "seen"]
    assert [c["id"] for c in ck["classes"]] == [c["id"] for c in seen]
    model, cfg2, classes = model_from_checkpoint(res.checkpoint)
    assert cfg2 == cfg and model.config.num_labels == len(seen)
    assert (d / "live" / "metrics.json").exists()


def test_resume_from_last_checkpoint(trained, tiny_benchmark, tmp_path):
    """A last.pt of this run (step 4 of 5, weights only) is resumed from: the last step starts
    from its WEIGHTS (perturbed here, so that no other start is near them). That step's fresh
    AdamW moves each parameter by at most lr_t (1 + weight_decay |w|) (|m̂ / √v̂| = 1 on a first step)."""
    d, split, res, cfg = trained
    import dataclasses

    from zeroseg.segmenter.train import lr_factor

    cfg5 = dataclasses.replace(cfg, iterations=5, checkpoint_every=2)
    out = tmp_path / "m"
    train_segmenter(cfg5, split.seen_json, tiny_benchmark / "train", out,
                    tiny_benchmark / "annotations" / "panoptic_train",
                    show_progress=False)
    full = torch.load(out / "model.pt", weights_only=True)
    # simulate an interruption after step 4: a last.pt from a run stopped there
    out2 = tmp_path / "m2"
    cfg4 = dataclasses.replace(cfg5, iterations=4, checkpoint_every=4)
    train_segmenter(cfg4, split.seen_json, tiny_benchmark / "train", out2,
                    tiny_benchmark / "annotations" / "panoptic_train",
                    show_progress=False)
    ck = torch.load(out2 / "model.pt", weights_only=True)
    ck["config"] = dataclasses.asdict(cfg5)
    from zeroseg.segmenter.model import build_model, save_checkpoint

    m = build_model(cfg5, len(ck["classes"]))
    m.load_state_dict(ck["model"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    saved = {k: p.detach().clone() for k, p in m.named_parameters()}
    save_checkpoint(out2 / "last.pt", m, cfg5, ck["classes"], 4)
    r = train_segmenter(cfg5, split.seen_json, tiny_benchmark / "train", out2,
                        tiny_benchmark / "annotations" / "panoptic_train",
                        show_progress=False)
    assert r.resumed_from == 4 and not (out2 / "last.pt").exists()
    resumed = torch.load(out2 / "model.pt", weights_only=True)
    assert resumed["step"] == full["step"] == 5
    lr = cfg5.lr * lr_factor(4, cfg5)
    for k, w in saved.items():
        step = (resumed["model"][k] - w).abs()
        bound = lr * (1 + cfg5.weight_decay * w.abs()) + 1e-6  # + float32 rounding
        assert (step <= bound).all(), f"{k}: a step of {float(step.max())} from last.pt's weights, lr {lr}"
    assert any(not torch.equal(resumed["model"][k], w) for k, w in saved.items())  # and it did train a step


def test_dump_one_row_per_query(trained, tiny_benchmark):
    d, split, res, cfg = trained
    r = dump_features(res.checkpoint, split.seen_json, tiny_benchmark / "train", d / "feat",
                      DumpConfig(batch_size=4), tiny_benchmark / "annotations" / "panoptic_train", show_progress=False)
    n_img = len(read_json(split.seen_json)["images"])
    st = FeatureStore(r.store)
    assert r.images == n_img and st.num_rows == n_img * 8 and st.dim == 32
    assert set(st.column("query_index").tolist()) == set(range(8))
    seen_ids = {c["id"] for c in st.meta["classes"]}
    assert set(st.labels[st.labels >= 0].tolist()) <= seen_ids
    per_image = np.bincount(np.unique(st.column("image_id"), return_inverse=True)[1])
    assert (per_image == 8).all()
    # validation dump keeps masks; unseen classes get labels too (mask cost only)
    rv = dump_features(res.checkpoint, split.unseen_json, tiny_benchmark / "train", d / "feat_unseen",
                       DumpConfig(batch_size=4), tiny_benchmark / "annotations" / "panoptic_train", keep_masks=True,
                       show_progress=False)
    sv = FeatureStore(rv.store)
    masks = next(sv.mask_shards())["masks"]
    assert masks.shape == (rv.images, 8, 16, 16)
    unseen = {c["id"] for c in read_json(split.all_json)["categories"] if c["split"] == "unseen"}
    assert set(sv.labels.tolist()) & unseen


def test_dump_augmented_passes_add_views_of_every_image(trained, tiny_benchmark):
    """dump.augment_passes 2: the plain pass (identical to a plain dump) + two views of every image
    under the training augmentation, stored as image + k * VIEW_STRIDE; the match cost's class
    weight is a key. Masks are never dumped augmented."""
    from zeroseg.errors import ConfigError
    from zeroseg.features.store import VIEW_STRIDE

    d, split, res, cfg = trained
    args = (res.checkpoint, split.seen_json, tiny_benchmark / "train")
    png = tiny_benchmark / "annotations" / "panoptic_train"
    plain = FeatureStore(dump_features(*args, d / "plain", DumpConfig(batch_size=4), png, show_progress=False).store)
    aug = FeatureStore(dump_features(*args, d / "aug", DumpConfig(batch_size=4, augment_passes=2), png,
                                     show_progress=False).store)
    n = plain.num_rows
    assert aug.num_rows == 3 * n and len(aug.index) == 3 * len(plain.index)
    ids = aug.column("image_id")
    assert np.array_equal(ids[:n], plain.column("image_id"))
    assert np.array_equal(aug.source_image_ids()[n:2 * n], ids[:n])
    assert (ids[n:2 * n] - ids[:n] == VIEW_STRIDE).all() and (ids[2 * n:] - ids[:n] == 2 * VIEW_STRIDE).all()
    assert np.array_equal(aug.features(np.arange(n)), plain.features(np.arange(n)))
    assert not np.array_equal(aug.features(np.arange(n, 2 * n)), plain.features(np.arange(n)))  # other pixels
    assert not np.array_equal(aug.features(np.arange(n, 2 * n)), aug.features(np.arange(2 * n, 3 * n)))  # fresh draws
    with pytest.raises(ConfigError, match="augment_passes"):
        dump_features(*args, d / "bad", DumpConfig(augment_passes=1), png, keep_masks=True, show_progress=False)
    with pytest.raises(ConfigError, match="augment_passes"):
        DumpConfig(augment_passes=-1)
    heavy = FeatureStore(dump_features(*args, d / "w5", DumpConfig(batch_size=4, match_class_weight=50.0), png,
                                       show_progress=False).store)
    assert heavy.meta["dump"]["match_class_weight"] == 50.0 and heavy.num_rows == n


def test_dumped_features_are_what_the_class_head_reads(trained, tiny_benchmark):
    """The stored query features are the ones Mask2Former's class predictor reads (after the
    decoder's final LayerNorm): the segmenter's own head on them gives the model's class scores."""
    from zeroseg.head.model import segmenter_head
    from zeroseg.segmenter.model import model_from_checkpoint, query_features

    d, split, res, cfg = trained
    ck = torch.load(res.checkpoint, map_location="cpu", weights_only=True)
    g = torch.Generator().manual_seed(0)  # a trained final norm is far from the identity (a short run's is not)
    for k in ("weight", "bias"):
        key = f"model.transformer_module.decoder.layernorm.{k}"
        ck["model"][key] = ck["model"][key] + torch.randn(ck["model"][key].shape, generator=g)
    path = d / "normed.pt"
    torch.save(ck, path)
    model, _, _ = model_from_checkpoint(path)
    with torch.no_grad():
        out = model(pixel_values=torch.randn(2, 3, cfg.image_size, cfg.image_size))
        assert torch.allclose(model.class_predictor(query_features(model, out)), out.class_queries_logits, atol=1e-5)
    r = dump_features(path, split.seen_json, tiny_benchmark / "train", d / "feat32",
                      DumpConfig(batch_size=4, dtype="float32"), tiny_benchmark / "annotations" / "panoptic_train",
                      show_progress=False)
    st = FeatureStore(r.store)
    rows = np.arange(min(st.num_rows, 64))
    probs = segmenter_head(path).probs(torch.from_numpy(st.features(rows)))
    assert np.allclose(probs[:, :-1].max(-1).values.numpy(), st.column("score")[rows], atol=1e-4)


def test_dump_of_an_ignore_split_matches_no_query_to_an_unseen_segment(trained, tiny_benchmark, tmp_path):
    """split.policy ignore: the images with unseen segments are dumped, but no query gets an unseen label
    (the same images dumped from the unmarked JSON do match unseen segments)."""
    d, split, res, cfg = trained
    ign = split_dataset(tiny_benchmark / "annotations" / "panoptic_train.json", "benchmark-default", tmp_path / "split",
                        policy="ignore")
    unseen = {c["id"] for c in read_json(split.all_json)["categories"] if c["split"] == "unseen"}
    kw = dict(cfg=DumpConfig(batch_size=8), png_dir=tiny_benchmark / "annotations" / "panoptic_train",
              show_progress=False)
    st = FeatureStore(dump_features(res.checkpoint, ign.seen_json, tiny_benchmark / "train", tmp_path / "f",
                                    **kw).store)
    assert len(st.index) == ign.num_images > split.num_seen_images
    assert not set(st.labels.tolist()) & unseen and (st.labels >= 0).any()
    ref = FeatureStore(dump_features(res.checkpoint, ign.all_json, tiny_benchmark / "train", tmp_path / "g",
                                     **kw).store)
    assert set(ref.labels.tolist()) & unseen


def test_dump_stores_compact_masks_and_scores_them(trained, tiny_benchmark):
    """dump.mask_size keeps smaller val masks (COCO: 5k images); the evaluation upsamples them."""
    d, split, res, cfg = trained
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.evaluate.score import evaluate_segmenter

    gt_json, gt_dir = (tiny_benchmark / "annotations" / "panoptic_val.json",
                       tiny_benchmark / "annotations" / "panoptic_val")
    scores, masks = {}, {}
    for size in (0, 16, 8):
        r = dump_features(res.checkpoint, gt_json, tiny_benchmark / "val", d / f"val{size}",
                          DumpConfig(batch_size=4, mask_size=size),
                          gt_dir, keep_masks=True, show_progress=False)
        st = FeatureStore(r.store)
        masks[size] = np.concatenate([s["masks"][:] for s in st.mask_shards()]).astype(np.float32)
        assert masks[size].shape[2:] == ((16, 16) if size in (0, 16) else (8, 8))
        scores[size] = evaluate_segmenter(res.checkpoint, r.store, gt_json, gt_dir, split.all_json,
                                          InferenceConfig(0.0))
    # the model's own side (image_size / 4 = 16) given explicitly is the full store: same masks, same scores
    assert np.array_equal(masks[16], masks[0]) and scores[16] == scores[0]
    # a compact side keeps each 2x2 block's mean logit (area resampling; float16 storage: ~1e-3 relative)
    full = masks[0]
    pooled = full.reshape(*full.shape[:2], 8, 2, 8, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(masks[8], pooled, rtol=2e-3, atol=2e-3 * np.abs(full).max())
    assert set(scores[0]) == set(scores[8]) and scores[8]["pq"] is not None
    with pytest.raises(ConfigError, match="dump.mask_size 32 exceeds"):
        dump_features(res.checkpoint, gt_json, tiny_benchmark / "val", d / "val32", DumpConfig(mask_size=32), gt_dir,
                      keep_masks=True, show_progress=False)
    assert not (d / "val32").exists()


def test_checkpoint_from_other_class_list(trained):
    d, split, res, cfg = trained
    ck = load_checkpoint(res.checkpoint)
    other = ck["classes"][:-1]
    with pytest.raises(DataError, match="trained on a different class list"):
        load_checkpoint(res.checkpoint, expect_classes=other)


def test_corrupt_image_and_size_mismatch(benchmark_copy, tmp_path):
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    d = read_json(js)
    classes = [{"id": c["id"], "name": c["name"], "isthing": c["isthing"]} for c in d["categories"]]
    (benchmark_copy / "train" / d["images"][0]["file_name"]).write_bytes(b"not a jpeg")
    ds = PanopticSegments(js, benchmark_copy / "train", classes, 64)
    with pytest.raises(DataError, match=r"000000000001\.jpg: unreadable or corrupt image \(image 1\)"):
        ds[0]
    Image.new("RGB", (50, 64)).save(benchmark_copy / "train" / d["images"][1]["file_name"])
    with pytest.raises(DataError, match=r"000000000002\.jpg: image is 50x64 but the JSON says width x height 64x64"):
        ds[1]


def test_trains_on_real_coco(coco_mini, tmp_path):
    split = split_dataset(COCO_JSON, "coco-zsp", tmp_path / "split")
    cfg = SegmenterConfig(**dict(TINY, image_size=128, iterations=2))
    r = train_segmenter(cfg, split.seen_json, COCO_MINI / "train2017", tmp_path / "m", show_progress=False,
                        png_dir=COCO_MINI / "annotations" / "panoptic_train2017")
    ck = load_checkpoint(r.checkpoint)
    assert len(ck["classes"]) == 133 - 14 and np.isfinite(r.final_loss)


# ---- torchrun (gloo) -------------------------------------------------------------------

def test_torchrun_two_processes_train_and_dump_like_one(trained, tiny_benchmark, tmp_path):
    d, split, res, cfg = trained
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "segmenter": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
        "dump": {"batch_size": 4, "dtype": "float32", "chunk_rows": 64}}))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    pngs = tiny_benchmark / "annotations" / "panoptic_train"
    subprocess.run(run + [str(ROOT / "stages/train_segmenter.py"), str(split.seen_json), str(tiny_benchmark / "train"),
                          str(pngs), str(tmp_path / "m"), str(tmp_path / "live")], cwd=tmp_path, env=env, check=True,
                   timeout=300)
    assert load_checkpoint(tmp_path / "m" / "model.pt")["step"] == 3
    subprocess.run(run + [str(ROOT / "stages/dump_features.py"), str(res.checkpoint), str(split.seen_json),
                          str(tiny_benchmark / "train"), str(pngs), str(tmp_path / "ddp")], cwd=tmp_path, env=env,
                   check=True, timeout=300)
    two = FeatureStore(tmp_path / "ddp")
    assert sorted(s.name for s in two.shards) == ["rank-000", "rank-001"]
    one = FeatureStore(dump_features(res.checkpoint, split.seen_json, tiny_benchmark / "train", tmp_path / "single",
                                     DumpConfig(batch_size=4, dtype="float32"), pngs, show_progress=False).store)

    def rows(st):
        key = st.column("image_id") * 100 + st.column("query_index")
        o = np.argsort(key)
        return key[o], st.labels[o], st.features(o)

    k1, l1, f1 = rows(one)
    k2, l2, f2 = rows(two)
    assert np.array_equal(k1, k2) and np.array_equal(l1, l2)
    assert np.allclose(f1, f2, atol=1e-5)


def test_pretrained_backbone_from_local_folder(tmp_path):
    from transformers import ResNetBackbone, ResNetConfig

    from zeroseg.errors import ConfigError
    from zeroseg.segmenter.model import build_model

    cfg = SegmenterConfig(**TINY)
    rc = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 2, 1], layer_type="basic",
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    torch.manual_seed(3)
    ResNetBackbone(rc).save_pretrained(tmp_path / "resnet")
    import dataclasses

    m = build_model(dataclasses.replace(cfg, pretrained_backbone=str(tmp_path / "resnet")), 4)
    src = ResNetBackbone.from_pretrained(tmp_path / "resnet")
    k = "embedder.embedder.convolution.weight"
    assert torch.equal(m.model.pixel_level_module.encoder.state_dict()[k], src.state_dict()[k])
    with pytest.raises(ConfigError, match="does not fit the configured ResNet"):
        build_model(dataclasses.replace(cfg, backbone_widths=(16, 32, 64, 128),
                                        pretrained_backbone=str(tmp_path / "resnet")), 4)


FAST_HEAD = {"iterations": 20, "images_per_batch": 2}  # the head predict retrains: 20 steps, not 3000


@pytest.fixture(scope="module")
def predict_run(trained, tiny_benchmark, tmp_path_factory):
    """A pipeline run's files that `zeroseg predict` reads (ModelFiles.from_root): the trained TINY
    segmenter, its split, the seen dump, GloVe class embeddings (packaged, 50-d) and a 3-step
    generator. Tests that alter a file work on a copy (``run_copy``)."""
    from zeroseg.embed.sources import EmbedConfig
    from zeroseg.embed.vectors import embed_classes
    from zeroseg.generator.config import GeneratorConfig
    from zeroseg.generator.train import train_generator

    d, split, res, cfg = trained
    root = tmp_path_factory.mktemp("run") / "run"
    (root / "data/segmenter").mkdir(parents=True)
    shutil.copy(res.checkpoint, root / "data/segmenter/model.pt")
    (root / "data/split").mkdir()
    shutil.copy(split.all_json, root / "data/split/panoptic_train_all.json")
    dump_features(res.checkpoint, split.seen_json, tiny_benchmark / "train", root / "data/features/train_seen",
                  DumpConfig(batch_size=4), tiny_benchmark / "annotations" / "panoptic_train", show_progress=False)
    embed_classes(split.all_json, EmbedConfig(source="glove"), root / "data/embed/classes.parquet")
    train_generator(GeneratorConfig(num_primitives=8, layers=1, heads=2, ffn=32, iterations=3, classes_per_batch=2,
                                    per_class=4, unseen_per_class=2, min_iou=0.0),
                    root / "data/features/train_seen", root / "data/embed/classes.parquet",
                    root / "data/generators/pading-s0.pt", show_progress=False)
    (root / "params.yaml").write_text(yaml.safe_dump({"classifier": FAST_HEAD, "inference": {}}))  # predict --params
    return root


def run_copy(predict_run, tmp_path):
    """A private copy of the run (links to its large files) whose embeddings file may be replaced."""
    root = tmp_path / "run"
    for rel in ("data/segmenter", "data/split", "data/features", "data/generators"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(predict_run / rel, root / rel)
    (root / "data/embed").mkdir(parents=True)
    shutil.copy(predict_run / "data/embed/classes.parquet", root / "data/embed/classes.parquet")
    return root


def _predict(run, args):
    """`zeroseg predict ARGS --params` the run's params.yaml (its fast head recipe)."""
    from typer.testing import CliRunner

    from zeroseg.cli import app

    return CliRunner().invoke(app, ["predict", *map(str, args), "--params", str(run / "params.yaml")])


def test_predict_own_images_with_a_new_class(trained, predict_run, tiny_benchmark, tmp_path):
    """`zeroseg predict` on a real photo and a synthetic image: formats, not accuracy."""
    d, split, res, cfg = trained
    root = predict_run
    photo = COCO_MINI / "train2017" / "000000000009.jpg"  # a real photo, when ../shared is there
    images = ([str(photo)] if photo.exists() else []) + [str(tiny_benchmark / "val" / "000001000001.jpg")]
    r = _predict(root, [*images, "--classes", "purple star, zebra", "--run-dir", root, "--out", tmp_path / "p"])
    assert r.exit_code == 0, r.output
    pred = read_json(tmp_path / "p" / "predictions.json")
    names = {c["name"]: c["id"] for c in pred["categories"]}
    assert {"purple star",
            "zebra"} <= set(names) and names["zebra"] > max(c["id"] for c in read_json(split.all_json)["categories"])
    for im, ann in zip(pred["images"], pred["annotations"]):
        ids = np.asarray(Image.open(tmp_path / "p" / "panoptic" / ann["file_name"]).convert("RGB")).astype(np.int64)
        ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
        assert ids.shape == (im["height"], im["width"])
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in ann["segments_info"]}
        assert all(s["category_id"] in names.values() for s in ann["segments_info"])
        assert Image.open(tmp_path / "p" / "overlay" / ann["file_name"]).format == "PNG"
    bad = _predict(root, [tmp_path / "nope.jpg", "--run-dir", root, "--out", tmp_path / "q"])
    assert bad.exit_code == 2 and "nope.jpg" in bad.output and not (tmp_path / "q").exists()


def _one_line_error(r, *needles) -> None:
    """`zeroseg predict` failed with exit code 2 and one line ``error: ...`` naming each needle."""
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert str(n) in lines[0], (n, r.output)


def test_predict_refuses_corrupt_images(predict_run, tiny_benchmark, tmp_path):
    """A corrupt (truncated) or non-image file: one line naming it, and no output folder."""
    good = tiny_benchmark / "val" / "000001000001.jpg"
    truncated, text = tmp_path / "cut.jpg", tmp_path / "notes.png"
    truncated.write_bytes(good.read_bytes()[:200])
    text.write_text("not an image\n")
    for bad in (truncated, text):
        r = _predict(predict_run, [good, bad, "--run-dir", predict_run, "--out", tmp_path / "p"])
        _one_line_error(r, bad, "unreadable or corrupt image")
        assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p.*"))


@pytest.mark.parametrize("rel, what", [
    ("data/segmenter/model.pt", "checkpoint not found"),
    ("data/generators/pading-s0.pt", "generator checkpoint not found"),
    ("data/embed/classes.parquet", "class-embedding file not found"),
    ("data/split/panoptic_train_all.json", "not found"),
    ("data/features/train_seen", "not a finished feature store"),
])
def test_predict_names_a_missing_run_file(predict_run, tiny_benchmark, tmp_path, rel, what):
    root = tmp_path / "run"
    for sub in ("data/segmenter/model.pt", "data/generators/pading-s0.pt", "data/embed/classes.parquet",
                "data/split/panoptic_train_all.json", "data/features/train_seen"):
        if sub != rel:
            (root / sub).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(predict_run / sub, root / sub)
    r = _predict(predict_run, [tiny_benchmark / "val" / "000001000001.jpg", "--run-dir", root, "--out", tmp_path / "p"])
    _one_line_error(r, root / rel, what)
    assert not (tmp_path / "p").exists()


def test_predict_refuses_new_names_on_an_attributes_run(predict_run, tiny_benchmark, tmp_path):
    """embed.source attributes embeds each class by its attribute words: a free-text name has none.
    Without new names the run predicts as usual."""
    from zeroseg.embed.sources import EmbedConfig
    from zeroseg.embed.vectors import embed_classes

    d = run_copy(predict_run, tmp_path)
    emb = d / "data/embed/classes.parquet"
    embed_classes(d / "data/split/panoptic_train_all.json", EmbedConfig(source="attributes", attribute_words="glove"),
                  emb)
    image = tiny_benchmark / "val" / "000001000001.jpg"
    r = _predict(predict_run, [image, "--classes", "zebra", "--run-dir", d, "--out", tmp_path / "p"])
    _one_line_error(r, emb, "attributes")
    assert not (tmp_path / "p").exists()
    assert _predict(predict_run, [image, "--run-dir", d, "--out", tmp_path / "p"]).exit_code == 0


def test_predict_refuses_an_embedding_dimension_mismatch(predict_run, tiny_benchmark, tmp_path):
    """The run's embed settings now give 6-d vectors (a table) but its generator was trained on
    50-d GloVe: a new name cannot be synthesised; the message names both files and both sizes."""
    from zeroseg.embed.sources import EmbedConfig
    from zeroseg.embed.vectors import embed_classes

    d = run_copy(predict_run, tmp_path)
    names = [c["name"] for c in read_json(d / "data/split/panoptic_train_all.json")["categories"]] + ["zebra"]
    np.save(tmp_path / "t.npy", np.random.default_rng(0).normal(size=(len(names), 6)))
    (tmp_path / "names.txt").write_text("".join(f"{n}\n" for n in names))
    emb = d / "data/embed/classes.parquet"
    embed_classes(d / "data/split/panoptic_train_all.json",
                  EmbedConfig(source="table", table=str(tmp_path / "t.npy"), table_names=str(tmp_path / "names.txt")),
                  emb)
    r = _predict(predict_run, [tiny_benchmark / "val" / "000001000001.jpg", "--classes", "zebra", "--run-dir", d,
                               "--out", tmp_path / "p"])
    _one_line_error(r, emb, d / "data/generators/pading-s0.pt", "6-d", "50-d")
    assert not (tmp_path / "p").exists()


def test_predict_keeps_inputs_with_the_same_file_stem_apart(predict_run, tiny_benchmark, tmp_path):
    """a/x.jpg and b/x.jpg (different pictures): each gets its own PNGs, named in predictions.json;
    nothing is overwritten (the outputs equal those of predicting each alone)."""
    from zeroseg.data.panoptic import read_ids

    for sub, src in (("a", "000001000001.jpg"), ("b", "000001000002.jpg")):
        (tmp_path / sub).mkdir()
        shutil.copy(tiny_benchmark / "val" / src, tmp_path / sub / "x.jpg")
    r = _predict(predict_run, [tmp_path / "a/x.jpg", tmp_path / "b/x.jpg", "--run-dir", predict_run,
                               "--out", tmp_path / "both"])
    assert r.exit_code == 0, r.output
    pred = read_json(tmp_path / "both" / "predictions.json")
    pngs = [a["file_name"] for a in pred["annotations"]]
    assert len(set(pngs)) == 2
    for sub in ("panoptic", "semantic", "overlay"):
        assert sorted(p.name for p in (tmp_path / "both" / sub).iterdir()) == sorted(pngs)
    for k, sub in enumerate(("a", "b")):
        alone = _predict(predict_run, [tmp_path / sub / "x.jpg", "--run-dir", predict_run,
                                       "--out", tmp_path / f"alone-{sub}"])
        assert alone.exit_code == 0, alone.output
        one = read_json(tmp_path / f"alone-{sub}" / "predictions.json")["annotations"][0]
        assert pred["annotations"][k]["segments_info"] == one["segments_info"]
        assert np.array_equal(read_ids(tmp_path / "both" / "panoptic" / pngs[k], "prediction", k + 1),
                              read_ids(tmp_path / f"alone-{sub}" / "panoptic" / one["file_name"], "prediction", 1))


def test_predict_segments_equal_the_evaluation_path(trained, predict_run, tiny_benchmark, tmp_path):
    """The same images through `zeroseg predict` and through the evaluation path (dump with kept
    masks, then evaluate.score.predict_store with the same head): the same panoptic segments.
    The images are 3 val images enlarged to 96x80 (not the 64-px square canvas), so both paths
    resize, pad and crop the masks back."""
    from zeroseg.data.panoptic import load_panoptic, read_ids, write_ids
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.evaluate.score import predict_store
    from zeroseg.head.train import ClassifierConfig
    from zeroseg.predict import ModelFiles, build_head, predict_images

    d, split, res, cfg = trained
    files, fast = ModelFiles.from_root(predict_run), ClassifierConfig(**FAST_HEAD)
    head, _ = build_head(files, [], cfg=fast)
    again, _ = build_head(files, [], cfg=fast)
    assert torch.equal(head.weight, again.weight)  # the retrained head is deterministic: predict builds this one
    src = load_panoptic(tiny_benchmark / "annotations" / "panoptic_val.json")
    iid = sorted(src.images)[:3]
    W, H = 96, 80
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    for i in iid:
        im = src.images[i]
        big = Image.open(tiny_benchmark / "val" / im["file_name"]).resize((W, H), Image.BILINEAR)
        big.save(tmp_path / "images" / im["file_name"])
        png = src.annotations[i]["file_name"]
        ids = read_ids(tiny_benchmark / "annotations" / "panoptic_val" / png, "gt", i)
        write_ids(tmp_path / "gt" / png, np.asarray(Image.fromarray(ids).resize((W, H), Image.NEAREST)))
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps({"images": [dict(src.images[i], height=H, width=W) for i in iid],
                                   "annotations": [src.annotations[i] for i in iid],
                                   "categories": src.raw["categories"]}))
    images = [tmp_path / "images" / src.images[i]["file_name"] for i in iid]
    every = InferenceConfig(object_threshold=0.0)  # a 3-step segmenter is never confident: keep every query
    predict_images(images, [], tmp_path / "p", files, every, classifier=fast)
    pred = read_json(tmp_path / "p" / "predictions.json")
    st = FeatureStore(dump_features(res.checkpoint, gt_json, tmp_path / "images", tmp_path / "val",
                                    DumpConfig(batch_size=4, dtype="float32"), tmp_path / "gt", keep_masks=True,
                                    show_progress=False).store)
    seen = {c["id"] for c in load_checkpoint(res.checkpoint)["classes"]}
    evaluated = dict(predict_store(st, head, every, None, set(head.class_ids) - seen))
    compared = 0
    for k, image_id in enumerate(iid):
        ann = pred["annotations"][k]
        ids = read_ids(tmp_path / "p" / "panoptic" / ann["file_name"], "prediction", k + 1)
        ev = evaluated[image_id]
        assert ids.shape == (H, W)
        assert [(s["category_id"], s["area"]) for s in ann["segments_info"]] == \
            [(s["category_id"], s["area"]) for s in ev.panoptic_segments], image_id
        assert [s["score"] for s in ann["segments_info"]] == pytest.approx([s["score"] for s in ev.panoptic_segments],
                                                                          abs=1e-3)
        assert np.array_equal(ids, ev.panoptic_ids), image_id
        compared += len(ann["segments_info"])
    assert compared > 0  # some segments were predicted and compared


def test_universal_scores_equal_an_independent_computation(trained, tiny_benchmark):
    """Instance and semantic scores of a head over seen + unseen classes, from the stored features
    and masks, equal Mask2Former's rules recomputed in NumPy + pycocotools (tools/independent.py)."""
    from tools.independent import KEYS, independent_scores
    from zeroseg.data.classes import unseen_from_split
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.evaluate.score import evaluate_head
    from zeroseg.head.model import Head

    d, split, res, cfg = trained
    gt_json, gt_dir = (tiny_benchmark / "annotations" / "panoptic_val.json",
                       tiny_benchmark / "annotations" / "panoptic_val")
    r = dump_features(res.checkpoint, gt_json, tiny_benchmark / "val", d / "val_universal", DumpConfig(batch_size=4),
                      gt_dir, keep_masks=True, show_progress=False)
    cats = load_panoptic(split.all_json).categories
    ids = sorted(cats)
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(len(ids) + 1, cfg.hidden_dim, generator=g), torch.randn(len(ids) + 1, generator=g)
    head = Head(w, b, ids, [cats[c].isthing for c in ids])
    unseen = unseen_from_split(split.all_json)
    ours, _, _ = evaluate_head(FeatureStore(r.store), head, gt_json, gt_dir, unseen)
    ref = independent_scores(FeatureStore(r.store), w.double().numpy(), b.double().numpy(), ids,
                             [cats[c].isthing for c in ids], gt_json, gt_dir, unseen)
    assert ref["map50_unseen"] is not None and ref["miou_unseen"] is not None
    for k in KEYS:
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k


def test_seen_unseen_curve_on_stored_queries(trained, tiny_benchmark):
    """The curve's point at the table's γ is the table's seen / unseen PQ; at γ = +∞ no seen
    class is predicted (seen PQ 0), at γ = −∞ no unseen class (unseen PQ 0); the offset in the
    params moves the table along the same curve."""
    import math

    from zeroseg.data.classes import unseen_from_split
    from zeroseg.data.panoptic import load_panoptic
    from zeroseg.evaluate.curve import curve_metrics, seen_unseen_curve
    from zeroseg.evaluate.inference import InferenceConfig
    from zeroseg.evaluate.score import evaluate_head, predict_store
    from zeroseg.head.model import Head

    d, split, res, cfg = trained
    gt_json, gt_dir = (tiny_benchmark / "annotations" / "panoptic_val.json",
                       tiny_benchmark / "annotations" / "panoptic_val")
    store = d / "val_universal"
    if not store.exists():
        dump_features(res.checkpoint, gt_json, tiny_benchmark / "val", store, DumpConfig(batch_size=4), gt_dir,
                      keep_masks=True, show_progress=False)
    cats = load_panoptic(split.all_json).categories
    ids = sorted(cats)
    g = torch.Generator().manual_seed(1)
    head = Head(torch.randn(len(ids) + 1, cfg.hidden_dim, generator=g), torch.randn(len(ids) + 1, generator=g), ids,
                [cats[c].isthing for c in ids])
    unseen = unseen_from_split(split.all_json)
    st = FeatureStore(store)
    curve = seen_unseen_curve(st, head, gt_json, gt_dir, unseen, InferenceConfig(0.0, curve_points=7), include=(1.5,))
    assert curve["offset"].iloc[0] == -math.inf and curve["offset"].iloc[-1] == math.inf
    assert curve["offset"].is_monotonic_increasing and len(curve) >= 5
    assert curve["pq_unseen"].iloc[0] == 0.0 and curve["pq_seen"].iloc[-1] == 0.0
    for gamma in (0.0, 1.5):
        flat, _, _ = evaluate_head(st, head, gt_json, gt_dir, unseen, InferenceConfig(0.0, seen_offset=gamma))
        at = curve[curve["offset"] == gamma].iloc[0]
        assert (at["pq_seen"], at["pq_unseen"]) == pytest.approx((flat["pq_seen"] or 0.0, flat["pq_unseen"] or 0.0))
    for gamma, side in ((1e6, set(ids) - unseen), (-1e6, unseen)):
        for _, pred in predict_store(st, head, InferenceConfig(0.0, seen_offset=gamma), unseen_ids=unseen):
            assert not {s["category_id"] for s in pred.panoptic_segments} & side
    m = curve_metrics(curve)
    assert m["ausuc"] == pytest.approx(np.trapezoid(curve["pq_seen"], curve["pq_unseen"]), abs=1e-12)
    assert m["curve_pq_seen_max"] == curve["pq_seen"].max() >= curve["pq_seen"].iloc[0]
    # `zeroseg curve` computes the same curve from files
    import pandas as pd
    from typer.testing import CliRunner

    from zeroseg.cli import app
    from zeroseg.head.model import save_head
    from zeroseg.head.train import ClassifierConfig

    save_head(d / "curve_head.pt", head, ClassifierConfig(), "test")
    (d / "curve_params.yaml").write_text("inference:\n  object_threshold: 0.0\n  curve_points: 7\n  seen_offset: 1.5\n")
    r = CliRunner().invoke(app, ["curve", str(d / "curve_head.pt"), str(store), str(gt_json), str(gt_dir),
                                 str(split.all_json),
                                 "--params", str(d / "curve_params.yaml"), "--out", str(d / "curve.parquet")])
    assert r.exit_code == 0, r.output
    assert "ausuc" in r.output
    assert pd.read_parquet(d / "curve.parquet").equals(curve[curve["offset"] != 0.0].reset_index(drop=True))
