import contextlib
import io

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from tests.conftest import COCO_JSON, COCO_PNG, read_json, write_json
from zeroseg.cli import app
from zeroseg.data.instances import encode_masks
from zeroseg.data.panoptic import Category, load_panoptic, read_id_png
from zeroseg.errors import DataError
from zeroseg.metrics.panoptic import PanopticEvaluator, pq_files
from zeroseg.metrics.summary import harmonic_mean
from zeroseg.metrics.universal import UniversalEvaluator, evaluate_files
from zeroseg.testing.perturb import KINDS, perturb_folder


@pytest.fixture(params=["synthetic", "coco-mini"])
def refset(request, tiny_benchmark) -> tuple:
    """(GT JSON, GT PNG folder, unseen preset) of the independent-reference tests: the small embedded
    benchmark's val set built in the session (always there, so CI without ../shared keeps the
    check against panopticapi and COCOeval) and the real COCO mini (skipped when absent)."""
    if request.param == "synthetic":
        js = tiny_benchmark / "annotations" / "panoptic_val.json"
        return js, js.with_suffix(""), "benchmark-default"
    request.getfixturevalue("coco_mini")
    return COCO_JSON, COCO_PNG, "coco-zsp"


def _reference(gt_json, gt_dir, pred_json, pred_dir):
    from panopticapi.evaluation import pq_compute_single_core

    gt = read_json(gt_json)
    cats = {c["id"]: c for c in gt["categories"]}
    preds = {a["image_id"]: a for a in read_json(pred_json)["annotations"]}
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, [(a, preds[a["image_id"]]) for a in gt["annotations"]], str(gt_dir),
                                      str(pred_dir), cats)
    return stat, cats


@pytest.mark.parametrize("kinds", [(k,) for k in KINDS] + [KINDS])
def test_pq_equals_panopticapi(refset, tmp_path, kinds):
    gt_json, gt_png, unseen = refset
    pj, pd_ = perturb_folder(gt_json, gt_png, tmp_path / "p", seed=len(kinds), kinds=kinds, strength=0.6)
    ours = pq_files(gt_json, gt_png, pj, pd_, unseen)
    stat, cats = _reference(gt_json, gt_png, pj, pd_)
    for isthing, key in ((None, "pq"), (True, "pq_things"), (False, "pq_stuff")):
        ref, per = stat.pq_average(cats, isthing)
        assert ours.flat()[key] == pytest.approx(ref["pq"], abs=1e-9)
    _, per = stat.pq_average(cats, None)
    for cid, r in per.items():
        st = stat.pq_per_cat[cid]
        mine = ours.per_class.get(cid)
        if st.tp + st.fp + st.fn == 0:
            assert mine is None
            continue
        assert (mine["tp"], mine["fp"], mine["fn"]) == (st.tp, st.fp, st.fn)
        for m in ("pq", "sq", "rq"):
            assert mine[m] == pytest.approx(r[m], abs=1e-9)


def test_pq_equals_public_pq_compute(refset, tmp_path):
    from panopticapi.evaluation import pq_compute

    gt_json, gt_png, _ = refset
    pj, pd_ = perturb_folder(gt_json, gt_png, tmp_path / "p", seed=7)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(str(gt_json), str(pj), str(gt_png), str(pd_))
    flat = pq_files(gt_json, gt_png, pj, pd_).flat()
    assert 0 < ref["All"]["pq"] < 1  # a perturbed prediction: neither perfect nor empty
    for name, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for m in ("pq", "sq", "rq"):
            assert flat[m + suffix] == pytest.approx(ref[name][m], abs=1e-9)


def test_perfect_prediction(coco_mini):
    flat = pq_files(COCO_JSON, COCO_PNG, COCO_JSON, COCO_PNG, "coco-zsp").flat()
    assert flat["pq"] == flat["pq_seen"] == flat["pq_unseen"] == flat["pq_hm"] == 1.0


def _instance_and_semantic_files(pred_json, pred_dir, out, seed=0, gt_json=COCO_JSON):
    """From a perturbed panoptic folder: a COCO results file (each thing segment a detection with
    a random score, plus a shifted duplicate that overlaps it) and semantic PNGs (category ids)."""
    rng = np.random.default_rng(seed)
    gt = load_panoptic(gt_json)
    things = {c for c, cat in gt.categories.items() if cat.isthing}
    dets, sem_dir = [], out / "semantic"
    sem_dir.mkdir(parents=True)
    for a in read_json(pred_json)["annotations"]:
        ids = read_id_png(pred_dir, a)
        sem = np.zeros(ids.shape, np.uint16)
        for s in a["segments_info"]:
            m = ids == s["id"]
            sem[m] = s["category_id"]
            if s["category_id"] in things:
                for mask in (m, np.roll(m, 7, axis=1)):
                    dets.append({"image_id": a["image_id"], "category_id": s["category_id"],
                                 "segmentation": encode_masks(mask[None])[0], "score": float(rng.random())})
        Image.fromarray(sem).save(sem_dir / a["file_name"])
    write_json(out / "instances.json", dets)
    return out / "instances.json", sem_dir


def test_segm_ap50_equals_pycocotools(refset, tmp_path):
    gt_json, gt_png, unseen = refset
    pj, pd_ = perturb_folder(gt_json, gt_png, tmp_path / "p", seed=3)
    res, sem = _instance_and_semantic_files(pj, pd_, tmp_path / "f", gt_json=gt_json)
    flat, _ = evaluate_files(gt_json, gt_png, pj, pd_, unseen, instances_json=res)
    assert "miou" not in flat  # no semantic prediction: not scored
    # independent: the ground truth's thing segments as a COCO instances file, COCOeval as a user runs it
    gt = read_json(gt_json)
    things = {c["id"] for c in gt["categories"] if c["isthing"]}
    anns = []
    for a in gt["annotations"]:
        ids = read_id_png(gt_png, a)
        for s in a["segments_info"]:
            if s["category_id"] in things:
                rle = encode_masks((ids == s["id"])[None])[0]
                anns.append({"id": len(anns) + 1, "image_id": a["image_id"], "category_id": s["category_id"],
                             "segmentation": rle, "area": s["area"], "bbox": s["bbox"], "iscrowd": s["iscrowd"]})
    write_json(tmp_path / "gt.json", {"images": gt["images"], "annotations": anns,
                                      "categories": [c for c in gt["categories"] if c["isthing"]]})
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO(str(tmp_path / "gt.json"))
        e = COCOeval(cgt, cgt.loadRes(str(res)), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert flat["map50"] == pytest.approx(e.stats[1], abs=1e-12)
    assert 0 < flat["map50_unseen"] < 1 and 0 < flat["r100_seen"] <= 1
    r = CliRunner().invoke(app, ["ap", str(tmp_path / "gt.json"), str(res), "--json", str(tmp_path / "ap.json")])
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "ap.json")["map50"] == pytest.approx(e.stats[1], abs=1e-12)


def test_instances_ground_truth_file_replaces_the_panoptic_things(coco_mini, tmp_path):
    """ZSI scores mAP against the official instances JSON: the derived file gives the same
    numbers; a file with one class fewer changes them; the CLI takes it too."""
    pj, pd_ = perturb_folder(COCO_JSON, COCO_PNG, tmp_path / "p", seed=3)
    res, _ = _instance_and_semantic_files(pj, pd_, tmp_path / "f")
    flat, _ = evaluate_files(COCO_JSON, COCO_PNG, pj, pd_, "coco-zsp", instances_json=res)
    from zeroseg.testing.fixtures import panoptic_to_instances

    panoptic_to_instances(COCO_JSON, tmp_path / "inst.json")
    same, _ = evaluate_files(COCO_JSON, COCO_PNG, pj, pd_, "coco-zsp", tmp_path / "inst.json", instances_json=res)
    assert same == flat
    inst = read_json(tmp_path / "inst.json")
    inst["annotations"] = [a for a in inst["annotations"] if a["category_id"] != 1]  # no person ground truth
    write_json(tmp_path / "inst2.json", inst)
    fewer, _ = evaluate_files(COCO_JSON, COCO_PNG, pj, pd_, "coco-zsp", tmp_path / "inst2.json", instances_json=res)
    assert fewer["map50"] != flat["map50"] and fewer["pq"] == flat["pq"]
    r = CliRunner().invoke(app, ["evaluate", str(COCO_JSON), str(COCO_PNG), str(pj), str(pd_), "--unseen", "coco-zsp",
                                 "--instances-gt", str(tmp_path / "inst2.json"), "--instances", str(res),
                                 "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert read_json(tmp_path / "e.json")["map50"] == pytest.approx(fewer["map50"])


def test_semantic_against_brute_force(refset, tmp_path):
    """detectron2's mIoU: IoU summed over classes with GT pixels / classes with GT or predicted
    pixels (GT VOID ignored), on semantic PNGs read from a folder."""
    gt_json, gt_png, unseen = refset
    pj, pd_ = perturb_folder(gt_json, gt_png, tmp_path / "p", seed=4)
    _, sem_dir = _instance_and_semantic_files(pj, pd_, tmp_path / "f", gt_json=gt_json)
    gt = load_panoptic(gt_json)
    in_gt = {s["category_id"] for a in gt.annotations.values() for s in a["segments_info"]}
    absent = sorted(set(gt.categories) - in_gt)
    if absent:  # a class only predicted: its IoU counts 0 for mIoU's mean only if it has GT pixels (it has none)
        first = sorted(sem_dir.iterdir())[0]
        sem = np.asarray(Image.open(first)).copy()
        sem[:, : sem.shape[1] // 2] = absent[0]
        Image.fromarray(sem).save(first)
    flat, _ = evaluate_files(gt_json, gt_png, pj, pd_, unseen, semantic_dir=sem_dir)
    assert "map50" not in flat
    preds = {a["image_id"]: a for a in read_json(pj)["annotations"]}
    inter, union, gtpix = {}, {}, {}
    for iid, ann in gt.annotations.items():
        g = read_id_png(gt_png, ann)
        gsem = np.zeros(g.shape, int)
        for s in ann["segments_info"]:
            gsem[g == s["id"]] = s["category_id"]
        psem = np.asarray(Image.open(sem_dir / preds[iid]["file_name"])).astype(int)
        valid = gsem > 0
        for c in (set(np.unique(gsem[valid])) | set(np.unique(psem[valid]))) - {0}:
            gm, pm = (gsem == c) & valid, (psem == c) & valid
            inter[c] = inter.get(c, 0) + (gm & pm).sum()
            union[c] = union.get(c, 0) + (gm | pm).sum()
            gtpix[c] = gtpix.get(c, 0) + gm.sum()
    ious = [inter[c] / union[c] if gtpix[c] > 0 else 0.0 for c in inter]
    assert any(gtpix[c] == 0 for c in inter)  # the perturbation predicts some class absent from the GT
    assert flat["miou"] == pytest.approx(np.mean(ious), abs=1e-12)
    r = CliRunner().invoke(app, ["evaluate", str(gt_json), str(gt_png), str(pj), str(pd_),
                                 "--semantic-dir", str(sem_dir)])
    assert r.exit_code == 0 and "miou" in r.output, r.output


# ---- bad input --------------------------------------------------------------------------

@pytest.fixture
def pred_copy(benchmark_copy, tmp_path):
    js = benchmark_copy / "annotations" / "panoptic_val.json"
    pj, pd_ = perturb_folder(js, js.with_suffix(""), tmp_path / "pred", seed=0, strength=0.3)
    return js, js.with_suffix(""), pj, pd_


def test_missing_prediction_png(pred_copy):
    js, gd, pj, pd_ = pred_copy
    name = read_json(pj)["annotations"][2]["file_name"]
    (pd_ / name).unlink()
    with pytest.raises(DataError, match=rf"{name}: prediction PNG missing \(image 1000003"):
        pq_files(js, gd, pj, pd_)


def test_pred_json_segment_absent_from_png(pred_copy):
    js, gd, pj, pd_ = pred_copy
    d = read_json(pj)
    d["annotations"][1]["segments_info"].append({"id": 99999, "category_id": 1})
    write_json(pj, d)
    with pytest.raises(DataError,
                       match=r"image 1000002: predicted segments_info id\(s\) \[99999\] are absent from the PNG"):
        pq_files(js, gd, pj, pd_)


def test_pred_png_segment_absent_from_json(pred_copy):
    js, gd, pj, pd_ = pred_copy
    d = read_json(pj)
    gone = d["annotations"][0]["segments_info"].pop()
    write_json(pj, d)
    with pytest.raises(DataError, match=rf"image 1000001: predicted PNG segment id\(s\) \[{gone['id']}\] "
                                        r"are not in segments_info"):
        pq_files(js, gd, pj, pd_)


def test_unknown_predicted_category(pred_copy):
    js, gd, pj, pd_ = pred_copy
    d = read_json(pj)
    d["annotations"][0]["segments_info"][0]["category_id"] = 4242
    write_json(pj, d)
    with pytest.raises(DataError, match="image 1000001: predicted segment .* unknown category_id 4242"):
        pq_files(js, gd, pj, pd_)


def test_mismatched_sizes(pred_copy):
    js, gd, pj, pd_ = pred_copy
    a = read_json(pj)["annotations"][0]
    Image.open(pd_ / a["file_name"]).crop((0, 0, 60, 64)).save(pd_ / a["file_name"])
    with pytest.raises(DataError, match=r"image 1000001: prediction is 60x64 but ground truth is 64x64"):
        pq_files(js, gd, pj, pd_)


def test_duplicate_prediction_image_ids(pred_copy):
    js, gd, pj, pd_ = pred_copy
    d = read_json(pj)
    d["annotations"].append(d["annotations"][0])
    write_json(pj, d)
    with pytest.raises(DataError, match=r"pred.json: annotations\[12\]: duplicate image_id 1000001"):
        pq_files(js, gd, pj, pd_)
    r = CliRunner().invoke(app, ["pq", str(js), str(gd), str(pj), str(pd_)])
    assert r.exit_code == 2 and "duplicate image_id" in r.output


def test_missing_prediction_for_image(pred_copy):
    js, gd, pj, pd_ = pred_copy
    d = read_json(pj)
    d["annotations"].pop(5)
    write_json(pj, d)
    with pytest.raises(DataError, match="no prediction for image 1000006"):
        pq_files(js, gd, pj, pd_)


# ---- edge cases -------------------------------------------------------------------------

def _cats():
    return {1: Category(1, "a", True, {}), 2: Category(2, "b", True, {}), 3: Category(3, "c", False, {})}


def test_image_with_no_segments_and_class_only_in_predictions():
    ev = UniversalEvaluator(_cats(), unseen_ids={2})
    empty = np.zeros((8, 8), np.uint32)
    ev.add(1, empty, [], empty, [], semantic=np.zeros((8, 8), np.int64))  # nothing at all
    gt = np.zeros((8, 8), np.uint32)
    gt[:6] = 5
    pred = np.zeros((8, 8), np.uint32)
    pred[:4] = 5
    pred[4:] = 9  # id 9: half on GT, half on VOID
    ev.add(2, gt, [{"id": 5, "category_id": 1, "area": 48, "iscrowd": 0}], pred,
           [{"id": 5, "category_id": 1}, {"id": 9, "category_id": 2, "score": 0.5}], semantic=np.where(pred == 9, 2, 1))
    m = ev.metrics()
    res = ev.panoptic.result()
    assert res.per_class[2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 0}
    assert m["pq_seen"] == pytest.approx(2 / 3) and m["pq_unseen"] == 0.0 and m["pq_hm"] == 0.0
    assert 3 not in res.per_class  # no TP+FP+FN: left out of the means
    # class 2 has no GT pixels but is predicted on 16 labelled pixels: it counts with IoU 0 (detectron2)
    assert m["miou_unseen"] == 0.0 and m["miou_seen"] == pytest.approx(32 / 48)


def test_no_unseen_class_in_ground_truth_is_absent():
    ev = UniversalEvaluator(_cats(), unseen_ids={2})
    gt = np.zeros((8, 8), np.uint32)
    gt[:4] = 5
    segs = [{"id": 5, "category_id": 1, "area": 32, "iscrowd": 0}]
    ev.add(1, gt, segs, gt, [{"id": 5, "category_id": 1}], semantic=np.where(gt == 5, 1, 0),
           instances=[{"image_id": 1, "category_id": 1, "segmentation": encode_masks((gt == 5)[None])[0],
                       "score": 0.9}])
    m = ev.metrics()
    for k in ("pq", "sq", "rq", "map50", "r100", "miou"):
        assert m[f"{k}_seen"] == pytest.approx(1.0)
        assert m[f"{k}_unseen"] is None and m[f"{k}_hm"] is None


def test_harmonic_mean():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.5, None) is None
    assert harmonic_mean(0.6, 0.2) == pytest.approx(0.3)


def test_crowd_and_void_rules():
    """A prediction mostly on VOID or on a crowd region of its class is not a FP; crowd GT is no FN."""
    cats = _cats()
    ev = PanopticEvaluator(cats)
    gt = np.zeros((10, 10), np.uint32)
    gt[:, :5] = 7  # crowd of class 1
    pred = np.zeros((10, 10), np.uint32)
    pred[:, :4] = 1  # class 1 on the crowd region -> ignored
    pred[:, 6:] = 2  # class 2 on VOID -> ignored
    ev.add(1, gt, [{"id": 7, "category_id": 1, "area": 50, "iscrowd": 1}], pred,
           [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}])
    assert ev.result().per_class == {}


def test_cli_pq_json(pred_copy, tmp_path):
    js, gd, pj, pd_ = pred_copy
    r = CliRunner().invoke(app, ["pq", str(js), str(gd), str(pj), str(pd_), "--unseen", "benchmark-default", "--json",
                                 str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = read_json(tmp_path / "m.json")
    assert {"pq", "sq", "rq", "pq_things", "pq_stuff", "pq_seen", "pq_unseen", "pq_hm", "sq_hm", "rq_hm"} <= set(m)
    assert {row["split"] for row in m["per_class"]} == {"seen", "unseen"}
