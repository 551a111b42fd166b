"""Bad-input fuzzing: randomly corrupted COCO panoptic JSON, segment PNGs and class-vector tables
fed to the split, prepare, the PQ evaluator and the table loader.

Every case either succeeds or ends in the project's own error (a :class:`ZerosegError`) whose
message names the corrupted file (and, for a corrupted JSON field, that field or the list it
sits in), and a failed run leaves no output behind. Deterministic (``derandomize``), no
example database written, 200 examples per entry point on a 32x32, 3-image benchmark.
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

from zeroseg.data.panoptic import id2rgb
from zeroseg.data.prepare import PrepareConfig, prepare_coco
from zeroseg.embed.table import load_table
from zeroseg.errors import ZerosegError
from zeroseg.metrics.panoptic import pq_files
from zeroseg.testing.perturb import perturb_folder
from zeroseg.split import split_dataset
from zeroseg.benchmark import BenchmarkConfig, generate

MAX_ID = 256**3 - 1  # the largest segment id an RGB pixel holds
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, print_blob=False, phases=[Phase.explicit, Phase.generate],
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
    (tables / "t.txt").write_text("\n".join(",".join(f"{x:.6f}" for x in row) for row in m.T) + "\n")  # columns = classes
    (tables / "names.txt").write_text("0\tsky\n1\tred circle\n2\tsand\n")
    return root


class Case:
    """A private copy of the world for one example (removed afterwards)."""

    def __init__(self, world: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=world))
        self.root = self.dir / "synth"
        shutil.copytree(world / "synth", self.root)
        self.ann = self.root / "annotations"

    def __enter__(self) -> "Case":
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
    st.text(max_size=6), st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.sampled_from(["id", "x"]), st.integers(0, 3), max_size=2),
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
            obj.update(data.draw(st.dictionaries(st.sampled_from(["images", "annotations", "x"]), BAD_VALUES, max_size=2)))
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
        return raw[:i] + data.draw(st.sampled_from([b"\xff\xfe", b"\x80", b"\x00", b"{", b"]", b"9" * 30, b"\xc3("])) + raw[i:]
    if op == "garbage":
        return data.draw(st.binary(min_size=1, max_size=64))
    return b""


def _png(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="PNG")
    return b.getvalue()


def corrupt_png(data, png: Path) -> str:
    """One random corruption of a segment PNG; returns its kind."""
    op = data.draw(st.sampled_from(["bytes", "bytes", "delete", "folder", "resize", "ids", "16bit", "gray", "rgba", "jpeg"]))
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
                                                                          str(images)), out), corruptions, out, [images])
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
            lines = data.draw(st.lists(st.sampled_from(["sky", "sky", "", " ", "\t", "3\t", "red circle", "sand", "x\ty\tz",
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
                                     "--table-names", str(c.root / "tables" / "names.txt"), "--out", str(c.dir / "e.parquet")])
        assert r.exit_code == 2 and f"{table}: cannot read a vector table" in r.output, r.output
        assert not (c.dir / "e.parquet").exists()
