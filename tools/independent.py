"""An independent computation of the instance and semantic scores of one class head on a stored
validation set: Mask2Former's ``instance_inference`` / ``semantic_inference`` written in NumPy
from their formulas, pycocotools' COCOeval called directly, detectron2's mIoU from a plain
confusion matrix. It shares no code with ``zeroseg.evaluate.inference`` or ``zeroseg.metrics``;
tests and the closing-note check compare zeroseg's numbers with it.

    python -m tools.independent HEAD VAL_STORE GT_JSON GT_DIR SPLIT_ALL_JSON   # prints both, per key
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

KEYS = ("map50_seen", "map50_unseen", "r100_seen", "r100_unseen", "miou_seen", "miou_unseen", "miou")


def _ids(png: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _mean(vals):
    vals = list(vals)
    return float(np.mean(vals)) if vals else None


def independent_scores(store, weight: np.ndarray, bias: np.ndarray, class_ids: list[int], isthing: list[bool],
                       gt_json, gt_dir, unseen: set[int], topk: int = 100,
                       project=lambda x: x) -> dict[str, float | None]:
    """``store``: a zeroseg FeatureStore with masks (read through its public arrays only);
    logits = project(features) @ weightᵀ + bias."""
    gt = json.loads(Path(gt_json).read_text())
    anns = {a["image_id"]: a for a in gt["annotations"]}
    cats = {c["id"]: c for c in gt["categories"]}
    things = {c for c, v in cats.items() if v["isthing"]}
    cid_index = {c: i for i, c in enumerate(sorted(cats))}
    C = len(cid_index)
    conf = np.zeros((C, C), np.int64)  # [gt, pred] over labelled pixels
    S = int(store.meta["image_size"])
    rows = {int(r.image_id): (r.shard, int(r.row_start), int(r.row_count)) for r in store.index.itertuples()}
    groups = {s.name: s.group for s in store.shards}
    K = len(class_ids)
    gt_insts, dets, images = [], [], []
    for g in store.mask_shards():
        for i, image_id in enumerate(g["mask_image_id"][:]):
            image_id = int(image_id)
            shard, start, count = rows[image_id]
            x = groups[shard]["features"][start:start + count].astype(np.float64)
            logits = project(x) @ weight.T + bias
            e = np.exp(logits - logits.max(1, keepdims=True))
            prob = e / e.sum(1, keepdims=True)  # (Q, K + 1)
            vh, vw = (int(v) for v in g["valid"][i])
            H, W = (int(v) for v in g["orig_size"][i])
            m = torch.from_numpy(g["masks"][i].astype(np.float32))[None]
            m = F.interpolate(m, size=(S, S), mode="bilinear", align_corners=False)[:, :, :vh, :vw]
            m = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)[0].numpy().astype(np.float64)
            sig = 1 / (1 + np.exp(-m))
            # instance rule
            flat = prob[:, :K].reshape(-1)
            order = np.argsort(-flat, kind="stable")[:min(topk, flat.size)]
            for f in order:
                q, c = divmod(int(f), K)
                if not isthing[c]:
                    continue
                binary = m[q] > 0
                score = flat[f] * (sig[q] * binary).sum() / (binary.sum() + 1e-6)
                rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                dets.append({"image_id": image_id, "category_id": class_ids[c], "segmentation": rle,
                             "score": float(score)})
            # semantic rule and the confusion matrix (GT VOID ignored)
            sem = np.einsum("qc,qhw->chw", prob[:, :K], sig).argmax(0)
            ids = _ids(Path(gt_dir) / anns[image_id]["file_name"])
            for s in anns[image_id]["segments_info"]:
                on = ids == s["id"]
                pred_idx = np.array([cid_index[class_ids[k]] for k in sem[on]], np.int64)
                conf[cid_index[s["category_id"]]] += np.bincount(pred_idx, minlength=C)
                if s["category_id"] in things:
                    rle = mask_utils.encode(np.asfortranarray(on.astype(np.uint8)))
                    rle["counts"] = rle["counts"].decode()
                    gt_insts.append({"id": len(gt_insts) + 1, "image_id": image_id, "category_id": s["category_id"],
                                     "segmentation": rle, "area": int(on.sum()), "bbox": list(mask_utils.toBbox(rle)),
                                     "iscrowd": int(s.get("iscrowd", 0))})
            images.append({"id": image_id, "height": H, "width": W})
    out: dict[str, float | None] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = {"images": images, "annotations": gt_insts, "categories": [{"id": c} for c in sorted(things)]}
        cgt.createIndex()
        ev = COCOeval(cgt, cgt.loadRes(dets) if dets else COCO(), "segm")
        ev.evaluate()
        ev.accumulate()
    t = list(np.round(ev.params.iouThrs, 2)).index(0.5)
    ap, rec = {}, {}
    for k, c in enumerate(ev.params.catIds):
        p = ev.eval["precision"][t, :, k, 0, -1]
        if (p > -1).any():
            ap[c] = p[p > -1].mean()
        r = ev.eval["recall"][t, k, 0, -1]
        if r > -1:
            rec[c] = r
    for name, d in (("map50", ap), ("r100", rec)):
        out[f"{name}_seen"] = _mean(v for c, v in d.items() if c not in unseen)
        out[f"{name}_unseen"] = _mean(v for c, v in d.items() if c in unseen)
    tp = np.diag(conf).astype(np.float64)
    n_gt, n_pred = conf.sum(1), conf.sum(0)
    ids_sorted = sorted(cats)
    iou = {ids_sorted[k]: tp[k] / (n_gt[k] + n_pred[k] - tp[k]) for k in range(C) if n_gt[k] + n_pred[k] > 0}
    out["miou"] = _mean(iou.values())
    out["miou_seen"] = _mean(v for c, v in iou.items() if c not in unseen)
    out["miou_unseen"] = _mean(v for c, v in iou.items() if c in unseen)
    return out


def main(argv: list[str]) -> int:
    """Compare zeroseg's evaluation of a head with the independent one; exit 1 on a difference > 1e-3."""
    from zeroseg.data.classes import unseen_from_split
    from zeroseg.evaluate.score import evaluate_head
    from zeroseg.features.store import FeatureStore
    from zeroseg.head.model import load_head

    head_path, store_path, gt_json, gt_dir, split_json = argv
    head, store, unseen = load_head(head_path), FeatureStore(store_path), unseen_from_split(split_json)
    proj = None
    if head.proj_weight is not None:
        pw, pb = head.proj_weight.double().numpy(), head.proj_bias.double().numpy()

        def proj(x):
            y = x @ pw.T + pb
            return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    ours, _, _ = evaluate_head(store, head, gt_json, gt_dir, unseen)
    ref = independent_scores(store, head.weight.double().numpy(), head.bias.double().numpy(), head.class_ids,
                             head.isthing, gt_json, gt_dir, unseen, project=proj or (lambda x: x))
    worst = 0.0
    for k in KEYS:
        a, b = ours.get(k), ref[k]
        d = 0.0 if a is None and b is None else abs((a or 0) - (b or 0)) if (a is None) == (b is None) else 1.0
        worst = max(worst, d)
        print(f"{Path(head_path).stem:22s} {k:14s} zeroseg {a!s:22s} independent {b!s:22s} |diff| {d:.2e}")
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
