import hashlib

import numpy as np
import pytest

from zeroseg.benchmark import BenchmarkConfig, generate, shape_mask
from zeroseg.config import from_dict
from zeroseg.data.classes import PRESETS, check_attribute_coverage
from zeroseg.data.panoptic import id2rgb, load_panoptic, read_id_png, read_image, rgb2id
from zeroseg.errors import ConfigError


def test_format_valid(tiny_benchmark):
    for split in ("train", "val"):
        js = tiny_benchmark / "annotations" / f"panoptic_{split}.json"
        ds = load_panoptic(js)
        assert len(ds.images) == (40 if split == "train" else 12)
        for c in ds.raw["categories"]:
            assert {"id", "name", "isthing", "color", "attributes"} <= set(c)
            assert len(c["color"]) == 3
        for iid, ann in ds.annotations.items():
            img = read_image(tiny_benchmark / split, ds.images[iid])
            assert img.shape == (64, 64, 3)
            ids = read_id_png(js.with_suffix(""), ann, ds.images[iid])
            present = set(np.unique(ids).tolist()) - {0}
            assert present == {s["id"] for s in ann["segments_info"]}
            for s in ann["segments_info"]:
                m = ids == s["id"]
                assert s["area"] == int(m.sum())
                ys, xs = np.nonzero(m)
                assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert s["iscrowd"] == 0
            kinds = {ds.categories[s["category_id"]].isthing for s in ann["segments_info"]}
            assert False in kinds  # every image has at least one stuff region


def test_things_and_stuff_variety(tiny_benchmark):
    ds = load_panoptic(tiny_benchmark / "annotations" / "panoptic_train.json")
    per_image_things = [sum(ds.categories[s["category_id"]].isthing for s in a["segments_info"])
                        for a in ds.annotations.values()]
    assert max(per_image_things) >= 2
    used = {s["category_id"] for a in ds.annotations.values() for s in a["segments_info"]}
    assert len(used) >= 12


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic(tmp_path):
    cfg = BenchmarkConfig(seed=5, image_size=48, train_images=6, val_images=2)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    generate(BenchmarkConfig(seed=6, image_size=48, train_images=6, val_images=2), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_default_unseen_shares_every_attribute():
    cats = BenchmarkConfig().classes()
    names = {c["name"] for c in cats}
    unseen = PRESETS["benchmark-default"]
    assert set(unseen) <= names
    assert any(not c["isthing"] for c in cats if c["name"] in unseen)
    assert sum(c["isthing"] for c in cats if c["name"] in unseen) >= 3
    check_attribute_coverage(cats, unseen)  # does not raise
    with pytest.raises(ConfigError, match="no seen thing class shares"):
        # every red class unseen: 'red' has no seen carrier
        check_attribute_coverage(cats, ("red circle", "red square", "red triangle"))


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown colour 'pink'"):
        BenchmarkConfig(colours=("red", "pink"))
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(BenchmarkConfig, {"image_sise": 64})
    with pytest.raises(ConfigError, match="image_size: expected an integer"):
        from_dict(BenchmarkConfig, {"image_size": "big"})


def test_shapes_differ():
    masks = {s: shape_mask(s, 64, 32, 32, 20, 0.3) for s in ("circle", "square", "triangle", "cross", "star", "ring")}
    areas = {s: int(m.sum()) for s, m in masks.items()}
    assert all(a > 200 for a in areas.values())
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.85, (a, b, iou)


def test_rgb_id_roundtrip():
    ids = np.random.default_rng(0).integers(0, 256**3, size=(5, 7))
    assert (rgb2id(id2rgb(ids)) == ids).all()


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    import zeroseg.benchmark as benchmark

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(benchmark, "render_image", boom)
    with pytest.raises(RuntimeError):
        generate(BenchmarkConfig(image_size=48, train_images=2, val_images=1), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
