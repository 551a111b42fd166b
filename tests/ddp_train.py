"""Segmenter training with the two things that legitimately differ between a W-process step and
a 1-process step on the same global batch taken out (tests/test_ddp_resume.py):

- BatchNorm statistics: every BatchNorm layer stays in eval mode (running statistics, as
  Mask2Former's FrozenBN backbone), instead of statistics of each process's share of the batch;
- Mask2Former's random points (the matcher's and the loss's ``torch.rand``): every row of a draw
  is the same fixed draw, so each mask gets the same points whichever batch or process it is in.

What is left is the library's own DDP plumbing (sampler shards, per-process batch, gradient
averaging, loss normalisation), which must then give the 1-process weights.

Under torchrun: ``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train.py CFG_JSON
SEEN_JSON IMAGE_DIR PNG_DIR OUT_DIR``; in-process: :func:`install` then ``train_segmenter``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _SameDraws:
    """The ``torch`` module as Mask2Former's code sees it, with ``rand(n, *shape)`` giving n
    copies of one fixed (*shape) draw."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def rand(*size: Any, device: Any = None, **kw: Any) -> torch.Tensor:
        if len(size) == 1 and isinstance(size[0], (list, tuple, torch.Size)):
            size = tuple(size[0])
        if not size:
            return torch.ones((), device=device)  # LayerDrop's draw (p = 0: never drops)
        row = torch.rand(size[1:], generator=torch.Generator().manual_seed(11), **kw)
        return row.expand(size).contiguous().to(device)


def install(setattr_: Callable[[object, str, Any], None]) -> None:
    """Patch (through ``setattr_``, e.g. pytest's ``monkeypatch.setattr``) Mask2Former's draws and
    the segmenter's BatchNorm layers as the module docstring says."""
    import transformers.models.mask2former.modeling_mask2former as m2f

    import zeroseg.segmenter.train as train

    build = train.build_model

    def frozen_bn(cfg, num_classes):
        model = build(cfg, num_classes)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
                m.train = lambda mode=True, m=m: m  # model.train() leaves it in eval mode
        return model

    setattr_(m2f, "torch", _SameDraws())
    setattr_(train, "build_model", frozen_bn)


def main() -> None:
    from zeroseg.segmenter.model import SegmenterConfig
    from zeroseg.segmenter.train import train_segmenter

    cfg_json, seen_json, image_dir, png_dir, out_dir = sys.argv[1:]
    install(setattr)
    cfg = json.loads(cfg_json)
    cfg = SegmenterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    train_segmenter(cfg, seen_json, image_dir, out_dir, png_dir, show_progress=False)


if __name__ == "__main__":
    main()
