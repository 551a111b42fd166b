"""The official PADing recipe (generator.recipe: official): each loss term checked against a
direct transcription of the formula in docs/parity.md on small tensors (loops and scalars,
written from the formula, not from the library code), the recipe's resolution, and the joint
schedule's classifier batch (its composition and class weights)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.generator.config import RECIPES, GeneratorConfig, component_keys
from zeroseg.generator.mmd import mmd, mmd_official
from zeroseg.generator.models import PrimitiveGenerator, PrimitiveSpec
from zeroseg.generator.official_structure import OfficialStructure, RelationNet, cosine, kl_t, official_losses
from zeroseg.head.train import ClassifierConfig, HeadTrainer


def _gauss(a, b, var):
    return math.exp(-sum((x - y) ** 2 for x, y in zip(a, b)) / (2 * var))


def test_official_mmd_is_the_square_root_of_the_pooled_sigma_kernel_mmd():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g) + 0.7
    sig = (2.0, 5.0, 80.0)
    X = x.tolist() + y.tolist()
    s = [1 / 4] * 4 + [-1 / 5] * 5  # the official scale vector
    total = sum(s[i] * s[j] * _gauss(X[i], X[j], v) for v in sig for i in range(9) for j in range(9))
    assert float(mmd_official(x, y, sig)) == pytest.approx(math.sqrt(total), rel=1e-5)
    # the paper's form: per bandwidth exp(-d²/2σ²), no square root
    paper = sum(s[i] * s[j] * _gauss(X[i], X[j], v * v) for v in sig for i in range(9) for j in range(9))
    assert float(mmd(x, y, sig)) == pytest.approx(paper, rel=1e-5)
    assert float(mmd_official(x, x.clone(), sig)) < 1e-5


def test_kl_t_is_the_row_softmax_kl_divided_by_the_number_of_elements():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    total = 0.0
    for i in range(3):
        t = [math.exp(v / 0.1) for v in target[i].tolist()]
        p = [math.exp(v / 0.1) for v in pred[i].tolist()]
        t, p = [v / sum(t) for v in t], [v / sum(p) for v in p]
        total += sum(ti * (math.log(ti) - math.log(pi)) for ti, pi in zip(t, p))
    assert float(kl_t(pred, target)) == pytest.approx(total / 12, rel=1e-5)


def test_relation_net_scores_each_feature_class_pair():
    torch.manual_seed(0)
    net = RelationNet(3)
    x, v = torch.randn(2, 3), torch.randn(4, 3)
    out = net(x, v).detach()
    for i in range(2):
        for c in range(4):
            h = F.relu(net.fc1.weight @ torch.cat([x[i], v[c]]) + net.fc1.bias).detach()
            assert float(out[i, c]) == pytest.approx(
                float(torch.sigmoid(net.fc2.weight.detach() @ h + net.fc2.bias.detach())), rel=1e-5)


@torch.no_grad()
def test_official_structure_terms_match_the_formulas():
    torch.manual_seed(0)
    d, n_seen, n_unseen = 6, 3, 2
    st = OfficialStructure(d).eval()  # dropout off: the formulas without dropout masks
    fake_s, seen_cls = torch.randn(5, d), torch.tensor([0, 2, 1, 1, 0])
    fake_u, unseen_cls = torch.randn(2, d), torch.tensor([0, 1])
    v_all = torch.randn(n_seen + n_unseen, d)
    torch.manual_seed(7)
    got = official_losses(st, fake_s, seen_cls, fake_u, unseen_cls, v_all, n_seen, align=True)
    torch.manual_seed(7)  # the same N(0, I) draws z_s, z_u in the same order
    z_s, z_u = torch.randn(5, d), torch.randn(2, d)

    def ce(scores, targets):  # the sigmoid relation scores used as logits
        return sum(-math.log(math.exp(s[t]) / sum(math.exp(v) for v in s))
                   for s, t in zip(scores.tolist(), targets.tolist())) / len(targets)

    rel_s, rel_u = st.related(fake_s), st.related(fake_u)
    un_s, un_u = st.unrelated(fake_s), st.unrelated(fake_u)
    r = 0.2 * (ce(st.relation(rel_s, v_all), seen_cls) + ce(st.relation(rel_u, v_all[n_seen:]), unseen_cls)) / 2
    u = 0.5 * (float(kl_t(un_s, z_s)) + float(kl_t(un_u, z_u))) / 2
    rec = 0.5 * (float((st.decoder(torch.cat([rel_s, un_s], 1)) - fake_s).abs().mean())
                 + float((st.decoder(torch.cat([rel_u, un_u], 1)) - fake_u).abs().mean())) / 2

    def cos(a, b):
        return torch.tensor([[float(F.cosine_similarity(p, q, dim=0)) for q in b] for p in a])

    v_s, v_u = v_all[seen_cls], v_all[n_seen:][unseen_cls]
    align = (float(kl_t(cos(rel_s, rel_s), cos(v_s, v_s))) + float(kl_t(cos(rel_u, rel_u), cos(v_u, v_u)))
             + float(kl_t(cos(rel_s, rel_u), cos(v_s, v_u)))) / 3
    assert float(got["relation"]) == pytest.approx(r, rel=1e-4)
    assert float(got["unrelated"]) == pytest.approx(u, rel=1e-4)
    assert float(got["recon"]) == pytest.approx(rec, rel=1e-4)
    assert float(got["align"]) == pytest.approx(align, rel=1e-4)
    # without disentanglement the alignment acts on the raw fakes
    plain = official_losses(None, fake_s, seen_cls, fake_u, unseen_cls, v_all, n_seen, align=True)
    assert set(plain) == {"align"}
    assert float(plain["align"]) == pytest.approx(float(kl_t(cosine(fake_s, fake_s), cosine(v_s, v_s))
                                                        + kl_t(cosine(fake_u, fake_u), cosine(v_u, v_u))
                                                        + kl_t(cosine(fake_s, fake_u), cosine(v_s, v_u))) / 3, rel=1e-5)


def test_official_layer_is_single_token_self_attention_then_cross_attention_to_fixed_primitives():
    """Eval mode, no noise: one official layer transcribed with plain matrices."""
    torch.manual_seed(0)
    spec = PrimitiveSpec(num_primitives=5, layers=1, heads=2, ffn=16, noise_std=0.0, layout="official")
    gen = PrimitiveGenerator(4, 8, spec).eval()
    assert isinstance(gen.out, torch.nn.Identity)  # no ω_1: the output is the final LayerNorm's
    layer = gen.layers[0]
    sem = torch.randn(3, 4)
    q = gen.query(sem)
    W, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    v = q @ W[16:].T + b[16:]
    q = layer.norm_s(q + layer.self_attn.out_proj(v))  # softmax over one key is 1
    Wc, bc = layer.cross.in_proj_weight, layer.cross.in_proj_bias
    P = gen.primitives
    Q, K, V = q @ Wc[:8].T + bc[:8], P @ Wc[8:16].T + bc[8:16], P @ Wc[16:].T + bc[16:]
    heads = []
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        heads.append(torch.softmax(Q[:, s] @ K[:, s].T / 2.0, -1) @ V[:, s])
    q = layer.norm_q(q + layer.cross.out_proj(torch.cat(heads, 1)))
    q = layer.norm_f(q + layer.ffn(q))
    torch.testing.assert_close(gen(sem), gen.norm(q), rtol=1e-5, atol=1e-5)
    prims, _ = layer(P, gen.query(sem))
    assert prims is P  # the primitives are never updated


def test_official_noise_is_added_after_the_residual_dropout():
    torch.manual_seed(0)
    gen = PrimitiveGenerator(4, 8, PrimitiveSpec(num_primitives=5, layers=1, heads=2, ffn=16, layout="official")).eval()
    sem = torch.randn(3, 4)
    assert not torch.allclose(gen(sem), gen(sem))  # noise is on in eval mode: different draws
    assert PrimitiveGenerator(4, 8, PrimitiveSpec(layout="official")).primitives.std() > 0.5  # N(0, 1) start


def test_recipe_resolution_and_its_errors():
    off = GeneratorConfig(recipe="official").resolved()
    for key in component_keys():
        assert getattr(off, key) == RECIPES["official"][key]
    assert off.sigmas == (2.0, 5.0, 10.0, 20.0, 40.0, 80.0) and off.schedule == "joint" and off.lr == 5e-4
    mixed = GeneratorConfig(recipe="official", mmd="paper", lr=1e-3).resolved()  # one difference at a time
    assert mixed.mmd == "paper" and mixed.lr == 1e-3 and mixed.structure == "official"
    assert GeneratorConfig().resolved().schedule == "after"
    with pytest.raises(ConfigError, match="generator.mmd: paper, official, recipe; got 'pooled'"):
        GeneratorConfig(mmd="pooled")
    with pytest.raises(ConfigError, match="generator.recipe"):
        GeneratorConfig(recipe="mine")
    with pytest.raises(ConfigError, match="cls_weight"):
        GeneratorConfig(cls_weight=0.001).resolved()
    with pytest.raises(ConfigError, match="gmmn generator has none"):
        GeneratorConfig(arch="gmmn", structure="official").resolved()


def test_official_optimizer_steps_the_lr_down_at_70_and_92_5_percent():
    from zeroseg.embed.space import ClassSpace
    from zeroseg.generator.train import GeneratorTrainer

    space = ClassSpace([1, 2], [3], F.normalize(torch.randn(3, 4), dim=-1))
    tr = GeneratorTrainer(GeneratorConfig(recipe="official", num_primitives=4, layers=1, heads=2, ffn=8,
                                          iterations=40), space, 8)
    assert tr.opt.param_groups[0]["betas"] == (0.9, 0.999)
    lrs = []
    for _ in range(40):
        lrs.append(tr.opt.param_groups[0]["lr"])
        tr.step(torch.randn(4, 8), torch.tensor([0, 1, 0, 1]))
    assert lrs[27] == pytest.approx(5e-4) and lrs[28] == pytest.approx(5e-5) and lrs[37] == pytest.approx(5e-6)
    paper = GeneratorTrainer(GeneratorConfig(num_primitives=4, layers=1, heads=2, ffn=8), space, 8)
    assert paper.opt.param_groups[0]["betas"] == (0.5, 0.999)
    from zeroseg.generator.train import lr_factor

    poly = GeneratorConfig(recipe="official", lr_schedule="poly", iterations=10).resolved()
    assert [round(lr_factor(poly, k), 4) for k in (0, 5, 10)] == [1.0, round(0.5 ** 0.9, 4), 0.0]
    assert lr_factor(GeneratorConfig().resolved(), 999) == 1.0


def test_head_batch_has_the_official_composition_and_weights():
    cfg = ClassifierConfig(unseen_weight=5.0, no_object_weight=0.1)
    tr = HeadTrainer(torch.zeros(6, 4), torch.zeros(6), n_seen=3, n_unseen=2, cfg=cfg)
    x_real, y_real = torch.randn(7, 4), torch.tensor([0, -1, 2, -1, -1, 1, -1])
    x, y = tr.batch(x_real, y_real, torch.randn(2, 4), torch.tensor([1, 0]))
    assert x.shape == (9, 4)
    assert y.tolist() == [0, 5, 2, 5, 5, 1, 5, 4, 3]  # no-object is the last output; unseen after seen
    assert tr.class_weight.tolist() == [1, 1, 1, 5, 5, pytest.approx(0.1)]
    w0 = tr.layer.weight.clone()
    tr.step(x_real, y_real, torch.randn(2, 4), torch.tensor([1, 0]))
    assert not torch.equal(w0, tr.layer.weight)


def test_joint_schedule_steps_the_head_on_the_generator_step_images(tmp_path, monkeypatch):
    """Each joint step: the head's batch is EVERY query of the generator step's whole images
    (matched -> class, the rest no-object) + one fresh fake per drawn unseen class; the head
    written with the generator is the row's head (retrain_classifier retrains nothing)."""
    import json

    from tests.test_generator import ROWS, SMALL, _emb, _segmenter, _store
    from zeroseg.features.store import FeatureStore
    from zeroseg.generator.checkpoint import joint_head
    from zeroseg.generator.train import train_generator
    from zeroseg.head.model import load_head
    from zeroseg.head.retrain import HeadFiles, retrain_classifier

    calls = []
    step = HeadTrainer.step

    def spy(self, x_real, y_real, x_unseen, unseen_cls):
        calls.append((x_real.clone(), y_real.clone(), tuple(x_unseen.shape), unseen_cls.clone()))
        return step(self, x_real, y_real, x_unseen, unseen_cls)

    monkeypatch.setattr(HeadTrainer, "step", spy)
    st, emb, seg = _store(tmp_path), _emb(tmp_path, ROWS), _segmenter(tmp_path)
    cfg = GeneratorConfig(**SMALL, recipe="official", images_per_batch=3)
    train_generator(cfg, st, emb, tmp_path / "g.pt", show_progress=False, segmenter=seg,
                    head_cfg=ClassifierConfig(unseen_per_step=1))
    store = FeatureStore(st)
    assert len(calls) == SMALL["iterations"]
    for k, (x, y, u_shape, u_cls) in enumerate(calls):
        rows = store.image_batch(k, 3, cfg.seed)
        assert torch.equal(x, torch.from_numpy(store.features(rows)))  # the step's 3 whole images, 4 queries each
        assert y.tolist() == [int(lab) - 1 if lab > 0 else -1 for lab in store.labels[rows]]
        assert u_shape == (1, 8) and len(u_cls) == 1 and 0 <= int(u_cls[0]) < 2
    cats = [{"id": c, "name": f"c{c}", "isthing": 1, "split": s} for c, s in ROWS]
    (tmp_path / "all.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    retrain_classifier(ClassifierConfig(), HeadFiles(seg, st, emb, tmp_path / "all.json", tmp_path / "head.pt", st),
                       joint=joint_head(tmp_path / "g.pt"))
    head = load_head(tmp_path / "head.pt")
    saved = torch.load(tmp_path / "g.pt", weights_only=True)["joint_head"]
    assert torch.equal(head.weight, saved["weight"]) and head.class_ids == [1, 2, 3, 4, 5]
