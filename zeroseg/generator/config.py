"""The ``generator`` params section and its two recipes.

Each component where the official PADing code differs from the paper's text (and from
zeroseg's first implementation, which followed the paper) is its own key; a key set to
``recipe`` takes the value of the section's ``recipe`` (docs/parity.md gives each difference
with the official file and function). ``arch`` names the generator itself, an entry of
:data:`zeroseg.generator.architectures.ARCHITECTURES`; ``primitive_layout`` is the structure of
the primitive generator's layers:

| key | ``zeroseg`` (the paper's text) | ``official`` (heshuting555/PADing) |
|---|---|---|
| primitive_layout | ``paper``: self-attention over the primitives, ω_1 | ``official``: no primitive update, no ω_1 |
| mmd | ``paper``: per-class MMD², exp(−d²/2σ²) | ``official``: √ of the pooled MMD², exp(−d²/2σ) |
| sigmas | 2, 5, 10, 20, 40, 60 | 2, 5, 10, 20, 40, 80 |
| structure | ``paper``: L_R, L_U, L_rec, L_A as the paper writes them, on real + fake seen | ``official``: on fake seen + fake unseen (official_structure.py) |
| optimizer | ``paper``: Adam β (0.5, 0.999) | ``official``: Adam β (0.9, 0.999) |
| lr | 2e-4 | 5e-4 |
| lr_schedule | ``constant`` | ``steps``: × 0.1 at 70% and 92.5% of the steps (panoptic; ``constant`` for instance, ``poly`` for semantic) |
| batch | ``classes``: class-balanced rows | ``images``: every matched query of whole images |
| min_iou | 0.5 | 0 (every Hungarian match) |
| unseen_per_class | 8 | 1 |
| schedule | ``after``: the head is retrained after the generator | ``joint``: one generator step, one head step |
| cls_weight | 0 | 0.001 (CE of fake seen features through the joint head) |
"""  # noqa: E501 (a table's rows do not wrap)

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from zeroseg.errors import ConfigError
from zeroseg.generator.architectures import ARCHITECTURES

RECIPE = "recipe"
RECIPES: dict[str, dict] = {
    "zeroseg": dict(primitive_layout="paper", mmd="paper", sigmas=(2.0, 5.0, 10.0, 20.0, 40.0, 60.0), structure="paper",
                    optimizer="paper", lr=2e-4, lr_schedule="constant", batch="classes", min_iou=0.5,
                    unseen_per_class=8, schedule="after",
                    cls_weight=0.0),
    "official": dict(primitive_layout="official", mmd="official", sigmas=(2.0, 5.0, 10.0, 20.0, 40.0, 80.0),
                     structure="official", optimizer="official", lr=5e-4, lr_schedule="steps", batch="images",
                     min_iou=0.0,
                     unseen_per_class=1, schedule="joint", cls_weight=0.001),
}
CHOICES = {"primitive_layout": ("paper", "official"), "mmd": ("paper", "official"), "structure": ("paper", "official"),
           "optimizer": ("paper", "official"), "lr_schedule": ("constant", "steps", "poly"),
           "batch": ("classes", "images"), "schedule": ("after", "joint")}
LR_STEPS = (0.7, 0.925)  # lr_schedule steps: panoptic PADing.yaml STEPS (14000, 18500) of MAX_ITER 20000, GAMMA 0.1
POLY_POWER = 0.9  # lr_schedule poly: semantic PADing (WarmupPolyLR, deeplab's default power)


@dataclass(frozen=True)
class GeneratorConfig:
    """params.yaml section ``generator`` (the ablation rows override some keys)."""

    arch: str = "primitive"  # an entry of ARCHITECTURES: primitive (PADing) | gmmn | linear (closed form)
    recipe: str = "zeroseg"  # zeroseg | official: the value of every key below left at "recipe"
    num_primitives: int = 200
    layers: int = 3
    heads: int = 4
    dim: int = 0  # primitive width d_k; 0 = the feature dimension
    ffn: int = 1024
    dropout: float = 0.1
    noise: float = 1.0  # std of the Gaussian noise
    align: bool = True
    disentangle: bool = True
    lam: float = field(default=0.01, metadata={"key": "lambda"})
    tau: float = 0.1
    ridge: float = 0.001  # arch linear: ridge λ of its map from the class-name embedding to the class mean
    iterations: int = 450
    classes_per_batch: int = 8  # batch: classes
    per_class: int = 16  # batch: classes
    images_per_batch: int = 12  # batch: images, and the joint schedule's head step
    checkpoint_every: int = 0  # save <out>.last every this many steps to resume an interrupted run (0: never)
    seed: int = 0
    # the components the two recipes set (RECIPES)
    primitive_layout: str = RECIPE
    mmd: str = RECIPE
    sigmas: tuple[float, ...] | str = RECIPE
    structure: str = RECIPE
    optimizer: str = RECIPE
    lr: float | str = RECIPE
    lr_schedule: str = RECIPE
    batch: str = RECIPE
    min_iou: float | str = RECIPE
    unseen_per_class: int | str = RECIPE
    schedule: str = RECIPE
    cls_weight: float | str = RECIPE

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ConfigError("generator.checkpoint_every: 0 (never) or a number of steps, "
                              f"got {self.checkpoint_every}")
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"generator.arch: one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.ridge <= 0:
            raise ConfigError(f"generator.ridge: a positive ridge weight, got {self.ridge}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"generator.recipe: one of {', '.join(RECIPES)}, got {self.recipe!r}")
        for key in RECIPES["zeroseg"]:
            value = getattr(self, key)
            if isinstance(value, str) and value != RECIPE and value not in CHOICES.get(key, ()):
                allowed = ", ".join(CHOICES.get(key, ()) + (RECIPE,)) if key in CHOICES else f"a number or {RECIPE!r}"
                raise ConfigError(f"generator.{key}: {allowed}; got {value!r}")

    def resolved(self) -> GeneratorConfig:
        """The config with every ``recipe`` key replaced by the recipe's value, checked."""
        cfg = replace(self, **{k: v for k, v in RECIPES[self.recipe].items() if getattr(self, k) == RECIPE})
        if cfg.structure == "official" and not ARCHITECTURES[cfg.arch].projection and (cfg.align or cfg.disentangle):
            raise ConfigError("generator.structure official: its class side is the generator's learned projection "
                              f"(the primitive generator's fc_projection); the {cfg.arch} generator has none "
                              "(use structure: paper)")
        if ARCHITECTURES[cfg.arch].fit is not None and (cfg.align or cfg.disentangle or cfg.schedule == "joint"):
            raise ConfigError(f"generator.arch {cfg.arch}: fitted in closed form, without a training loop, so without "
                              "the structure terms or a joint head (align=false disentangle=false, schedule after)")
        if cfg.cls_weight and cfg.schedule != "joint":
            raise ConfigError(f"generator.cls_weight {cfg.cls_weight}: the CE through the new classifier needs the "
                              "head trained jointly (schedule: joint)")
        if not 0 <= cfg.min_iou < 1:
            raise ConfigError(f"generator.min_iou: in [0, 1), got {cfg.min_iou}")
        if cfg.unseen_per_class < 1:
            raise ConfigError(f"generator.unseen_per_class: at least 1, got {cfg.unseen_per_class}")
        return cfg


def params_dict(cfg: GeneratorConfig) -> dict:
    """The config as params.yaml keys (``lam`` -> ``lambda``, tuples as lists)."""
    d = asdict(cfg)
    d["lambda"] = d.pop("lam")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def component_keys() -> list[str]:
    """The keys the recipes set, in params order."""
    return [f.name for f in fields(GeneratorConfig) if f.name in RECIPES["zeroseg"]]
