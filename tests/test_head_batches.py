"""The class head against independent computations written here from the method (docs/method.md,
docs/parity.md), not from zeroseg's code:

- the default ``after`` schedule (stage retrain_classifier on a synthesized store): every step
  trains on EVERY query row of ``images_per_batch`` whole seen images plus ONE synthetic feature
  for each of ``unseen_per_step`` DISTINCT unseen classes drawn at random, with the official CE
  weights (seen 1, unseen 5, no-object 0.1); over the steps every unseen class is drawn; the
  saved head equals a replay of those batches with hand-written weighted CE and SGD;
- the retrained head's initial rows (docs/parity.md "Classifier initialisation": seen rows and
  the no-object row copied from the segmenter's seen head, unseen rows at the mean seen row);
- the projection baseline (README: cosine between projected features and class embeddings,
  trained on seen only) against a re-implementation.

Query rows are recognised by their feature bytes, so each check reads what the trainer got."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from zeroseg.embed.space import class_space
from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store
from zeroseg.head.model import load_head
from zeroseg.head.retrain import HeadFiles, retrain_classifier
from zeroseg.head.train import ClassifierConfig, HeadTrainer

SEEN, UNSEEN = [1, 2, 3], [4, 5, 6, 7]
D, E, N_IMAGES, Q, PER_CLASS = 8, 6, 24, 5, 6
NS, NU = len(SEEN), len(UNSEEN)
NO_OBJECT = NS + NU  # the last of the K + 1 outputs
OFFICIAL_WEIGHTS = [1.0] * NS + [5.0] * NU + [0.1]  # CE class weights: seen 1, unseen 5 (CLASS_ECO), no-object 0.1


def _write_store(path, images: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], classes: list[int]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    w = ShardWriter(tmp, "rank-000", D, "float32")
    for image_id, (f, lab, iou) in images.items():
        n = len(lab)
        w.add_image(image_id, f, {"label": lab.astype(np.int32), "mask_iou": iou.astype(np.float32),
                                  "score": np.ones(n, np.float32), "query_index": np.arange(n, dtype=np.int16)})
    w.close()
    finalize_store(tmp, path, {"dim": D, "classes": [{"id": c} for c in classes]})


@pytest.fixture
def run(tmp_path):
    """A seen store (24 images x 5 queries: matched seen queries of any IoU and no-object
    ones), a synthesized store (one pseudo-image per class of all 7 classes, 6 features each,
    as stage synthesize writes it), a segmenter head with non-zero bias, class embeddings and
    the split's categories. ``truth``: feature bytes -> (image id, label, IoU) of every row."""
    rng = np.random.default_rng(7)
    seen, truth = {}, {}
    for i in range(N_IMAGES):
        lab = rng.choice([-1, -1, 1, 2, 3], size=Q)
        lab[i % Q] = SEEN[i % NS]  # every class present
        f, iou = rng.normal(size=(Q, D)).astype(np.float32), rng.uniform(0.1, 1.0, Q).astype(np.float32)
        seen[100 + i] = (f, lab, iou)
        truth.update({f[q].tobytes(): (100 + i, int(lab[q]), float(iou[q])) for q in range(Q)})
    _write_store(tmp_path / "seen", seen, SEEN)
    synth, synth_rows = {}, {}
    for c in SEEN + UNSEEN:
        f = (rng.normal(size=(PER_CLASS, D)) + 0.5 * c).astype(np.float32)
        synth[c] = (f, np.full(PER_CLASS, c), np.ones(PER_CLASS))
        synth_rows[c] = {r.tobytes() for r in f}
    _write_store(tmp_path / "synth", synth, SEEN + UNSEEN)
    g = torch.Generator().manual_seed(3)
    seg_w, seg_b = torch.randn(NS + 1, D, generator=g), torch.randn(NS + 1, generator=g)
    torch.save({"model": {"class_predictor.weight": seg_w, "class_predictor.bias": seg_b}, "config": {},
                "hf_config": {}, "step": 0, "classes": [{"id": c, "name": f"c{c}", "isthing": 1} for c in SEEN]},
               tmp_path / "seg.pt")
    vecs = [rng.normal(size=E).astype(np.float32) for _ in SEEN + UNSEEN]  # not normalised: the library must
    split = ["seen"] * NS + ["unseen"] * NU
    order = [4, 0, 6, 2, 1, 5, 3]  # a file order that is not seen-then-unseen
    ids = [(SEEN + UNSEEN)[k] for k in order]
    pd.DataFrame({"category_id": ids, "name": [f"c{c}" for c in ids], "split": [split[k] for k in order],
                  "vector": [vecs[k] for k in order]}).to_parquet(tmp_path / "emb.parquet")
    cats = [{"id": c, "name": f"c{c}", "isthing": 1, "split": s} for c, s in zip(SEEN + UNSEEN, split)]
    (tmp_path / "all.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    return dict(dir=tmp_path, seen=tmp_path / "seen", synth=tmp_path / "synth", seg=tmp_path / "seg.pt",
                emb=tmp_path / "emb.parquet", cats=tmp_path / "all.json", truth=truth, synth_rows=synth_rows,
                seg_w=seg_w, seg_b=seg_b, emb_all=torch.from_numpy(np.stack(vecs)))


def _expected_init(seg_w: torch.Tensor, seg_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/parity.md: (K + 1, D) = [the N_s seen rows; N_u copies of their mean; the no-object row]."""
    w = torch.cat([seg_w[:NS], seg_w[:NS].mean(0).expand(NU, D), seg_w[NS:]])
    b = torch.cat([seg_b[:NS], seg_b[:NS].mean().expand(NU), seg_b[NS:]])
    return w, b


def _weighted_ce(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Σ_i c[t_i] · (−log softmax(x_i Wᵀ + b)[t_i]) / Σ_i c[t_i] with the official class weights c."""
    c = torch.tensor(OFFICIAL_WEIGHTS)[t]
    logits = x @ w.T + b
    nll = torch.logsumexp(logits, -1) - logits[torch.arange(len(t)), t]
    return (c * nll).sum() / c.sum()


def _spy_steps(monkeypatch) -> list[dict]:
    calls = []
    step = HeadTrainer.step

    def spy(self, x_real, y_real, x_unseen, unseen_cls):
        w0, b0 = self.layer.weight.detach().clone(), self.layer.bias.detach().clone()
        loss = step(self, x_real, y_real, x_unseen, unseen_cls)
        calls.append(dict(x=x_real.clone(), y=y_real.clone(), xu=x_unseen.detach().clone(), cls=unseen_cls.clone(),
                          w0=w0, b0=b0, loss=loss))
        return loss

    monkeypatch.setattr(HeadTrainer, "step", spy)
    return calls


@pytest.mark.parametrize("unseen_per_step, min_iou", [(3, 0.0), (4, 0.5), (1, 0.0)])
def test_after_schedule_batches_weights_and_draws(run, monkeypatch, unseen_per_step, min_iou):
    cfg = ClassifierConfig(iterations=16, images_per_batch=3, unseen_per_step=unseen_per_step, lr=0.05, seed=1,
                           min_iou=min_iou)
    assert (cfg.unseen_weight, cfg.no_object_weight) == (5.0, 0.1)  # the official defaults
    calls = _spy_steps(monkeypatch)
    retrain_classifier(cfg, HeadFiles(run["seg"], run["seen"], run["emb"], run["cats"], run["dir"] / "head.pt",
                                      unseen_store=run["synth"]))
    assert len(calls) == cfg.iterations
    drawn, images_seen, feats_of = [], [], {u: set() for u in range(NU)}
    for k, c in enumerate(calls):
        # real rows: every query of 3 distinct whole seen images, labelled seen index or -1
        rows = [run["truth"][r.numpy().tobytes()] for r in c["x"]]
        ids = [i for i, _, _ in rows]
        assert len(c["x"]) == cfg.images_per_batch * Q and len(set(ids)) == cfg.images_per_batch, f"step {k}"
        assert all(ids.count(i) == Q for i in set(ids)), f"step {k}: not every query of the images"
        want_y = [SEEN.index(lab) if lab > 0 and iou >= min_iou else -1 for _, lab, iou in rows]
        assert c["y"].tolist() == want_y, f"step {k}: real-row labels"
        images_seen += sorted(set(ids))
        # synthetic rows: one feature of each of `unseen_per_step` distinct unseen classes
        cls = c["cls"].tolist()
        assert len(cls) == unseen_per_step, f"step {k}: {cls}"
        assert len(set(cls)) == len(cls) and set(cls) <= set(range(NU)), f"step {k}: {cls}"
        assert c["xu"].shape == (unseen_per_step, D)
        for j, u in enumerate(cls):
            assert c["xu"][j].numpy().tobytes() in run["synth_rows"][UNSEEN[u]], f"step {k}: row {j} not of class {u}"
            feats_of[u].add(c["xu"][j].numpy().tobytes())
        drawn += cls
        # the step's loss: weighted CE over real rows (-1 -> no-object) then unseen rows (-> N_s + class)
        t = torch.cat([torch.where(c["y"] < 0, NO_OBJECT, c["y"]), NS + c["cls"]])
        want = _weighted_ce(c["w0"], c["b0"], torch.cat([c["x"], c["xu"]]), t)
        assert c["loss"] == pytest.approx(float(want), rel=1e-5), f"step {k}: loss"
    assert sorted(images_seen[:N_IMAGES]) == list(range(100, 100 + N_IMAGES))  # one pass over the images
    counts = np.bincount(drawn, minlength=NU)
    expect = cfg.iterations * unseen_per_step / NU
    assert (counts >= 0.5 * expect).all(), f"unseen classes drawn {counts.tolist()} times over {cfg.iterations} steps"
    assert all(len(feats_of[u]) > 1 for u in range(NU)), "the same synthetic feature of a class every time"

    # the saved head is the replay of these batches: hand-written CE, SGD with momentum and weight decay
    w, b = (t.clone().requires_grad_() for t in _expected_init(run["seg_w"], run["seg_b"]))
    assert torch.allclose(calls[0]["w0"], w) and torch.allclose(calls[0]["b0"], b)
    opt = torch.optim.SGD([w, b], lr=0.05, momentum=0.9, weight_decay=5e-4)
    for c in calls:
        t = torch.cat([torch.where(c["y"] < 0, NO_OBJECT, c["y"]), NS + c["cls"]])
        opt.zero_grad()
        _weighted_ce(w, b, torch.cat([c["x"], c["xu"]]), t).backward()
        opt.step()
    head = load_head(run["dir"] / "head.pt")
    assert head.class_ids == SEEN + UNSEEN and head.proj_weight is None
    assert torch.allclose(head.weight, w.detach(), rtol=1e-4, atol=1e-5)
    assert torch.allclose(head.bias, b.detach(), rtol=1e-4, atol=1e-5)


def test_unseen_rows_start_at_the_mean_seen_row(run, monkeypatch):
    """docs/parity.md: seen rows and the no-object row copied from the segmenter's head, unseen
    rows (weight and bias) at the mean seen row, not zero, in the after schedule (a step of lr 0
    saves the initial head) and in the joint schedule."""
    from zeroseg.generator.joint import JointSchedule

    want_w, want_b = _expected_init(run["seg_w"], run["seg_b"])
    assert want_w[NS:NS + NU].abs().min() > 0 and want_b[NS:NS + NU].abs().min() > 0  # zero init would differ
    cfg = ClassifierConfig(iterations=1, images_per_batch=2, unseen_per_step=2, lr=0.0)
    head = retrain_classifier(cfg, HeadFiles(run["seg"], run["seen"], run["emb"], run["cats"], run["dir"] / "h.pt",
                                             unseen_store=run["synth"]))
    assert torch.equal(head.weight, want_w) and torch.equal(head.bias, want_b)
    joint = JointSchedule(cfg, class_space(run["emb"], SEEN), run["seg"], FeatureStore(run["seen"]), seed=0)
    w, b = joint.weights()
    assert torch.allclose(w, want_w) and torch.allclose(b, want_b)


def test_projection_baseline_equals_a_reimplementation(run):
    """README `projection`: logits = cos(P x + p, a_c) / τ (τ = 0.1) over the L2-normalised class
    embeddings (seen then unseen) and a learned no-object vector, P, p and that vector trained
    with Adam 1e-3 on the same whole-image batches of seen rows only (matched -> class, the
    rest -> no-object, CE weight no_object_weight); the unseen classes enter only at test time.
    The initial P, p (PyTorch's Linear init) and no-object vector (0.1 · N(0, 1)) are drawn
    after ``torch.manual_seed(seed)``, in that order."""
    cfg = ClassifierConfig(iterations=7, images_per_batch=3, no_object_weight=0.1, seed=2)
    head = retrain_classifier(cfg, HeadFiles(run["seg"], run["seen"], run["emb"], run["cats"], run["dir"] / "p.pt"),
                              baseline="projection")

    a = run["emb_all"] / run["emb_all"].norm(dim=1, keepdim=True)  # (7, E) seen then unseen
    torch.manual_seed(cfg.seed)
    lin = torch.nn.Linear(D, E)
    P, p = lin.weight.detach().clone().requires_grad_(), lin.bias.detach().clone().requires_grad_()
    no = (torch.randn(1, E) * 0.1).requires_grad_()
    opt = torch.optim.Adam([P, p, no], lr=1e-3)
    store = FeatureStore(run["seen"])
    cw = torch.tensor([1.0] * NS + [0.1])

    def cos_logits(x, cls):
        z = x @ P.T + p
        z = z / z.norm(dim=1, keepdim=True)
        return z @ cls.T / 0.1

    for step in range(cfg.iterations):
        rows = store.image_batch(step, cfg.images_per_batch, cfg.seed)
        x = torch.from_numpy(store.features(rows))
        t = torch.tensor([SEEN.index(run["truth"][r.tobytes()][1]) if run["truth"][r.tobytes()][1] > 0 else NS
                          for r in x.numpy()])
        logits = cos_logits(x, torch.cat([a[:NS], no / no.norm()]))
        nll = torch.logsumexp(logits, -1) - logits[torch.arange(len(t)), t]
        opt.zero_grad()
        ((cw[t] * nll).sum() / cw[t].sum()).backward()
        opt.step()

    assert head.class_ids == SEEN + UNSEEN
    assert torch.allclose(head.proj_weight, P.detach(), atol=1e-5)
    assert torch.allclose(head.proj_bias, p.detach(), atol=1e-5)
    x = torch.randn(10, D)
    with torch.no_grad():
        want = cos_logits(x, torch.cat([a, no / no.norm()]))  # unseen columns: their embeddings, untrained
    assert torch.allclose(head.logits(x), want, atol=1e-4)
    assert torch.equal(load_head(run["dir"] / "p.pt").weight, head.weight)
