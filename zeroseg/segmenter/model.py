"""The segmenter: Hugging Face ``Mask2FormerForUniversalSegmentation`` built from a config
(ResNet backbone via ``ResNetConfig``, no download), and its checkpoints.

Shapes, for a batch of B images of S × S px, Q queries, C seen classes, hidden d:
``class_queries_logits`` (B, Q, C + 1), ``masks_queries_logits`` (B, Q, S/4, S/4),
``transformer_decoder_last_hidden_state`` (B, Q, d) — the decoder's last layer BEFORE its
final LayerNorm; :func:`query_features` (B, Q, d) — after it: the vectors the class predictor
reads (``class_predictor(query_features) == class_queries_logits``), which we dump and train on.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from zeroseg.atomic import atomic_file
from zeroseg.config import from_dict
from zeroseg.errors import ConfigError, DataError


@dataclass(frozen=True)
class SegmenterConfig:
    """params.yaml section ``segmenter`` (architecture, data and schedule)."""

    # architecture
    backbone_layer_type: str = "basic"  # basic (ResNet-18/34 blocks) | bottleneck (ResNet-50)
    backbone_depths: tuple[int, ...] = (1, 1, 2, 1)
    backbone_widths: tuple[int, ...] = (32, 64, 128, 256)
    backbone_stem: int = 32
    num_queries: int = 16
    hidden_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 4
    heads: int = 4
    ffn_dim: int = 256  # transformer-decoder FFN width
    encoder_ffn_dim: int = 0  # pixel-decoder FFN width; 0 = ffn_dim
    train_num_points: int = 2304
    no_object_weight: float = 0.1
    pretrained: str = ""  # local folder or hub name of a Mask2Former checkpoint (online users); "" = from scratch
    pretrained_backbone: str = ""  # local folder or hub name of an ImageNet ResNet (e.g. microsoft/resnet-50)
    # data
    image_size: int = 96
    scale_range: tuple[float, float] = (0.8, 1.25)
    flip: bool = True
    # optimisation
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 1.0
    iterations: int = 650
    warmup: int = 30
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    workers: int = 0
    seed: int = 0
    amp: str = "off"  # mixed precision of the forward pass: off | bf16 | fp16 (with a gradient scaler)

    def __post_init__(self) -> None:
        if self.backbone_layer_type not in ("basic", "bottleneck"):
            raise ConfigError(f"segmenter.backbone_layer_type: basic or bottleneck, got {self.backbone_layer_type!r}")
        if len(self.backbone_depths) != 4 or len(self.backbone_widths) != 4:
            raise ConfigError("segmenter.backbone_depths / backbone_widths: four stages each")
        if self.image_size % 32:
            raise ConfigError(f"segmenter.image_size: a multiple of 32, got {self.image_size}")
        if self.amp not in AMP_DTYPES:
            raise ConfigError(f"segmenter.amp: one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")


AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """The autocast context of ``amp`` (off | bf16 | fp16) on ``device``'s type (CPU or CUDA)."""
    dtype = AMP_DTYPES[amp]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def build_model(cfg: SegmenterConfig, num_classes: int) -> torch.nn.Module:
    """Mask2Former over ``num_classes`` seen classes (+ no-object), randomly initialised unless
    ``cfg.pretrained`` names a checkpoint (its class head is then resized)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # silences "resnet is not a supported backbone" (it works)
    if cfg.pretrained:
        try:
            return Mask2FormerForUniversalSegmentation.from_pretrained(
                cfg.pretrained, num_labels=num_classes, ignore_mismatched_sizes=True)
        except OSError as exc:
            raise ConfigError(f"segmenter.pretrained: cannot load {cfg.pretrained!r}: {exc}") from exc
    backbone = ResNetConfig(
        embedding_size=cfg.backbone_stem, hidden_sizes=list(cfg.backbone_widths), depths=list(cfg.backbone_depths),
        layer_type=cfg.backbone_layer_type, out_features=["stage1", "stage2", "stage3", "stage4"])
    m2f = Mask2FormerConfig(
        backbone_config=backbone, backbone=None, use_pretrained_backbone=False, use_timm_backbone=False,
        num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim, mask_feature_size=cfg.hidden_dim,
        feature_size=cfg.hidden_dim, encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
        num_attention_heads=cfg.heads, encoder_feedforward_dim=cfg.encoder_ffn_dim or cfg.ffn_dim,
        dim_feedforward=cfg.ffn_dim,
        num_labels=num_classes, train_num_points=cfg.train_num_points, no_object_weight=cfg.no_object_weight)
    model = Mask2FormerForUniversalSegmentation(m2f)
    if cfg.pretrained_backbone:
        load_backbone(model, cfg.pretrained_backbone)
    return model


def load_backbone(model: torch.nn.Module, source: str) -> None:
    """Copy ImageNet ResNet weights (a ``ResNetBackbone``/``ResNetModel`` folder or hub name)
    into the segmenter's backbone; the architectures must agree (depths, widths, block type)."""
    from transformers import ResNetBackbone

    encoder = model.model.pixel_level_module.encoder
    try:
        src = ResNetBackbone.from_pretrained(source, out_features=list(encoder.config.out_features))
    except OSError as exc:
        raise ConfigError(f"segmenter.pretrained_backbone: cannot load {source!r}: {exc}") from exc
    mine, theirs = encoder.state_dict(), src.state_dict()
    missing = [k for k in mine if k not in theirs]
    shapes = [k for k in mine if k in theirs and mine[k].shape != theirs[k].shape]
    if not (missing or shapes):
        encoder.load_state_dict(theirs, strict=False)
    else:
        raise ConfigError(f"segmenter.pretrained_backbone: {source!r} does not fit the configured ResNet "
                          f"(missing {missing[:3]}, shape mismatch {shapes[:3]}); set backbone_* to its architecture")


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, cfg: SegmenterConfig,
                    classes: list[dict[str, Any]], step: int, optimizer: torch.optim.Optimizer | None = None,
                    resume: dict[str, Any] | None = None) -> None:
    """Atomic save of weights + config + class list (+ optimiser and the ``resume`` state of an
    unfinished run: RNG states, gradient scaler, ...); loadable with ``torch.load(weights_only=True)``."""
    state = {"model": model.state_dict(), "config": asdict(cfg), "hf_config": model.config.to_dict(),
             "classes": classes, "step": step}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if resume is not None:
        state["resume"] = resume
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a file object: the archive folder is "archive/", whatever the file name


def load_checkpoint(path: str | os.PathLike, expect_classes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); with ``expect_classes`` check the class list."""
    p = Path(path)
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{p}: checkpoint not found") from exc
    except Exception as exc:
        raise DataError(f"{p}: not a readable zeroseg checkpoint: {exc}") from exc
    for key in ("model", "config", "hf_config", "classes", "step"):
        if key not in ck:
            raise DataError(f"{p}: checkpoint has no '{key}'")
    if expect_classes is not None:
        have = [(c["id"], c["name"]) for c in ck["classes"]]
        want = [(c["id"], c["name"]) for c in expect_classes]
        if have != want:
            diff = sorted(set(have) ^ set(want))[:6]
            raise DataError(f"{p}: checkpoint was trained on a different class list ({len(have)} vs {len(want)} "
                            "classes; "
                            f"differing: {diff})")
    return ck


def model_from_checkpoint(path: str | os.PathLike, expect_classes: list[dict[str, Any]] | None = None
                          ) -> tuple[torch.nn.Module, SegmenterConfig, list[dict[str, Any]]]:
    """Rebuild the network from the checkpoint's own Hugging Face config (never re-downloaded)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    ck = load_checkpoint(path, expect_classes)
    cfg = from_dict(SegmenterConfig, ck["config"])
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig.from_dict(ck["hf_config"]))
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck["classes"]


def query_features(model: torch.nn.Module, outputs: Any) -> torch.Tensor:
    """(B, Q, d) per-query features the class predictor reads: the transformer decoder's final
    LayerNorm applied to ``transformer_decoder_last_hidden_state`` (which Hugging Face returns
    before that norm; Mask2Former's class head and PADing's cached features are after it).
    ``model``: the Mask2Former (or a DistributedDataParallel wrapper of it)."""
    net = getattr(model, "module", model)
    return net.model.transformer_module.decoder.layernorm(outputs.transformer_decoder_last_hidden_state)

