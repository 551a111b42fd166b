"""Bad COCO-format input: which corruptions are REJECTED, which may be ACCEPTED, and random fuzzing.

REJECTED, with a :class:`DataError` naming the file and the field (the tables below; nothing is
written). A COCO panoptic JSON (split, prepare, the PQ evaluator's ground truth and prediction):
  bytes that are not JSON (truncated), not UTF-8, or start with a UTF-8 byte-order mark; a top
  level that is not an object; 'images' / 'annotations' / 'categories' missing or not lists;
  a category id that is not a positive integer (a string, a bool, 0), a category without name,
  with an empty name, without isthing or with isthing not 0/1, duplicate category ids or names,
  attribute lists of different lengths; an image without id, a duplicate image id, a height or
  width that is not a positive integer (0, 32.0, "32"), an absolute or '..' file_name; an
  annotation of an unknown image, a second annotation of one image, a segment-PNG file_name with
  a folder or shared by two images, segments_info not a list; a segment id outside 1..2^24-1, an
  unknown or non-integer category_id, a duplicate segment id in an image, a negative area,
  iscrowd not 0/1; for PQ's ground truth, a segment without area (panopticapi's union uses it).
  Its segment PNGs (the message names the PNG): missing, unreadable (truncated), 16-bit, a size
  other than the image's, an id the PNG holds but segments_info does not declare, or one it
  declares but the PNG does not hold.
A COCO instances JSON (the ZSI prepare): a top level that is not an object, a missing list, a
category without id, an image without height or with a string id, a duplicate image id, an
annotation that is not an object, lacks segmentation, has an unknown category or image, an area
that is not a non-negative number, iscrowd not 0/1, a segmentation that is neither polygons nor
an RLE, an RLE whose size is not the image's or whose counts are neither a string nor run
lengths summing to height x width, a polygon of odd length or with a non-finite coordinate.

ACCEPTED, with every result equal to the clean input's (split outputs, PQ, the instances
conversion's PNGs and JSON): unknown keys (top level, images, annotations, segments, categories;
an instances category's own keys are carried into the panoptic categories), no info / licenses,
reversed image / annotation / category / segments_info lists, a junk bbox (readers compute their
own), no area (split and the prediction; not PQ's ground truth), no iscrowd where it is 0, no
image license, any indentation and key order, and in an instances file a polygon of fewer than
3 points (no area: dropped, as detectron2 does; official COCO holds a few).

Not detected: a compressed RLE string altered into another valid one (a different mask).

Random fuzzing (hypothesis) of the same readers and the class-vector table loader: every case
either succeeds or ends in the project's own error (a :class:`ZerosegError`) whose message names
the corrupted file (and, for a corrupted JSON field, that field or the list it sits in), and a
failed run leaves no output behind. Deterministic (``derandomize``), no example database
written, 200 examples per entry point on a 32x32, 3-image benchmark.
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from zeroseg.benchmark import BenchmarkConfig, generate
from zeroseg.data.panoptic import id2rgb
from zeroseg.data.prepare import PrepareConfig, prepare_coco
from zeroseg.embed.table import load_table
from zeroseg.errors import DataError, ZerosegError
from zeroseg.metrics.panoptic import pq_files
from zeroseg.split import split_dataset
from zeroseg.testing.perturb import perturb_folder

MAX_ID = 256**3 - 1  # the largest segment id an RGB pixel holds
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, print_blob=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


# ---- a tiny valid world, built once ------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """3 train + 3 val images of 32x32 (the embedded benchmark at its smallest), predictions for
    the val images, and a small vector table in each format."""
    root = tmp_path_factory.mktemp("fuzz")
    synth = root / "synth"
    generate(BenchmarkConfig(seed=1, image_size=32, train_images=3, val_images=3), synth)
    val = synth / "annotations" / "panoptic_val.json"
    perturb_folder(val, val.with_suffix(""), synth / "pred", seed=0, strength=0.3)
    tables = synth / "tables"
    tables.mkdir()
    m = np.random.default_rng(0).normal(size=(3, 4))
    np.save(tables / "t.npy", m)
    (tables / "t.pkl").write_bytes(pickle.dumps(m, protocol=2))
    # columns = classes
    (tables / "t.txt").write_text("\n".join(",".join(f"{x:.6f}" for x in row) for row in m.T) + "\n")
    (tables / "names.txt").write_text("0\tsky\n1\tred circle\n2\tsand\n")
    return root


class Case:
    """A private copy of the world for one example (removed afterwards)."""

    def __init__(self, world: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=world))
        self.root = self.dir / "synth"
        shutil.copytree(world / "synth", self.root)
        self.ann = self.root / "annotations"

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- corruptions --------------------------------------------------------------------------

BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.sampled_from([-1, 0, 1, 2, 32, 33, MAX_ID, MAX_ID + 1, 2**31, 2**63, 2**64, -2**63 - 1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "\udcff", "a\x00b", "caf\u00e9", "../escape.png", "/etc/passwd", "sub/x.png", ".", "..",
                     "000000000001.png", "000000000002.jpg", "32", "1"]),
    st.text(max_size=6), st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["id", "x"]), st.integers(0, 3), max_size=2),
)


def _pick(data, obj) -> list:
    """A random path of keys/indices into the JSON tree (descending 3 times in 4)."""
    path, node = [], obj
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 3)) != 0:
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    return path


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def mutate_json(data, obj) -> list[str]:
    """Apply one random structural corruption in place; returns the field names (keys on the path)."""
    path = _pick(data, obj)
    op = data.draw(st.sampled_from(["delete", "replace", "replace", "collide", "duplicate", "retype"]))
    keys = [k for k in path if isinstance(k, str)]
    if not path:
        if op == "replace":
            obj.clear()
            obj.update(data.draw(st.dictionaries(st.sampled_from(["images", "annotations", "x"]), BAD_VALUES,
                                                 max_size=2)))
        return ["images", "annotations", "categories"]
    parent, key = _get(obj, path[:-1]), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = data.draw(BAD_VALUES)
    elif op == "collide" and len(path) >= 2 and isinstance(path[-2], int) and isinstance(key, str):
        siblings = _get(obj, path[:-2])  # the list that holds ``parent``
        other = siblings[data.draw(st.integers(0, len(siblings) - 1))]
        if isinstance(other, dict) and key in other:
            parent[key] = other[key]  # an id/file_name collision
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(json.loads(json.dumps(parent[key])))
    elif op == "retype":
        v = parent[key]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 2**900:
            parent[key] = data.draw(st.sampled_from([v + 0.5, -v, v * 2**40, str(v), [v]]))
        else:
            parent[key] = data.draw(st.sampled_from([[v], str(v)[:100], {"v": v}]))
    return keys


def mutate_bytes(data, raw: bytes) -> bytes:
    n = len(raw)
    op = data.draw(st.sampled_from(["truncate", "flip", "insert", "garbage", "empty"])) if n else "insert"
    if op == "truncate":
        return raw[: data.draw(st.integers(0, max(n - 1, 0)))]
    if op == "flip":
        i = data.draw(st.integers(0, n - 1))
        return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]
    if op == "insert":
        i = data.draw(st.integers(0, n))
        return raw[:i] + data.draw(st.sampled_from([b"\xff\xfe", b"\x80", b"\x00", b"{", b"]", b"9" * 30,
                                                    b"\xc3("])) + raw[i:]
    if op == "garbage":
        return data.draw(st.binary(min_size=1, max_size=64))
    return b""


def _png(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="PNG")
    return b.getvalue()


def corrupt_png(data, png: Path) -> str:
    """One random corruption of a segment PNG; returns its kind."""
    op = data.draw(st.sampled_from(["bytes", "bytes", "delete", "folder", "resize", "ids", "16bit", "gray", "rgba",
                                    "jpeg"]))
    try:
        ids = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
        ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
    except Exception:  # corrupted by an earlier draw
        ids = np.zeros((32, 32), np.int64)
    if png.is_dir():
        png.rmdir()
    if op == "bytes" and not png.exists():
        op = "delete"
    if op == "bytes":
        png.write_bytes(mutate_bytes(data, png.read_bytes()))
    elif op == "delete":
        png.unlink(missing_ok=True)
    elif op == "folder":
        png.unlink(missing_ok=True)
        png.mkdir()
    elif op == "resize":
        h, w = data.draw(st.sampled_from([(32, 31), (31, 32), (8, 8), (1, 1), (64, 32)]))
        png.write_bytes(_png(id2rgb(np.resize(ids, (h, w)))))
    elif op == "ids":  # pixels relabelled with declared, VOID or new ids
        present = sorted(set(np.unique(ids).tolist()))
        pool = st.sampled_from(present + [0, 1, MAX_ID]) if present else st.just(0)
        ys = data.draw(st.integers(0, 31))
        ids[ys:ys + data.draw(st.integers(1, 8))] = data.draw(pool)
        png.write_bytes(_png(id2rgb(ids)))
    elif op == "16bit":
        png.write_bytes(_png((ids % 65536).astype(np.uint16)))
    elif op == "gray":
        png.write_bytes(_png((ids % 256).astype(np.uint8)))
    elif op == "rgba":
        rgba = np.concatenate([id2rgb(ids), np.full(ids.shape + (1,), 7, np.uint8)], -1)
        png.write_bytes(_png(rgba))
    else:
        b = io.BytesIO()
        Image.fromarray(id2rgb(ids)).save(b, format="JPEG")
        png.write_bytes(b.getvalue())
    return op


def corrupt_dataset(data, js: Path) -> list[tuple[list[Path], list[str]]]:
    """1-3 corruptions of ``js`` or its PNGs. Returns, for each, (the files an error may name,
    the fields it may name: [] when bytes of the JSON or a PNG were corrupted)."""
    done = []
    png_dir = js.with_suffix("")
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(["json", "json", "json-bytes", "png"]))
        if target == "png":
            pngs = sorted(png_dir.glob("*.png"))
            if not pngs:
                continue
            png = data.draw(st.sampled_from(pngs))
            corrupt_png(data, png)
            done.append(([png], []))
        elif target == "json-bytes":
            js.write_bytes(mutate_bytes(data, js.read_bytes()))
            done.append(([js, png_dir], []))  # a flipped file_name is reported as a missing PNG
        else:
            try:
                obj = json.loads(js.read_text())
            except (ValueError, UnicodeDecodeError):
                continue  # already broken at the byte level
            if not isinstance(obj, dict):
                continue
            fields = mutate_json(data, obj)
            js.write_text(json.dumps(obj))
            done.append(([js, png_dir], fields))  # a JSON/PNG mismatch is reported on the PNG
    return done


SYNONYMS = {"categories": ["categor", "class"]}  # a deleted category is reported as an unknown class


def check_error(exc: ZerosegError, corruptions: list[tuple[list[Path], list[str]]], also: list[Path] = ()) -> None:
    """The message names a corrupted file (or one of ``also``) and, for a corrupted JSON field,
    that field, a key above it, or the JSON/PNG consistency it broke."""
    msg = str(exc)
    event(type(exc).__name__)  # pytest --hypothesis-show-statistics: how the examples ended

    def explains(files, fields):
        words = [w for f in fields for w in SYNONYMS.get(f, [f])] + ["segments_info", "PNG"]
        return any(str(p) in msg for p in [*files, *also]) and (not fields or any(w in msg for w in words))

    assert any(explains(*c) for c in corruptions), f"the message names none of {corruptions}: {msg}"


def no_output(out: Path) -> None:
    assert not out.exists(), f"{out} left behind"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temporaries left behind"


def clean_failure_or_result(run, corruptions, out: Path, also: list[Path] = ()):
    """``run()``'s result, or None after checking that it failed with our own error naming the
    corrupted file and field, and left nothing at ``out``."""
    try:
        res = run()
    except ZerosegError as exc:
        check_error(exc, corruptions, also)
        no_output(out)
        return None
    event("accepted")
    return res


# ---- the entry points ---------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_split_on_corrupted_dataset(world, data):
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        corruptions = corrupt_dataset(data, js)
        out = c.dir / "out"
        res = clean_failure_or_result(lambda: split_dataset(js, "benchmark-default", out), corruptions, out)
        if res is not None:
            assert res.seen_json.exists() and res.manifest.exists()


@FUZZ
@given(data=st.data())
def test_prepare_on_corrupted_dataset(world, data):
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        corruptions = corrupt_dataset(data, js)
        images = c.root / "train"
        out = c.dir / "out"
        res = clean_failure_or_result(lambda: prepare_coco(PrepareConfig("panoptic", str(js), str(js), str(images),
                                                                          str(images)), out),
                                      corruptions, out, [images])
        if res is not None:
            assert res.train_images == len(list((out / "panoptic_train").glob("*.png")))


@FUZZ
@given(data=st.data())
def test_pq_on_corrupted_prediction_or_ground_truth(world, data):
    with Case(world) as c:
        gt, pred = c.ann / "panoptic_val.json", c.root / "pred" / "pred.json"
        corruptions = corrupt_dataset(data, data.draw(st.sampled_from([pred, pred, gt])))
        try:
            pq_files(gt, gt.with_suffix(""), pred, pred.with_suffix(""))
        except ZerosegError as exc:
            check_error(exc, corruptions)
        else:
            event("accepted")


@FUZZ
@given(data=st.data())
def test_table_loader_on_corrupted_tables(world, data):
    with Case(world) as c:
        tables = c.root / "tables"
        table = tables / data.draw(st.sampled_from(["t.npy", "t.pkl", "t.txt"]))
        names = tables / "names.txt"
        target = data.draw(st.sampled_from([table, table, names]))
        if target == names and data.draw(st.booleans()):
            lines = data.draw(st.lists(st.sampled_from(["sky", "sky", "", " ", "\t", "3\t", "red circle", "sand",
                                                        "x\ty\tz",
                                                        "\udcff"]), max_size=5))
            names.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
        else:
            target.write_bytes(mutate_bytes(data, target.read_bytes()))
        try:
            got, m = load_table(table, names)
        except ZerosegError as exc:
            event(type(exc).__name__)
            assert str(table) in str(exc) or str(names) in str(exc), str(exc)
        else:
            event("accepted")
            # rows are classes; a text table whose column count equals the names is read transposed
            assert m.dtype == np.float64 and m.shape[0] == len(got) and np.isfinite(m).all()


# ---- the command line ---------------------------------------------------------------------

@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_cli_exit_code_on_corrupted_input(world, data):
    """The commands map every such error to exit code 2 and a one-line message (no traceback)."""
    from zeroseg.cli import app

    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        val, pred = c.ann / "panoptic_val.json", c.root / "pred" / "pred.json"
        command = data.draw(st.sampled_from(["split", "pq"]))
        corruptions = corrupt_dataset(data, js if command == "split" else pred)
        out = c.dir / "out"
        args = (["split", str(js), "--unseen", "benchmark-default", "--out", str(out)] if command == "split" else
                ["pq", str(val), str(val.with_suffix("")), str(pred), str(pred.with_suffix("")), "--json", str(out)])
        r = CliRunner().invoke(app, args)
        assert r.exit_code in (0, 2), (r.output, r.exception)
        if r.exit_code == 2:
            assert "error:" in r.output and any(str(p) in r.output for files, _ in corruptions for p in files), r.output
            assert "Traceback" not in r.output
            no_output(out)


def test_cli_exit_code_2_on_a_corrupted_dataset(world):
    from zeroseg.cli import app

    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        d = json.loads(js.read_text())
        d["images"][1]["height"] = "32"
        js.write_text(json.dumps(d))
        r = CliRunner().invoke(app, ["split", str(js), "--unseen", "benchmark-default", "--out", str(c.dir / "out")])
        assert r.exit_code == 2, r.output
        assert f"{js}: images[1] (id 2).height must be an integer, got '32'" in r.output
        no_output(c.dir / "out")
        table = c.root / "tables" / "t.npy"
        table.write_bytes(table.read_bytes()[:40])
        r = CliRunner().invoke(app, ["embed-classes", str(js), "--source", "table", "--table", str(table),
                                     "--table-names", str(c.root / "tables" / "names.txt"), "--out",
                                     str(c.dir / "e.parquet")])
        assert r.exit_code == 2 and f"{table}: cannot read a vector table" in r.output, r.output
        assert not (c.dir / "e.parquet").exists()


# ---- invariants: what must be rejected, what may be accepted (see the module docstring) ----------

def _set(path: str, value):
    """A mutation that sets ``d[k1][k2]...`` (keys split on '/', list indices as ints)."""
    keys = [int(k) if k.lstrip("-").isdigit() else k for k in path.split("/")]

    def mutate(d):
        node = d
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return mutate


def _del(path: str):
    keys = [int(k) if k.lstrip("-").isdigit() else k for k in path.split("/")]

    def mutate(d):
        node = d
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return mutate


def _each(key: str, fn):
    """Apply ``fn`` to every image, annotation, segment or category dict (``key``)."""
    def mutate(d):
        items = [s for a in d["annotations"] for s in a["segments_info"]] if key == "segments" else d.get(key, [])
        for x in items:
            fn(x)
    return mutate


def _dup_last(path: str, then=None):
    """Append a copy of the list's first element (then apply ``then`` to the copy)."""
    def mutate(d):
        node = d
        for k in path.split("/"):
            node = node[int(k) if k.isdigit() else k]
        node.append(json.loads(json.dumps(node[0])))
        if then:
            then(node[-1])
    return mutate


#: (case, mutation of the panoptic JSON dict, what the message must name besides the file)
PANOPTIC_REJECTED = [
    ("top-level-list", lambda d: d.clear() or d.update({"__list__": True}), ["top level must be an object"]),
    ("no-categories", _del("categories"), ["'categories'"]),
    ("images-not-list", _set("images", {"id": 1}), ["'images'"]),
    ("category-id-string", _set("categories/0/id", "1"), ["categories[0].id"]),
    ("category-id-bool", _set("categories/0/id", True), ["categories[0].id"]),
    ("category-id-zero", _set("categories/0/id", 0), ["categories[0].id"]),
    ("category-no-name", _del("categories/0/name"), ["categories[0]", "'name'"]),
    ("category-empty-name", _set("categories/0/name", " "), ["categories[0].name"]),
    ("category-duplicate-id", _dup_last("categories", lambda c: c.update(name="new")), ["duplicate category id"]),
    ("category-duplicate-name", _dup_last("categories", lambda c: c.update(id=999)), ["duplicate category name"]),
    ("category-isthing-2", _set("categories/0/isthing", 2), ["categories[0].isthing"]),
    ("category-no-isthing", _del("categories/0/isthing"), ["categories[0]", "'isthing'"]),
    ("category-attributes-count", _set("categories/1/attributes", ["red"]), ["categories[1].attributes"]),
    ("image-no-id", _del("images/0/id"), ["images[0]", "'id'"]),
    ("image-height-zero", _set("images/0/height", 0), ["images[0] (id 1).height"]),
    ("image-width-float", _set("images/0/width", 32.0), ["images[0] (id 1).width"]),
    ("image-width-string", _set("images/0/width", "32"), ["images[0] (id 1).width"]),
    ("image-file-absolute", _set("images/0/file_name", "/etc/passwd"), ["images[0] (id 1).file_name"]),
    ("image-file-dotdot", _set("images/0/file_name", "../x.jpg"), ["images[0] (id 1).file_name"]),
    ("image-duplicate-id", _set("images/1/id", 1), ["images[1]", "duplicate image id"]),
    ("annotation-unknown-image", _set("annotations/0/image_id", 99), ["annotations[0].image_id"]),
    ("annotation-second-for-image", _set("annotations/1/image_id", 1), ["annotations[1]", "second annotation"]),
    ("annotation-png-in-folder", _set("annotations/0/file_name", "sub/x.png"), ["annotations[0] (image 1).file_name"]),
    ("annotation-shared-png", _set("annotations/1/file_name", "000000000001.png"),
     ["annotations[1] (image 2).file_name"]),
    ("segments-not-list", _set("annotations/0/segments_info", {}), ["annotations[0] (image 1).segments_info"]),
    ("segment-id-zero", _set("annotations/0/segments_info/0/id", 0), ["segments_info[0].id"]),
    ("segment-id-over-24-bits", _set("annotations/0/segments_info/0/id", 2**24), ["segments_info[0].id"]),
    ("segment-unknown-category", _set("annotations/0/segments_info/0/category_id", 999),
     ["segments_info[0].category_id"]),
    ("segment-category-string", _set("annotations/0/segments_info/0/category_id", "16"),
     ["segments_info[0].category_id"]),
    ("segment-duplicate-id", _dup_last("annotations/0/segments_info"), ["segments_info[4].id", "duplicated"]),
    ("segment-negative-area", _set("annotations/0/segments_info/0/area", -1), ["segments_info[0].area"]),
    ("segment-iscrowd-2", _set("annotations/0/segments_info/0/iscrowd", 2), ["segments_info[0].iscrowd"]),
]

#: (case, corruption of the first segment PNG, what the message must say); the message names the PNG
PNG_REJECTED = [
    ("png-missing", lambda png: png.unlink(), ["PNG missing", "file_name"]),
    ("png-truncated", lambda png: png.write_bytes(png.read_bytes()[:60]), ["unreadable"]),
    ("png-16-bit", lambda png: png.write_bytes(_png(np.zeros((32, 32), np.uint16))), ["16-bit"]),
    ("png-size", lambda png: png.write_bytes(_png(id2rgb(np.zeros((31, 32), np.int64)))), ["differs from image 1"]),
    ("png-undeclared-id", lambda png: png.write_bytes(_png(id2rgb(_with_extra_id(png)))),
     ["id(s) [5]", "not in segments_info"]),
]


def _with_extra_id(png: Path) -> np.ndarray:
    """The PNG's segment ids with one VOID-free pixel row relabelled 5 (declared nowhere)."""
    ids = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
    ids[0, :1] = 5
    return ids

#: (case, mutation that must not change any result, whether PQ's ground truth may have it too)
PANOPTIC_ACCEPTED = [
    ("unknown-top-level-key", _set("x_tool_version", {"any": [1, 2]}), True),
    ("unknown-keys-everywhere", lambda d: [_each(k, lambda x: x.update(x_extra="junk"))(d)
                                           for k in ("images", "annotations", "segments", "categories")], True),
    ("no-info-no-licenses", lambda d: (d.pop("info", None), d.pop("licenses", None)), True),
    ("lists-reversed", lambda d: [d[k].reverse() for k in ("images", "annotations", "categories") if k in d]
                                 + [a["segments_info"].reverse() for a in d["annotations"]], True),
    ("bbox-junk", _each("segments", lambda s: s.update(bbox="junk")), True),
    # PQ's ground truth areas count (panopticapi's union uses them): absent there, it is rejected
    ("area-absent", _each("segments", lambda s: s.pop("area", None)), False),
    ("iscrowd-0-absent", _each("segments", lambda s: s.pop("iscrowd") if s.get("iscrowd") == 0 else None), True),
    ("image-license-absent", _each("images", lambda im: im.pop("license", None)), True),
]


def _write_mutated(js: Path, mutate, **dump) -> None:
    d = json.loads(js.read_text())
    mutate(d)
    js.write_text("[]" if d == {"__list__": True} else json.dumps(d, **dump))


def canonical(js: Path) -> dict:
    """What a reader of a panoptic JSON uses: images (file, size), segments (id, class, crowd) per
    image, categories (name, thing, split), all keyed by id."""
    from zeroseg.data.panoptic import load_panoptic

    ds = load_panoptic(js)
    return {"images": {i: (im["file_name"], im["height"], im["width"]) for i, im in ds.images.items()},
            "segments": {i: sorted((s["id"], s["category_id"], s.get("iscrowd", 0)) for s in ds.segments(i))
                         for i in ds.images},
            "pngs": {i: a["file_name"] for i, a in ds.annotations.items()},
            "categories": {c: (cat.name, cat.isthing, cat.raw.get("split")) for c, cat in ds.categories.items()}}


def split_result(js: Path, out: Path) -> dict:
    import pandas as pd

    res = split_dataset(js, "benchmark-default", out)
    manifest = pd.read_parquet(res.manifest).sort_values("image_id").reset_index(drop=True)
    return {"seen": canonical(res.seen_json), "unseen": canonical(res.unseen_json), "all": canonical(res.all_json),
            "manifest": json.loads(manifest.to_json(orient="records"))}


@pytest.fixture(scope="module")
def clean_results(world) -> dict:
    with Case(world) as c:
        val, pred = c.ann / "panoptic_val.json", c.root / "pred" / "pred.json"
        return {"split": split_result(c.ann / "panoptic_train.json", c.dir / "out"),
                "pq": pq_files(val, val.with_suffix(""), pred, pred.with_suffix("")).flat()}


@pytest.mark.parametrize("case, mutate, fields", PANOPTIC_REJECTED, ids=[c[0] for c in PANOPTIC_REJECTED])
def test_rejected_panoptic_json(world, case, mutate, fields):
    """Each corruption that changes what a reader would use ends in a DataError naming the file
    and the field, before anything is written."""
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        _write_mutated(js, mutate)
        with pytest.raises(DataError) as exc:
            split_dataset(js, "benchmark-default", c.dir / "out")
        msg = str(exc.value)
        assert str(js) in msg and all(f in msg for f in fields), msg
        no_output(c.dir / "out")


@pytest.mark.parametrize("case, corrupt, fields", PNG_REJECTED, ids=[c[0] for c in PNG_REJECTED])
def test_rejected_segment_png(world, case, corrupt, fields):
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        png = js.with_suffix("") / "000000000001.png"
        corrupt(png)
        with pytest.raises(DataError) as exc:
            split_dataset(js, "benchmark-default", c.dir / "out")
        msg = str(exc.value)
        assert str(png) in msg and all(f in msg for f in fields), msg
        no_output(c.dir / "out")


def test_rejected_segment_declared_but_absent_from_the_png(world):
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        _write_mutated(js, _dup_last("annotations/0/segments_info", lambda s: s.update(id=12345)))
        absent = r"segments_info id\(s\) \[12345\] of image 1 are absent from the PNG"
        with pytest.raises(DataError, match=absent) as exc:
            split_dataset(js, "benchmark-default", c.dir / "out")
        assert str(js.with_suffix("") / "000000000001.png") in str(exc.value)


def test_rejected_bytes_name_the_file(world):
    """Not JSON (truncated), a UTF-8 byte-order mark (Python's JSON refuses it), not UTF-8."""
    for raw in (lambda b: b[:-10], lambda b: b"\xef\xbb\xbf" + b, lambda b: b.replace(b'"sky"', b'"\xff"')):
        with Case(world) as c:
            js = c.ann / "panoptic_train.json"
            js.write_bytes(raw(js.read_bytes()))
            with pytest.raises(DataError) as exc:
                split_dataset(js, "benchmark-default", c.dir / "out")
            assert str(js) in str(exc.value) and ("JSON" in str(exc.value) or "UTF-8" in str(exc.value)), str(exc.value)


@pytest.mark.parametrize("case, mutate, gt_too", PANOPTIC_ACCEPTED, ids=[c[0] for c in PANOPTIC_ACCEPTED])
def test_accepted_panoptic_corruption_changes_no_result(world, clean_results, case, mutate, gt_too):
    """Irrelevant changes (of the training JSON for the split, of the prediction and of the ground
    truth for PQ; also written re-indented with sorted keys) give the clean input's results."""
    with Case(world) as c:
        js = c.ann / "panoptic_train.json"
        _write_mutated(js, mutate, indent=3, sort_keys=True)
        assert split_result(js, c.dir / "out") == clean_results["split"]
        val, pred = c.ann / "panoptic_val.json", c.root / "pred" / "pred.json"
        _write_mutated(pred, mutate)
        assert pq_files(val, val.with_suffix(""), pred, pred.with_suffix("")).flat() == clean_results["pq"]
        _write_mutated(val, mutate)
        if gt_too:
            assert pq_files(val, val.with_suffix(""), pred, pred.with_suffix("")).flat() == clean_results["pq"]
        else:
            with pytest.raises(DataError, match=r"ground-truth segments_info\[0\] has no field 'area'") as exc:
                pq_files(val, val.with_suffix(""), pred, pred.with_suffix(""))
            assert str(val) in str(exc.value)


# ---- COCO instances (the ZSI pipelines' prepare) --------------------------------------------

@pytest.fixture(scope="module")
def instances_json(world, tmp_path_factory) -> Path:
    """The val set's thing segments as an official-format instances JSON (RLE masks) plus one
    polygon annotation (image 1, the first thing class, a 10x10 square)."""
    from zeroseg.testing.fixtures import panoptic_to_instances

    out = tmp_path_factory.mktemp("inst") / "instances.json"
    panoptic_to_instances(world / "synth" / "annotations" / "panoptic_val.json", out)
    d = json.loads(out.read_text())
    first = d["images"][0]["id"]
    d["annotations"].append({"id": 10**6, "image_id": first, "category_id": d["categories"][0]["id"], "iscrowd": 0,
                             "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]], "area": 100.0,
                             "bbox": [2.0, 2.0, 10.0, 10.0]})
    out.write_text(json.dumps(d))
    return out


def _converted(raw_path: Path, out: Path) -> tuple[dict, dict]:
    """(panoptic JSON without 'info', PNG bytes by name) of instances_to_panoptic on the file."""
    from zeroseg.data.instances import instances_to_panoptic, keep_classes, load_instances

    raw = load_instances(raw_path)
    out.mkdir()
    pan = instances_to_panoptic(raw, keep_classes(raw, None, raw_path), out)
    pan.pop("info")
    return pan, {p.name: p.read_bytes() for p in sorted(out.iterdir())}


INSTANCES_REJECTED = [
    ("top-level-list", lambda d: d.clear() or d.update({"__list__": True}), ["top level must be an object"]),
    ("no-annotations", _del("annotations"), ["'annotations'"]),
    ("category-no-id", _del("categories/0/id"), ["categories[0]", "'id'"]),
    ("image-no-height", _del("images/0/height"), ["images[0]", "'height'"]),
    ("image-id-string", _set("images/0/id", "1"), ["images[0].id"]),
    ("image-duplicate-id", _dup_last("images"), ["duplicate image id"]),
    ("annotation-no-segmentation", _del("annotations/0/segmentation"), ["annotations[0]", "'segmentation'"]),
    ("annotation-unknown-category", _set("annotations/0/category_id", 999), ["annotations[0]", "category_id 999"]),
    ("annotation-unknown-image", _set("annotations/0/image_id", 999), ["annotations[0]", "image_id 999"]),
    ("annotation-not-object", _set("annotations/0", "junk"), ["annotations[0]"]),
    ("segmentation-string", _set("annotations/0/segmentation", "junk"), ["annotations[0]", ".segmentation"]),
    ("rle-size", _set("annotations/0/segmentation/size", [31, 32]), ["annotations[0]", ".segmentation.size"]),
    ("rle-counts-list-sum", _set("annotations/0/segmentation/counts", [5, 5]), [".segmentation.counts"]),
    ("rle-counts-number", _set("annotations/0/segmentation/counts", 7), [".segmentation.counts"]),
    ("polygon-odd", _set("annotations/-1/segmentation", [[1.0, 2.0, 3.0]]), [".segmentation[0]"]),
    ("polygon-nan", _set("annotations/-1/segmentation", [[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]]),
     [".segmentation[0]"]),
    ("area-string", _set("annotations/0/area", "10"), ["annotations[0]", ".area"]),
    ("iscrowd-2", _set("annotations/0/iscrowd", 2), ["annotations[0]", ".iscrowd"]),
]

INSTANCES_ACCEPTED = [
    # (a category's own keys are carried into the panoptic categories, as the panoptic writers copy them)
    ("unknown-keys", lambda d: [x.update(x_extra=[1]) for k in ("images", "annotations") for x in d[k]]
                               + [d.update(x_tool="v2")]),
    ("no-info", lambda d: d.pop("info", None)),
    ("bbox-junk", lambda d: [a.update(bbox="junk") for a in d["annotations"]]),
    ("degenerate-polygon", _dup_last("annotations", lambda a: a.update(segmentation=[[1.0, 1.0, 5.0, 5.0]], area=0.0,
                                                                       id=10**6 + 1))),
]


@pytest.mark.parametrize("case, mutate, fields", INSTANCES_REJECTED, ids=[c[0] for c in INSTANCES_REJECTED])
def test_rejected_instances_json(instances_json, tmp_path, case, mutate, fields):
    from zeroseg.data.instances import load_instances

    js = tmp_path / "instances.json"
    shutil.copy(instances_json, js)
    _write_mutated(js, mutate)
    with pytest.raises(DataError) as exc:
        load_instances(js)
    msg = str(exc.value)
    assert str(js) in msg and all(f in msg for f in fields), msg


@pytest.mark.parametrize("case, mutate", INSTANCES_ACCEPTED, ids=[c[0] for c in INSTANCES_ACCEPTED])
def test_accepted_instances_corruption_changes_no_result(instances_json, tmp_path, case, mutate):
    clean = _converted(instances_json, tmp_path / "clean")
    js = tmp_path / "instances.json"
    shutil.copy(instances_json, js)
    _write_mutated(js, mutate, indent=1, sort_keys=True)
    assert _converted(js, tmp_path / "out") == clean
