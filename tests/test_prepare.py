"""COCO data preparation: official COCO-Stuff label maps and COCO instances -> the panoptic layout,
the panoptic copy, and the errors on bad inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COCO_JSON, COCO_MINI, COCO_PNG
from zeroseg.data.cocostuff import COCOSTUFF_NAMES, cocostuff_categories, stuffmaps_to_panoptic
from zeroseg.data.instances import encode_masks, instances_to_panoptic, paint_image
from zeroseg.data.panoptic import load_panoptic, read_id_png, read_ids
from zeroseg.data.prepare import PrepareConfig, prepare_coco
from zeroseg.errors import ConfigError, DataError
from zeroseg.testing.fixtures import cocostuff_value, panoptic_to_instances, panoptic_to_stuffmaps


def _cfg(tmp_path, **kw):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    base = dict(train_annotations=str(tmp_path / "none"), val_annotations=str(tmp_path / "none"),
                train_images=str(images), val_images=str(images))
    return PrepareConfig(**{**base, **kw})


def test_cocostuff_has_the_171_benchmark_classes():
    cats = cocostuff_categories()
    assert len(COCOSTUFF_NAMES) == 182 and len(cats) == 171
    assert cats[0] == {"id": 1, "name": "person", "isthing": 0, "supercategory": "thing"}
    assert {c["name"] for c in cats} >= {"clouds", "grass", "playingfield", "river", "road", "tree", "wall-concrete"}


def test_stuff_maps_become_one_segment_per_class(tmp_path):
    maps, pngs = tmp_path / "maps", tmp_path / "png"
    maps.mkdir()
    pngs.mkdir()
    lab = np.full((6, 8), 255, np.uint8)
    lab[:3, :4] = 0      # person
    lab[3:, :] = 123     # grass (COCO-Stuff id 124)
    lab[:3, 6:] = 0      # a second person region: still ONE segment (semantic)
    Image.fromarray(lab).save(maps / "000000000042.png")
    out = stuffmaps_to_panoptic(maps, pngs)
    assert out["images"] == [{"id": 42, "file_name": "000000000042.jpg", "height": 6, "width": 8}]
    segs = {s["category_id"]: s for s in out["annotations"][0]["segments_info"]}
    assert set(segs) == {1, 124} and segs[1]["area"] == 18 and segs[124]["bbox"] == [0, 3, 8, 3]
    ids = read_ids(pngs / "000000000042.png", "segment", 42)
    assert (ids == 0).sum() == 6 and (ids == segs[1]["id"]).sum() == 18


@pytest.mark.parametrize("value,match", [(11, "not COCO-Stuff classes"), (200, "not COCO-Stuff classes")])
def test_stuff_map_with_an_unused_or_unknown_value_fails(tmp_path, value, match):
    (tmp_path / "maps").mkdir()
    (tmp_path / "png").mkdir()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / "maps" / "000000000001.png")
    with pytest.raises(DataError, match=match):
        stuffmaps_to_panoptic(tmp_path / "maps", tmp_path / "png")


def test_stuff_map_in_rgb_or_badly_named_fails(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    (tmp_path / "png").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(maps / "000000000001.png")
    with pytest.raises(DataError, match="single-channel"):
        stuffmaps_to_panoptic(maps, tmp_path / "png")
    (maps / "000000000001.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(maps / "cat.png")
    with pytest.raises(DataError, match="not a COCO image id"):
        stuffmaps_to_panoptic(maps, tmp_path / "png")


def test_instances_paint_small_objects_over_large_ones_and_drop_classes_to_void():
    image = {"id": 1, "height": 10, "width": 10}
    big = np.zeros((10, 10), bool)
    big[:, :8] = True
    small = np.zeros((10, 10), bool)
    small[2:5, 2:5] = True
    dropped = np.zeros((10, 10), bool)
    dropped[6:8, 6:10] = True
    crowd = np.zeros((10, 10), bool)
    crowd[9, :] = True
    anns = [{"category_id": 5, "segmentation": encode_masks(small[None])[0], "area": 9, "iscrowd": 0},
            {"category_id": 1, "segmentation": encode_masks(big[None])[0], "area": 80, "iscrowd": 0},
            {"category_id": 9, "segmentation": encode_masks(dropped[None])[0], "area": 8, "iscrowd": 0},
            {"category_id": 1, "segmentation": encode_masks(crowd[None])[0], "area": 10, "iscrowd": 1}]
    ids, segs = paint_image(image, anns, kept={1, 5})
    by_cat = {(s["category_id"], s["iscrowd"]): s for s in segs}
    assert (ids == by_cat[(5, 0)]["id"]).sum() == 9  # the small object keeps all its pixels
    assert by_cat[(1, 0)]["area"] == 80 - 9 - 4  # under the small object and the dropped one; over the crowd row
    assert (ids[6:8, 6:8] == 0).all() and 9 not in {s["category_id"] for s in segs}
    assert by_cat[(1, 1)]["area"] == 2  # the crowd row, painted first, keeps only what nothing covers


def test_instances_polygon_segmentation(tmp_path):
    raw = {"images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 20, "width": 20}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "area": 100.0, "iscrowd": 0,
                            "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}],
           "categories": [{"id": 3, "name": "car", "supercategory": "vehicle"}]}
    out = instances_to_panoptic(raw, {3}, tmp_path)
    ann = out["annotations"][0]
    assert ann["file_name"] == "COCO_val2014_000000000007.png" and out["categories"][0]["isthing"] == 1
    assert 90 <= ann["segments_info"][0]["area"] <= 121


def test_panoptic_to_official_formats_and_back_keeps_every_pixel(coco_mini, tmp_path):
    """coco-mini -> COCO-Stuff maps / instances JSON -> prepare -> the same pixels per class."""
    panoptic_to_stuffmaps(COCO_JSON, tmp_path / "maps")
    panoptic_to_instances(COCO_JSON, tmp_path / "inst.json")
    images = str(COCO_MINI / "train2017")
    stuff = prepare_coco(PrepareConfig("stuff", str(tmp_path / "maps"), str(tmp_path / "maps"), images, images),
                         tmp_path / "stuff")
    inst = prepare_coco(PrepareConfig("instances", str(tmp_path / "inst.json"), str(tmp_path / "inst.json"), images,
                                      images),
                        tmp_path / "inst")
    assert (stuff.classes, inst.classes, stuff.val_images, inst.train_images) == (171, 80, 100, 100)
    gt = load_panoptic(COCO_JSON)
    s_ds, i_ds = load_panoptic(tmp_path / "stuff/panoptic_val.json"), load_panoptic(tmp_path / "inst/panoptic_val.json")
    value = {cid: cocostuff_value(c.name) + 1 for cid, c in gt.categories.items()}
    for iid in list(gt.annotations)[:25]:
        ann = gt.annotations[iid]
        ids = read_id_png(COCO_PNG, ann)
        cls = np.zeros(ids.shape, np.int64)
        for s in ann["segments_info"]:
            cls[ids == s["id"]] = value[s["category_id"]]
        sids = read_id_png(tmp_path / "stuff/panoptic_val", s_ds.annotations[iid])
        scls = np.zeros(ids.shape, np.int64)
        for s in s_ds.annotations[iid]["segments_info"]:
            scls[sids == s["id"]] = s["category_id"]
        assert (scls == cls).all(), iid
        iids = read_id_png(tmp_path / "inst/panoptic_val", i_ds.annotations[iid])
        things = [s for s in ann["segments_info"] if gt.categories[s["category_id"]].isthing]
        assert len(i_ds.annotations[iid]["segments_info"]) == len(things)
        for s, t in zip(sorted(things, key=lambda s: -s["area"]),
                        sorted(i_ds.annotations[iid]["segments_info"], key=lambda s: -s["area"])):
            assert (ids == s["id"]).sum() == (iids == t["id"]).sum() and s["category_id"] == t["category_id"]
    assert json.loads((tmp_path / "inst/instances_val.json").read_text())["annotations"]
    assert json.loads((tmp_path / "stuff/instances_val.json").read_text())["categories"] == []


def test_prepare_panoptic_copies_and_derives_instances(coco_mini, tmp_path):
    images = str(COCO_MINI / "train2017")
    res = prepare_coco(PrepareConfig("panoptic", str(COCO_JSON), str(COCO_JSON), images, images), tmp_path / "out")
    assert res.metrics() == {"train_images": 100, "val_images": 100, "classes": 133}
    assert len(list((tmp_path / "out/panoptic_train").glob("*.png"))) == 100
    inst = json.loads((tmp_path / "out/instances_val.json").read_text())
    assert len(inst["categories"]) == 80 and all(a["id"] for a in inst["annotations"])


def test_prepare_val_limit_keeps_the_first_images(coco_mini, tmp_path):
    """prepare.val_limit (the smoke pipelines' CI budget): the N lowest image ids, their PNGs and instances only."""
    images = str(COCO_MINI / "train2017")
    res = prepare_coco(PrepareConfig("panoptic", str(COCO_JSON), str(COCO_JSON), images, images, val_limit=7),
                       tmp_path / "out")
    assert res.metrics() == {"train_images": 100, "val_images": 7, "classes": 133}
    val = json.loads((tmp_path / "out/panoptic_val.json").read_text())
    first = sorted(im["id"] for im in json.loads(COCO_JSON.read_text())["images"])[:7]
    assert sorted(im["id"] for im in val["images"]) == sorted(a["image_id"] for a in val["annotations"]) == first
    assert (sorted(p.name for p in (tmp_path / "out/panoptic_val").glob("*.png"))
            == sorted(a["file_name"] for a in val["annotations"]))
    inst = json.loads((tmp_path / "out/instances_val.json").read_text())
    assert {a["image_id"] for a in inst["annotations"]} <= set(first) and len(inst["images"]) == 7
    with pytest.raises(ConfigError, match="prepare.val_limit"):
        PrepareConfig("panoptic", "a", "a", "a", "a", val_limit=-1)


def test_prepare_keeps_only_a_splits_classes(coco_mini, tmp_path):
    panoptic_to_instances(COCO_JSON, tmp_path / "inst.json")
    images = str(COCO_MINI / "train2017")
    prepare_coco(PrepareConfig("instances", str(tmp_path / "inst.json"), str(tmp_path / "inst.json"), images, images,
                               classes="coco-zsi-48-17"), tmp_path / "out")
    names = {c["name"] for c in json.loads((tmp_path / "out/panoptic_train.json").read_text())["categories"]}
    assert len(names) == 65 and "hot dog" not in names and "dog" in names
    inst = json.loads((tmp_path / "out/instances_val.json").read_text())
    assert {a["category_id"] for a in inst["annotations"]} <= {c["id"] for c in inst["categories"]}


def test_prepare_bad_inputs_name_the_field_and_leave_nothing(coco_mini, tmp_path):
    with pytest.raises(ConfigError, match="prepare.format"):
        _cfg(tmp_path, format="lvis")
    with pytest.raises(ConfigError, match="prepare.val_images: empty"):
        _cfg(tmp_path, val_images="")
    with pytest.raises(ConfigError, match="prepare.classes"):
        _cfg(tmp_path, classes="coco-zsi-99-1")
    with pytest.raises(ConfigError, match="prepare.train_annotations"):
        prepare_coco(_cfg(tmp_path), tmp_path / "out")
    with pytest.raises(ConfigError, match="class subsets are for the instances format"):
        prepare_coco(_cfg(tmp_path, train_annotations=str(COCO_JSON), val_annotations=str(COCO_JSON),
                          classes="coco-zsi-48-17"), tmp_path / "out")
    with pytest.raises(DataError, match=r"100 image\(s\) listed in .* are missing"):
        prepare_coco(_cfg(tmp_path, train_annotations=str(COCO_JSON), val_annotations=str(COCO_JSON)), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_cli_prepare_and_coco_fixture_call_the_same_functions(coco_mini, tmp_path):
    from typer.testing import CliRunner

    from zeroseg.cli import app

    r = CliRunner().invoke(app, ["coco-fixture", "instances", str(COCO_JSON), "--out", str(tmp_path / "inst.json")])
    assert r.exit_code == 0, r.output
    images = str(COCO_MINI / "train2017")
    (tmp_path / "params.yaml").write_text(
        f"prepare:\n  format: instances\n  train_annotations: {tmp_path / 'inst.json'}\n"
        f"  val_annotations: {tmp_path / 'inst.json'}\n  train_images: {images}\n  val_images: {images}\n")
    r = CliRunner().invoke(app, ["prepare", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "100 train + 100 val images, 80 classes" in r.output
    r = CliRunner().invoke(app, ["coco-fixture", "lvis", str(COCO_JSON), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "stuff or instances" in r.output
