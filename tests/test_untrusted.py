"""Untrusted inputs cannot execute code: pickled tables and gensim ``.kv`` files go through a
restricted unpickler, ``.npy`` is read without pickles, checkpoints with ``weights_only=True``."""
import ast
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT, WORD_VECTORS, write_json
from zeroseg.embed.safe_pickle import load_pickle
from zeroseg.embed.sources import EmbedConfig
from zeroseg.embed.space import read_embeddings
from zeroseg.embed.table import load_table
from zeroseg.embed.vectors import embed_classes
from zeroseg.embed.words import load_keyed_vectors
from zeroseg.errors import DataError

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux


class _Shell:
    """Unpickling this runs a shell command (what a malicious file would do)."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def _evil(path: Path, witness: Path, protocol: int = pickle.DEFAULT_PROTOCOL, wrap=lambda x: x) -> Path:
    with open(path, "wb") as f:
        pickle.dump(wrap(_Shell(f"echo pwned > {witness}")), f, protocol=protocol)
    return path


def _names(tmp_path: Path, *names: str) -> Path:
    p = tmp_path / "names.txt"
    p.write_text("\n".join(names) + "\n")
    return p


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("wrap", [lambda x: x, lambda x: {"vectors": np.ones((1, 3)), "hook": [x]}],
                         ids=["bare", "nested"])
def test_malicious_pickle_is_refused(tmp_path, protocol, wrap):
    witness = tmp_path / "FILE"
    evil = _evil(tmp_path / "table.pkl", witness, protocol, wrap)
    for load in (lambda: load_pickle(evil), lambda: load_table(evil, _names(tmp_path, "person"))):
        with pytest.raises(DataError) as e:
            load()
        assert str(evil) in str(e.value) and f"'{SYSTEM}'" in str(e.value)
    assert not witness.exists()


@pytest.mark.parametrize("target", [eval, getattr, __import__, Counter, Path.write_text, np.load, pickle.loads])
def test_any_other_global_is_refused(tmp_path, target):
    class Call:
        def __reduce__(self):
            return target, ("x",)

    p = tmp_path / "t.pkl"
    p.write_bytes(pickle.dumps(Call()))
    with pytest.raises(DataError,
                       match=rf"{p}: refused to unpickle the global '{target.__module__}\.{target.__qualname__}'"):
        load_pickle(p)


def test_codecs_encode_is_latin1_only(tmp_path):
    import codecs

    p = tmp_path / "t.pkl"
    p.write_bytes(pickle.dumps(b"abc", protocol=2))  # protocol 2 bytes: _codecs.encode(text, 'latin1')
    assert load_pickle(p) == b"abc"

    class Zlib:
        def __reduce__(self):
            return codecs.encode, (b"x" * 10, "zlib")

    p.write_bytes(pickle.dumps(Zlib(), protocol=2))
    with pytest.raises(DataError, match="latin-1"):
        load_pickle(p)


def test_cli_refuses_a_malicious_table(tmp_path):
    from zeroseg.cli import app

    witness = tmp_path / "FILE"
    evil = _evil(tmp_path / "table.pkl", witness)
    cats = tmp_path / "cats.json"
    write_json(cats, {"categories": [{"id": 1, "name": "person"}]})
    out = tmp_path / "e.parquet"
    r = CliRunner().invoke(app, ["embed-classes", str(cats), "--source", "table", "--table", str(evil),
                                 "--table-names", str(_names(tmp_path, "person")), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert str(evil) in r.output and SYSTEM in r.output
    assert not witness.exists() and not out.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_legit_pickles_load(tmp_path, protocol):
    m = np.random.default_rng(protocol).normal(size=(3, 5))
    for arr in (m, m.astype(np.float32), np.asfortranarray(m), m[:, ::2]):
        p = tmp_path / "t.pkl"
        p.write_bytes(pickle.dumps(arr, protocol=protocol))
        names, got = load_table(p, _names(tmp_path, "a", "b", "c"))
        assert names == ["a", "b", "c"] and np.array_equal(got, arr.astype(np.float64))
    d = {"a": m, "b": [np.float64(1.5), 2, "x", b"y", (1,), {3}, frozenset({4}), 1j, None, True, bytearray(b"z")]}
    p.write_bytes(pickle.dumps(d, protocol=protocol))
    got = load_pickle(p)
    assert np.array_equal(got["a"], m) and got["b"] == d["b"]
    with pytest.raises(DataError, match=rf"{p}: the pickle holds a dict"):
        load_table(p, _names(tmp_path, "a", "b", "c"))
    p.write_bytes(pickle.dumps(m.tolist(), protocol=protocol))  # plain nested lists
    assert np.array_equal(load_table(p, _names(tmp_path, "a", "b", "c"))[1], m)


def test_shared_pickled_tables_still_load(tmp_path):
    pkls = sorted(WORD_VECTORS.glob("*.pkl")) + sorted(WORD_VECTORS.glob("*.pickle"))
    if not pkls:
        pytest.skip(f"shared data absent: {WORD_VECTORS} (the real word-vector tables need ../shared/data)")
    for p in pkls:
        with open(p, "rb") as f:
            reference = pickle.load(f)  # the shared files are trusted: the unrestricted reading is the reference
        got = load_pickle(p)
        assert type(got) is type(reference) and np.array_equal(got, reference), p
    names, m = load_table(WORD_VECTORS / "cocostuff_word2vec_182x300.pkl", WORD_VECTORS / "cocostuff_labels_182.txt")
    assert m.shape == (182, 300) and len(names) == 182


def test_npy_with_pickled_objects_is_refused(tmp_path):
    witness = tmp_path / "FILE"
    arr = np.empty((1, 1), object)
    arr[0, 0] = _Shell(f"echo pwned > {witness}")
    np.save(tmp_path / "t.npy", arr, allow_pickle=True)
    with pytest.raises(DataError, match=rf"{tmp_path / 't.npy'}: cannot read a vector table: .*allow_pickle=False"):
        load_table(tmp_path / "t.npy", _names(tmp_path, "a"))
    assert not witness.exists()


def _kv(tmp_path: Path, name: str = "vec.kv", **save):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(6)
    kv.add_vectors(["red", "circle", "tree"], np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32))
    kv.save(str(tmp_path / name), **save)
    return kv, tmp_path / name


@pytest.mark.parametrize("separately", [None, ["vectors"]], ids=["inline", "side-npy"])
def test_gensim_kv_loads_restricted(tmp_path, separately):
    kv, p = _kv(tmp_path, separately=separately)
    assert (tmp_path / "vec.kv.vectors.npy").exists() == bool(separately)
    wv = load_keyed_vectors(p)
    assert wv.dim == 6 and np.allclose(wv.vector("red"), kv["red"]) and wv.vector("sky") is None
    cats = tmp_path / "cats.json"
    write_json(cats, {"categories": [{"id": 1, "name": "red circle"}, {"id": 2, "name": "tree-merged"}]})
    embed_classes(cats, EmbedConfig(source="word2vec", word_vectors=str(p)), tmp_path / "o.parquet")
    assert read_embeddings(tmp_path / "o.parquet")[1].shape == (2, 6)


def test_gensim_kv_malicious_or_foreign_is_refused(tmp_path):
    witness = tmp_path / "FILE"
    for wrap in (lambda x: x, lambda x: Counter({"a": x})):
        evil = _evil(tmp_path / "evil.kv", witness, wrap=wrap)
        with pytest.raises(DataError,
                           match=rf"{evil}: refused to unpickle the global '({SYSTEM}|collections\.Counter)'"):
            load_keyed_vectors(evil)
    assert not witness.exists()
    # a KeyedVectors that asks gensim to unpickle a side file without restriction
    kv, p = _kv(tmp_path)
    kv.__dict__["__scipys"] = ["vectors"]
    p.write_bytes(pickle.dumps(kv))
    with pytest.raises(DataError, match=rf"{p}: refused: the KeyedVectors file asks to load side files \['vectors'\]"):
        load_keyed_vectors(p)
    # a side array that is a pickle in disguise
    kv, p = _kv(tmp_path, separately=["vectors"])
    arr = np.empty((3, 6), object)
    arr[0, 0] = _Shell(f"echo pwned > {witness}")
    np.save(tmp_path / "vec.kv.vectors.npy", arr, allow_pickle=True)
    with pytest.raises(DataError, match=r"vec\.kv\.vectors\.npy: unreadable array 'vectors'"):
        load_keyed_vectors(p)
    assert not witness.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """Checkpoints are read with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling)."""
    calls = []
    for f in sorted((ROOT / "zeroseg").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "pickle"):
                kw = {k.arg: k.value for k in node.keywords}
                ok = node.func.value.id == "torch" and isinstance(kw.get("weights_only"), ast.Constant) \
                    and kw["weights_only"].value is True
                calls.append((f"{f.relative_to(ROOT)}:{node.lineno}", ok))
    assert calls, "no torch.load found: the checkpoint readers moved?"
    assert [c for c, ok in calls if not ok] == []


def test_a_checkpoint_that_needs_full_unpickling_is_refused(tmp_path):
    """A .pt file carrying a code-running object fails as a DataError (weights_only=True)."""
    import torch

    from zeroseg.generator.checkpoint import load_generator
    from zeroseg.head.model import load_head
    from zeroseg.segmenter.model import load_checkpoint

    witness = tmp_path / "FILE"
    p = tmp_path / "evil.pt"
    torch.save({"model": _Shell(f"echo pwned > {witness}")}, p)
    for load, what in ((load_checkpoint, "zeroseg checkpoint"), (load_generator, "generator checkpoint"),
                       (load_head, "classifier head")):
        with pytest.raises(DataError, match=rf"{p}: not a readable {what}"):
            load(p)
    assert not witness.exists()


def test_checkpoints_are_byte_stable(tmp_path):
    """Same tensors -> same bytes, whatever the (temporary) file name: dvc.lock stays unchanged
    by a re-run (torch.save through a path records the file's name as the archive folder)."""
    import zipfile

    import torch

    from zeroseg.head.model import Head, load_head, save_head
    from zeroseg.head.train import ClassifierConfig

    torch.manual_seed(0)
    head = Head(torch.randn(4, 8), torch.zeros(4), [1, 2, 3], [True, False, True])
    save_head(tmp_path / "a" / "pading-s0.pt", head, ClassifierConfig(), "generated")
    save_head(tmp_path / "b" / "other.pt", head, ClassifierConfig(), "generated")
    a, b = (tmp_path / "a" / "pading-s0.pt").read_bytes(), (tmp_path / "b" / "other.pt").read_bytes()
    assert a == b
    assert all(n.startswith("archive/") for n in zipfile.ZipFile(tmp_path / "a" / "pading-s0.pt").namelist())
    assert torch.equal(load_head(tmp_path / "b" / "other.pt").weight, head.weight)
