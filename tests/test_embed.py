import json
import pickle
import string

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import COCO_JSON, WORD_VECTORS, write_json
from zeroseg.data.names import clean_name, synonyms
from zeroseg.embed.sources import EmbedConfig
from zeroseg.embed.space import read_embeddings
from zeroseg.embed.table import load_table, match_table
from zeroseg.embed.text import clip_encoder, l2n
from zeroseg.embed.vectors import embed_classes
from zeroseg.errors import ConfigError, DataError


def _cats_json(tmp_path, names, **extra):
    p = tmp_path / "cats.json"
    write_json(p, {"categories": [dict({"id": i + 1, "name": n, "split": "seen"},
                                       **extra) for i, n in enumerate(names)]})
    return p


def test_clean_names():
    assert clean_name("tree-merged") == "tree"
    assert clean_name("sky-other-merged") == "sky"
    assert clean_name("playingfield") == "playing field"
    assert clean_name("wall-brick") == "brick wall"
    assert synonyms("couch, sofa") == ["couch", "sofa"]
    with pytest.raises(DataError, match="empty"):
        synonyms(" , ")


def _check(df, vecs, dim, n):
    assert vecs.shape == (n, dim) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert df["category_id"].is_unique


def test_minilm_glove_attributes_on_synth(tiny_benchmark, tmp_path):
    js = tiny_benchmark / "annotations" / "panoptic_train.json"
    n = len(json.loads(js.read_text())["categories"])
    for source, dim in (("minilm", 384), ("glove", 50), ("attributes", 768), ("minilm+glove", 434)):
        out = tmp_path / f"{source}.parquet"
        embed_classes(js, EmbedConfig(source=source), out)
        df, vecs, meta = read_embeddings(out)
        _check(df, vecs, dim, n)
        assert meta["source"] == source and meta["dim"] == dim


def test_coco_mini_133_classes(coco_mini, tmp_path):
    for source, dim in (("minilm", 384), ("glove", 50)):
        embed_classes(COCO_JSON, EmbedConfig(source=source, templates=("a photo of a {}.",)), tmp_path / "c.parquet")
        df, vecs, _ = read_embeddings(tmp_path / "c.parquet")
        _check(df, vecs, dim, 133)


def test_table_reproduces_shared_cocostuff_word2vec(coco_mini, tmp_path):
    tbl, names = WORD_VECTORS / "cocostuff_word2vec_182x300.pkl", WORD_VECTORS / "cocostuff_labels_182.txt"
    tnames, m = load_table(tbl, names)
    cats = json.loads(COCO_JSON.read_text())["categories"]
    found, missing = match_table([c["name"] for c in cats], tnames, m)
    with open(tbl, "rb") as f:
        raw = pickle.load(f)
    rows = {n: i for i, n in enumerate(tnames)}
    assert np.array_equal(found["person"], raw[rows["person"]])
    assert np.array_equal(found["tree-merged"], raw[rows["tree"]])
    assert np.array_equal(found["playingfield"], raw[rows["playingfield"]])
    assert np.array_equal(found["wall-other-merged"], raw[rows["wall-other"]])
    assert len(found) == 133 and missing == []  # every COCO panoptic class name-matches a COCO-Stuff row
    _, missing = match_table(["person", "unicorn-merged"], tnames, m)
    assert missing == ["unicorn-merged"]
    # the stage refuses to invent vectors for unmatched classes and names them
    js = _cats_json(tmp_path, ["person", "unicorn-merged"])
    with pytest.raises(DataError, match=r"no row for class\(es\) \['unicorn-merged'\]"):
        embed_classes(js, EmbedConfig(source="table", table=str(tbl), table_names=str(names)), tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def test_withbg_columns_format(coco_mini, tmp_path):
    cats = [c["name"] for c in json.loads(COCO_JSON.read_text())["categories"] if c["isthing"]]
    unseen = ["airplane", "train", "parking meter", "cat", "bear", "suitcase", "frisbee", "snowboard",
              "fork", "sandwich", "hot dog", "toilet", "mouse", "toaster", "hair drier"]
    order = ["background"] + [c for c in cats if c not in unseen] + unseen
    (tmp_path / "names.txt").write_text("\n".join(order))
    tnames, m = load_table(WORD_VECTORS / "coco_w2v_withbg_65_15.txt", tmp_path / "names.txt")
    assert m.shape == (81, 300)
    js = _cats_json(tmp_path, ["cat", "person", "hair drier"])
    embed_classes(js, EmbedConfig(source="table", table=str(WORD_VECTORS / "coco_w2v_withbg_65_15.txt"),
                                  table_names=str(tmp_path / "names.txt")), tmp_path / "o.parquet")
    _, vecs, _ = read_embeddings(tmp_path / "o.parquet")
    raw = np.loadtxt(WORD_VECTORS / "coco_w2v_withbg_65_15.txt", delimiter=",")
    assert np.allclose(vecs[0], l2n(raw[:, order.index("cat")][None])[0], atol=1e-6)


def test_wrong_dimension_table(tmp_path):
    np.save(tmp_path / "t.npy", np.ones((4, 8)))
    (tmp_path / "n.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"shape \(4, 8\) fits neither rows nor columns to the 3 names"):
        load_table(tmp_path / "t.npy", tmp_path / "n.txt")


def _write_kv(tmp_path):
    rng = np.random.default_rng(0)
    words = ["red", "circle", "brick", "wall", "tree", "sky"]
    lines = [f"{len(words)} 10"] + [w + " " + " ".join(f"{x:.6f}" for x in rng.normal(size=10)) for w in words]
    p = tmp_path / "vec.txt"
    p.write_text("\n".join(lines) + "\n")
    return p, words


def test_word2vec_keyed_vectors(tmp_path):
    from gensim.models import KeyedVectors

    p, _ = _write_kv(tmp_path)
    kv = KeyedVectors.load_word2vec_format(str(p))
    js = _cats_json(tmp_path, ["red circle", "wall-brick", "tree-merged"])
    embed_classes(js, EmbedConfig(source="word2vec", word_vectors=str(p)), tmp_path / "o.parquet")
    _, vecs, _ = read_embeddings(tmp_path / "o.parquet")
    rc = l2n(np.mean([kv["red"], kv["circle"]], 0)[None])[0]  # a multi-word name: mean of its words
    assert np.allclose(vecs[0], rc, atol=1e-5)
    assert np.allclose(vecs[2], l2n(kv["tree"][None])[0], atol=1e-5)
    # binary format too
    kv.save_word2vec_format(str(tmp_path / "vec.bin"), binary=True)
    embed_classes(js, EmbedConfig(source="word2vec", word_vectors=str(tmp_path / "vec.bin")), tmp_path / "b.parquet")
    assert np.allclose(read_embeddings(tmp_path / "b.parquet")[1], vecs, atol=1e-5)


def test_oov_error_and_skip(tmp_path):
    p, _ = _write_kv(tmp_path)
    js = _cats_json(tmp_path, ["red circle", "purple star", "red zigzag"])
    with pytest.raises(DataError, match=r"out-of-vocabulary words: 'purple star': \['purple', 'star'\]; "
                                        r"'red zigzag': \['zigzag'\]"):
        embed_classes(js, EmbedConfig(source="word2vec", word_vectors=str(p)), tmp_path / "o.parquet")
    with pytest.raises(DataError, match="'purple star'"):
        embed_classes(js, EmbedConfig(source="word2vec", word_vectors=str(p), oov="skip"), tmp_path / "o.parquet")
    js2 = _cats_json(tmp_path, ["red circle", "red zigzag"])
    embed_classes(js2, EmbedConfig(source="word2vec", word_vectors=str(p), oov="skip"), tmp_path / "o.parquet")
    _, vecs, _ = read_embeddings(tmp_path / "o.parquet")
    from gensim.models import KeyedVectors

    red = KeyedVectors.load_word2vec_format(str(p))["red"]
    assert np.allclose(vecs[1], red / np.linalg.norm(red), atol=1e-5)  # 'zigzag' dropped
    assert not np.allclose(vecs[0], vecs[1], atol=1e-3)



def test_empty_and_duplicate_names(tmp_path):
    with pytest.raises(DataError, match=r"categories\[1\]: duplicate class name 'sky'"):
        embed_classes(_cats_json(tmp_path, ["sky", "sky"]), EmbedConfig(source="glove"), tmp_path / "o.parquet")
    with pytest.raises(DataError, match=r"categories\[0\] \(id 1\) has an empty name"):
        embed_classes(_cats_json(tmp_path, ["  "]), EmbedConfig(source="glove"), tmp_path / "o.parquet")
    with pytest.raises(ConfigError, match="unknown source"):
        EmbedConfig(source="bert").parts()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised tiny CLIP saved to disk (no download)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("tinyclip")
    chars = list(string.ascii_lowercase) + list(".,'-0123456789")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(c, len(vocab))
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=16)
    import torch

    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_clip_template_average_matches_direct_computation(tiny_clip, tmp_path):
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    templates = ("a photo of a {}.", "a {} in the scene.", "itap of a {}.")
    js = _cats_json(tmp_path, ["tree-merged", "couch, sofa"])
    embed_classes(js, EmbedConfig(source="clip", clip_model=str(tiny_clip), templates=templates),
                  tmp_path / "o.parquet")
    _, vecs, meta = read_embeddings(tmp_path / "o.parquet")
    assert vecs.shape == (2, 16) and meta["config"]["clip_model"] == str(tiny_clip)
    tok, net = CLIPTokenizer.from_pretrained(tiny_clip), CLIPModel.from_pretrained(tiny_clip).eval()

    def direct(word):
        with torch.no_grad():
            f = net.get_text_features(**tok([t.format(word) for t in templates], padding=True, return_tensors="pt"))
        f = f if isinstance(f, torch.Tensor) else f.pooler_output
        f = f.numpy().astype(np.float64)
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        m = f.mean(0)
        return m / np.linalg.norm(m)

    assert np.allclose(vecs[0], direct("tree"), atol=1e-5)
    both = direct("couch") + direct("sofa")
    assert np.allclose(vecs[1], both / np.linalg.norm(both), atol=1e-5)


def test_clip_needs_a_model(tmp_path):
    with pytest.raises(ConfigError, match="embed.clip_model"):
        clip_encoder("")
    with pytest.raises(ConfigError, match="cannot load CLIP"):
        clip_encoder(str(tmp_path / "nope"))


def test_cli_embed_classes(tiny_benchmark, tmp_path):
    from zeroseg.cli import app

    js = tiny_benchmark / "annotations" / "panoptic_train.json"
    r = CliRunner().invoke(app, ["embed-classes", str(js), "--source", "glove", "--out", str(tmp_path / "e.parquet")])
    assert r.exit_code == 0, r.output
    assert read_embeddings(tmp_path / "e.parquet")[1].shape[1] == 50


def _letters(categories: list[dict], cfg: EmbedConfig) -> np.ndarray:
    """A test-only source: each name's letter counts (26-d), normalised."""
    counts = np.array([[c["name"].count(ch) + 0.5 for ch in string.ascii_lowercase] for c in categories])
    return l2n(counts).astype(np.float32)


def test_an_embedding_source_registered_from_outside_goes_through_params_and_the_stage_path(tmp_path, monkeypatch):
    """A new source is one function and one entry of zeroseg.embed.sources.SOURCES, here made from
    this module: params validation accepts it (and refuses the name before it is registered), the
    embed stage's function uses it, alone and concatenated."""
    from zeroseg.config import load_section
    from zeroseg.embed.sources import SOURCES

    (tmp_path / "params.yaml").write_text("embed:\n  source: letters\n")
    js = _cats_json(tmp_path, ["red circle", "blue square", "zebra"])
    with pytest.raises(ConfigError, match=r"unknown source\(s\) \['letters'\]"):
        load_section(tmp_path / "params.yaml", "embed", EmbedConfig)
    monkeypatch.setitem(SOURCES, "letters", _letters)
    cfg = load_section(tmp_path / "params.yaml", "embed", EmbedConfig)
    embed_classes(js, cfg, tmp_path / "e.parquet")
    df, vecs, meta = read_embeddings(tmp_path / "e.parquet")
    _check(df, vecs, 26, 3)
    assert meta["source"] == "letters" and np.allclose(vecs[2], _letters([{"name": "zebra"}], cfg)[0])
    embed_classes(js, EmbedConfig(source="letters+letters"), tmp_path / "two.parquet")
    _, two, meta = read_embeddings(tmp_path / "two.parquet")
    assert meta["dims"] == [26, 26] and np.allclose(two, np.concatenate([vecs, vecs], 1) / np.sqrt(2), atol=1e-6)
