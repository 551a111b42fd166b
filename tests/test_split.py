import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import COCO_JSON, COCO_MINI, COCO_PNG, read_json, write_json
from zeroseg.cli import app
from zeroseg.data.classes import PRESETS, resolve_unseen
from zeroseg.data.panoptic import id2rgb, load_panoptic, rgb2id
from zeroseg.errors import ConfigError, DataError, LeakError
from zeroseg.segmenter.data import PanopticSegments, seen_classes
from zeroseg.split import check_no_leak, check_no_unseen_target, split_dataset


def test_coco_mini_zsp_keeps_31(coco_mini, tmp_path):
    res = split_dataset(COCO_JSON, "coco-zsp", tmp_path / "out")
    assert (res.num_images, res.num_seen_images, res.num_unseen_images) == (100, 31, 69)
    seen = read_json(res.seen_json)
    unseen_ids = {c["id"] for c in seen["categories"] if c["split"] == "unseen"}
    assert unseen_ids == {21, 25, 33, 34, 41, 57, 87, 100, 145, 148, 149, 184, 187, 193}
    assert len(seen["images"]) == 31 and len(seen["annotations"]) == 31
    for a in seen["annotations"]:
        assert not any(s["category_id"] in unseen_ids for s in a["segments_info"])
    un = read_json(res.unseen_json)
    for a in un["annotations"]:
        assert any(s["category_id"] in unseen_ids for s in a["segments_info"])
    al = read_json(res.all_json)
    assert len(al["images"]) == 100 and all(c["split"] in ("seen", "unseen") for c in al["categories"])
    man = pd.read_parquet(res.manifest)
    assert len(man) == 100 and int(man.kept.sum()) == 31
    assert set(man.columns) >= {"image_id", "file_name", "kept", "unseen_classes"}
    assert all(len(u) > 0 for u in man[~man.kept].unseen_classes)
    assert check_no_leak(res.seen_json, COCO_JSON, COCO_PNG, "coco-zsp") == 31


def test_coco_mini_ignore_policy_keeps_every_image_without_an_unseen_target(coco_mini, tmp_path):
    """ZSS protocol: all 100 images train; every unseen segment is an ignore region, never a target."""
    res = split_dataset(COCO_JSON, "coco-zsp", tmp_path / "out", policy="ignore")
    assert (res.num_images, res.num_seen_images, res.num_unseen_images) == (100, 100, 69)
    assert res.metrics()["ignored_segments"] == res.ignored_segments > 69
    seen = read_json(res.seen_json)
    unseen_ids = {c["id"] for c in seen["categories"] if c["split"] == "unseen"}
    flags = [(s["category_id"] in unseen_ids,
              s.get("ignore", 0)) for a in seen["annotations"] for s in a["segments_info"]]
    assert sum(u for u, _ in flags) == res.ignored_segments and all(u == bool(i) for u, i in flags)
    assert int(pd.read_parquet(res.manifest).kept.sum()) == 100
    # the segmenter's training data (strict: a target outside the seen classes would raise)
    classes = seen_classes(load_panoptic(res.seen_json))
    data = PanopticSegments(res.seen_json, COCO_MINI / "train2017", classes, 64, COCO_PNG, strict=True)
    cats = set()
    for k in range(len(data)):
        cats |= set(data[k].category_ids.tolist())
    assert cats and not cats & unseen_ids
    assert check_no_leak(res.seen_json, COCO_JSON, COCO_PNG, "coco-zsp") == 100  # ignored pixels are allowed
    # the guard catches an unseen segment that lost its ignore flag
    a = next(a for a in seen["annotations"] if any(s.get("ignore") for s in a["segments_info"]))
    next(s for s in a["segments_info"] if s.get("ignore")).pop("ignore")
    leaked = tmp_path / "leaked.json"
    write_json(leaked, seen)
    with pytest.raises(LeakError, match=f"image {a['image_id']}.*is a training target"):
        check_no_unseen_target(leaked, COCO_JSON, "coco-zsp")
    with pytest.raises(LeakError, match=f"image {a['image_id']}.*pixels of"):
        check_no_leak(leaked, COCO_JSON, COCO_PNG, "coco-zsp")
    with pytest.raises(ConfigError, match="split.policy.*'keep'"):
        split_dataset(COCO_JSON, "coco-zsp", tmp_path / "bad", policy="keep")


def test_crowd_segment_of_unseen_class_excludes_image(benchmark_copy, tmp_path):
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    d = read_json(js)
    sand = next(c["id"] for c in d["categories"] if c["name"] == "sand")
    unseen = "red triangle,green square,blue circle,yellow triangle,sand"
    base = split_dataset(js, unseen, tmp_path / "a")
    kept = read_json(base.seen_json)["images"][0]["id"]
    ann = next(a for a in d["annotations"] if a["image_id"] == kept)
    ann["segments_info"][0]["category_id"] = sand
    ann["segments_info"][0]["iscrowd"] = 1
    write_json(js, d)
    res = split_dataset(js, unseen, tmp_path / "b")
    assert kept not in {im["id"] for im in read_json(res.seen_json)["images"]}
    assert res.num_seen_images == base.num_seen_images - 1


def test_leak_guard_fails_on_leaked_copy(coco_mini, tmp_path):
    res = split_dataset(COCO_JSON, "coco-zsp", tmp_path / "out")
    seen, al = read_json(res.seen_json), read_json(res.all_json)
    # leak 1: an unseen image slipped into the seen JSON with its unseen segments relabelled
    unseen_ids = {c["id"] for c in al["categories"] if c["split"] == "unseen"}
    iid = read_json(res.unseen_json)["images"][0]["id"]
    seen["images"].append(next(im for im in al["images"] if im["id"] == iid))
    ann = json.loads(json.dumps(next(a for a in al["annotations"] if a["image_id"] == iid)))
    for s in ann["segments_info"]:
        if s["category_id"] in unseen_ids:
            s["category_id"] = 1  # disguised as person: the JSON alone would not show it
    seen["annotations"].append(ann)
    leaked = tmp_path / "leaked_seen.json"
    write_json(leaked, seen)
    with pytest.raises(LeakError, match=f"image {iid}.*pixels of"):
        check_no_leak(leaked, COCO_JSON, COCO_PNG, "coco-zsp")
    r = CliRunner().invoke(app, ["check-leak", str(leaked), str(COCO_JSON), "--unseen", "coco-zsp"])
    assert r.exit_code == 2 and "unseen pixels" in r.output


def test_leak_guard_reads_pixels(benchmark_copy, tmp_path):
    """A seen image whose PNG was painted with an unseen segment's id is caught."""
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    res = split_dataset(js, "benchmark-default", tmp_path / "out")
    ref = read_json(js)
    un_img = read_json(res.unseen_json)["annotations"][0]
    cats = {c["id"]: c for c in read_json(res.all_json)["categories"]}
    unseen_seg = next(s for s in un_img["segments_info"] if cats[s["category_id"]]["split"] == "unseen")
    kept = read_json(res.seen_json)["annotations"][0]
    png = benchmark_copy / "annotations" / "panoptic_train" / kept["file_name"]
    ids = rgb2id(np.asarray(Image.open(png)))
    ids[:4, :4] = 16_000_000  # a new segment ...
    Image.fromarray(id2rgb(ids)).save(png)
    ref_ann = next(a for a in ref["annotations"] if a["image_id"] == kept["image_id"])
    ref_ann["segments_info"].append(dict(unseen_seg, id=16_000_000, area=16))  # ... of an unseen class
    write_json(js, ref)
    with pytest.raises(LeakError, match="16 pixels"):
        check_no_leak(res.seen_json, js, js.with_suffix(""), "benchmark-default")


def test_presets():
    assert len(PRESETS["coco-zsp"]) == 14
    assert len(PRESETS["coco-zss"]) == 15
    assert len(PRESETS["coco-zsi-48-17"]) == 17
    assert len(PRESETS["coco-zsi-65-15"]) == 15
    assert resolve_unseen("cow, giraffe ,cow") == ("cow", "giraffe")
    assert resolve_unseen("coco-zsp") == PRESETS["coco-zsp"]


def test_zsi_presets_match_coco_panoptic_names(coco_mini):
    names = {c["name"] for c in read_json(COCO_JSON)["categories"]}
    for p in ("coco-zsp", "coco-zsi-48-17", "coco-zsi-65-15"):
        assert set(PRESETS[p]) <= names, p


def test_unknown_class_name_lists_close_names(coco_mini, tmp_path):
    with pytest.raises(ConfigError, match=r"'grass' \(close: grass-merged"):
        split_dataset(COCO_JSON, "cow,grass", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(app, ["split", str(COCO_JSON), "--unseen", "giraffes", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "giraffe" in r.output and not (tmp_path / "o").exists()


def _bad(benchmark_copy, tmp_path, edit, match):
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    d = read_json(js)
    edit(d, benchmark_copy)
    write_json(js, d)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match):
        split_dataset(js, "benchmark-default", out)
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_missing_png(benchmark_copy, tmp_path):
    def edit(d, root):
        (root / "annotations" / "panoptic_train" / d["annotations"][3]["file_name"]).unlink()
    _bad(benchmark_copy, tmp_path, edit, r"000000000004\.png: segment PNG missing \(image 4")


def test_segment_absent_from_png(benchmark_copy, tmp_path):
    def edit(d, root):
        d["annotations"][2]["segments_info"].append({"id": 77, "category_id": 1, "area": 5, "bbox": [0, 0, 1, 1],
                                                     "iscrowd": 0})
    _bad(benchmark_copy, tmp_path, edit, r"segments_info id\(s\) \[77\] of image 3 are absent from the PNG")


def test_png_id_absent_from_json(benchmark_copy, tmp_path):
    def edit(d, root):
        d["annotations"][1]["segments_info"].pop()
    _bad(benchmark_copy, tmp_path, edit, r"PNG segment id\(s\) .* of image 2 are not in segments_info")


def test_unknown_category_id(benchmark_copy, tmp_path):
    def edit(d, root):
        d["annotations"][0]["segments_info"][0]["category_id"] = 999
    _bad(benchmark_copy, tmp_path, edit,
         r"annotations\[0\] \(image 1\)\.segments_info\[0\]\.category_id 999 is not a known category id")


def test_duplicate_image_id(benchmark_copy, tmp_path):
    def edit(d, root):
        d["images"][1]["id"] = d["images"][0]["id"]
    _bad(benchmark_copy, tmp_path, edit, r"images\[1\]: duplicate image id 1")


def test_png_size_mismatch(benchmark_copy, tmp_path):
    def edit(d, root):
        d["images"][0]["width"] = 65
    _bad(benchmark_copy, tmp_path, edit, r"PNG size 64x64 differs from image 1's width x height 65x64")


def test_split_refuses_unreachable_unseen_class(benchmark_copy, tmp_path):
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    with pytest.raises(ConfigError, match="attribute 'red'"):
        split_dataset(js, "red circle,red square,red triangle", tmp_path / "out")


def test_existing_output_replaced_only_on_success(benchmark_copy, tmp_path):
    js = benchmark_copy / "annotations" / "panoptic_train.json"
    out = tmp_path / "out"
    split_dataset(js, "benchmark-default", out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError):
        split_dataset(js, "no such class", out)
    assert sorted(p.name for p in out.iterdir()) == before
