"""``zeroseg predict``: panoptic, instance and semantic segmentation of one's own images
(Mask2Former's three rules on the same per-query outputs), with class names nobody
trained on. New names are embedded with the pipeline's own embedding settings, their
features synthesised by the trained generator, and the class head retrained on real seen +
synthetic unseen features (seconds); the segmenter is never retrained."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zeroseg.atomic import atomic_dir, write_json
from zeroseg.config import from_dict
from zeroseg.data.panoptic import load_panoptic, read_rgb, write_ids
from zeroseg.embed.sources import EmbedConfig
from zeroseg.embed.space import read_embeddings
from zeroseg.embed.vectors import embed_categories
from zeroseg.errors import DataError
from zeroseg.evaluate.inference import InferenceConfig, upsample_masks
from zeroseg.evaluate.overlay import overlay
from zeroseg.evaluate.score import coco_results
from zeroseg.features.store import FeatureStore
from zeroseg.generator.checkpoint import load_generator, synthesize
from zeroseg.head.model import Head, segmenter_head
from zeroseg.head.train import ClassifierConfig, SeenRows, UnseenPool, retrain_head
from zeroseg.segmenter.data import fit_size, to_canvas
from zeroseg.segmenter.model import model_from_checkpoint, query_features


@dataclass(frozen=True)
class ModelFiles:
    """The trained pipeline's artifacts that ``predict`` needs (defaults: the root pipeline's)."""

    segmenter: Path
    generator: Path
    embeddings: Path
    categories: Path
    seen_store: Path

    @classmethod
    def from_root(cls, root: str | os.PathLike = ".", generator: str = "pading", seed: int = 0) -> ModelFiles:
        """The files of a pipeline run rooted at ``root``; ``generator`` and ``seed`` pick the
        ablation row's generator (``data/generators/<row>-s<seed>.pt``) and, in a run that trains a
        segmenter per seed (the root pipeline: ``data/segmenter/s<seed>``, ``data/features/s<seed>``),
        that seed's segmenter and seen store; a run with one segmenter (the COCO pipelines) has
        ``data/segmenter/model.pt`` and ``data/features/train_seen``."""
        r = Path(root)
        per_seed = (r / f"data/segmenter/s{seed}").is_dir()
        seg, feats = ((f"data/segmenter/s{seed}", f"data/features/s{seed}") if per_seed
                      else ("data/segmenter", "data/features"))
        return cls(r / seg / "model.pt", r / f"data/generators/{generator}-s{seed}.pt",
                   r / "data/embed/classes.parquet",
                   r / "data/split/panoptic_train_all.json", r / feats / "train_seen")


def build_head(files: ModelFiles, new_names: list[str], per_class: int = 1000,
               cfg: ClassifierConfig = ClassifierConfig()) -> tuple[Head, dict[int, str]]:
    """A head over the model's seen + unseen classes + ``new_names``. Returns it and id -> name
    (new classes get ids above the dataset's)."""
    cats = load_panoptic(files.categories).categories
    names = {c: cat.name for c, cat in cats.items()}
    new = [n for n in dict.fromkeys(s.strip() for s in new_names) if n and n not in names.values()]
    gen, _, space = load_generator(files.generator)
    emb = space.emb
    _, _, meta = read_embeddings(files.embeddings)
    ids = space.all_ids
    isthing = [cats[c].isthing for c in ids]
    if new:
        ecfg = from_dict(EmbedConfig, meta["config"]) if meta.get("config") else EmbedConfig()
        if "attributes" in ecfg.parts():
            raise DataError(f"{files.embeddings}: embedded by attributes; new free-text names need a text source")
        vecs, _ = embed_categories([{"id": i, "name": n} for i, n in enumerate(new)], ecfg)
        if vecs.shape[1] != emb.shape[1]:
            raise DataError(f"{files.embeddings}: its embed settings (source {ecfg.source!r}) give {vecs.shape[1]}-d "
                            f"vectors for the new class names but the generator {files.generator} was trained on "
                            f"{emb.shape[1]}-d ones")
        emb = torch.cat([emb, torch.from_numpy(vecs)])
        first = max(cats) + 1
        for k, n in enumerate(new):
            names[first + k] = n
        ids = ids + list(range(first, first + len(new)))
        isthing = isthing + [True] * len(new)  # new names are predicted as things (instances)
    ns = len(space.seen_ids)
    fx, fi = synthesize(gen, emb[ns:], per_class)
    sh = segmenter_head(files.segmenter)
    seen = SeenRows(FeatureStore(files.seen_store), space.seen_ids, cfg.min_iou)
    nu = len(ids) - ns
    w, b = retrain_head(cfg, seen, UnseenPool(fx, fi, nu), sh.weight, sh.bias, ns, nu)
    return Head(w, b, ids, isthing), names


def output_stems(images: list[str | os.PathLike]) -> list[str]:
    """One distinct output name stem per input image: its file stem, and for a stem already taken
    (a/x.png and b/x.png; compared case-insensitively, as on macOS and Windows) the stem with
    the first free suffix ``-2``, ``-3``, ... (free among every input's own stem too)."""
    stems = [Path(p).stem for p in images]
    taken = {s.casefold() for s in stems}
    used: set[str] = set()
    out = []
    for s in stems:
        name, k = s, 1
        while name.casefold() in used or (name != s and name.casefold() in taken):
            k += 1
            name = f"{s}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


def predict_images(images: list[str | os.PathLike], class_names: list[str], out_dir: str | os.PathLike,
                   files: ModelFiles, cfg: InferenceConfig = InferenceConfig(),
                   classifier: ClassifierConfig = ClassifierConfig()) -> Path:
    """Write ``out_dir/predictions.json`` + ``out_dir/panoptic/<stem>.png`` (COCO panoptic),
    ``out_dir/instances.json`` (COCO results: overlapping RLE masks with scores),
    ``out_dir/semantic/<stem>.png`` (16-bit grey, pixel = category id) and
    ``out_dir/overlay/<stem>.png`` (panoptic, with a legend); returns the panoptic JSON path.
    Inputs with the same file stem get distinct stems (:func:`output_stems`). ``classifier``: how
    the head is retrained (the run's params section ``classifier``)."""
    head, names = build_head(files, class_names, cfg=classifier)
    model, seg_cfg, seen_classes = model_from_checkpoint(files.segmenter)
    unseen = set(head.class_ids) - {c["id"] for c in seen_classes}  # the dataset's unseen + the new names
    S = seg_cfg.image_size
    anns, imgs, dets = [], [], []
    with atomic_dir(out_dir) as tmp:
        for sub in ("panoptic", "semantic", "overlay"):
            (tmp / sub).mkdir()
        for k, (path, stem) in enumerate(zip(images, output_stems(images)), start=1):
            p = Path(path)
            rgb = read_rgb(p, "image file missing", "unreadable or corrupt image")
            H, W = rgb.shape[:2]
            h, w = fit_size(H, W, S)
            x = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1).float()[None], size=(h, w), mode="bilinear",
                              align_corners=False)[0]
            canvas, _ = to_canvas(x, S)
            with torch.no_grad():
                o = model(pixel_values=canvas[None])
                feats = query_features(model, o)[0].float()
                logits = upsample_masks(o.masks_queries_logits[0], S, (h, w), (H, W))
                pred = cfg.predict(head, feats, logits, unseen)
            ids, segs = pred.panoptic_ids, pred.panoptic_segments
            write_ids(tmp / "panoptic" / f"{stem}.png", ids)
            Image.fromarray(pred.semantic.astype(np.uint16)).save(tmp / "semantic" / f"{stem}.png")
            dets += coco_results(k, pred)
            _overlay_png(rgb, ids, segs, names, tmp / "overlay" / f"{stem}.png")
            imgs.append({"id": k, "file_name": p.name, "height": H, "width": W})
            anns.append({"image_id": k, "file_name": f"{stem}.png", "segments_info": segs})
        cats = [{"id": c, "name": names[c], "isthing": int(t)} for c, t in zip(head.class_ids, head.isthing)]
        write_json(tmp / "predictions.json", {"images": imgs, "annotations": anns, "categories": cats})
        write_json(tmp / "instances.json", dets, indent=None)
    return Path(out_dir) / "predictions.json"


def _overlay_png(rgb: np.ndarray, ids: np.ndarray, segs: list[dict], names: dict[int, str], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img = overlay(rgb, ids, segs, names, set())
    fig, ax = plt.subplots(figsize=(5, 5 * rgb.shape[0] / rgb.shape[1] + 0.8))
    ax.imshow(img)
    ax.axis("off")
    rng = np.random.default_rng(0)
    colours = [rng.integers(40, 255, 3) / 255 for _ in segs]  # the same draws as overlay()
    ax.legend(handles=[Patch(color=c, label=f"{names[s['category_id']]} ({s['score']:.2f})")
                       for c, s in zip(colours, segs)],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=7, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def with_inference(params: str | os.PathLike | None) -> InferenceConfig:
    if params is None or not Path(params).exists():
        return InferenceConfig()
    from zeroseg.config import load_section

    return load_section(params, "inference", InferenceConfig)


def with_classifier(params: str | os.PathLike | None) -> ClassifierConfig:
    """The params file's ``classifier`` section (the head recipe of the run), else the defaults."""
    if params is None or not Path(params).exists():
        return ClassifierConfig()
    from zeroseg.config import load_section

    return load_section(params, "classifier", ClassifierConfig)

