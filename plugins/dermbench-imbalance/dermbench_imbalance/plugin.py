"""The ``imbalance`` plugin: the losses and training recipes of Sadi et al., "LMFLOSS".

Sadi, Chowdhury, Jahan, Rafi, Chowdhury, Khan & Mohammed, "LMFLOSS: A hybrid loss for imbalanced
medical image classification", arXiv:2212.12741, compare five losses under one protocol:
cross-entropy, focal, LDAM, BWCCE and their LMF loss (alpha * LDAM + beta * focal). This module
registers those losses (plus inverse-frequency weighted CE, the paper's Eq. 2) as components and
one method per loss, each a recipe with the paper's optimiser and schedule.

It is written as the model of a third-party plugin: it touches dermbench only through
:mod:`dermbench.components`, :mod:`dermbench.hookspecs` and :mod:`dermbench.errors`, and is found
through its ``dermbench`` entry point like any other installed plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dermbench.components import Component, LossContext, Method, Ref, StageRecipe
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl

if TYPE_CHECKING:
    from torch import nn

    from dermbench_imbalance.losses import FocalLoss, LDAMLoss

REDUCTIONS = ("weighted_mean", "mean")  # as dermbench_imbalance.losses.REDUCTIONS (a test ties them)


def _losses() -> ModuleType:
    """The loss code (torch), imported when a loss is built, not when the plugin registers."""
    from dermbench_imbalance import losses

    return losses


PAPER = (
    "Sadi AA, Chowdhury L, Jahan N, Rafi MNS, Chowdhury R, Khan FA, Mohammed N. "
    '"LMFLOSS: A hybrid loss for imbalanced medical image classification." arXiv:2212.12741 (2022, rev. 2024)'
)
FOCAL_PAPER = "Lin TY, Goyal P, Girshick R, He K, Dollar P. Focal Loss for Dense Object Detection. ICCV 2017"
LDAM_PAPER = (
    "Cao K, Wei C, Gaidon A, Arechiga N, Ma T. Learning Imbalanced Datasets with Label-Distribution-Aware "
    "Margin Loss. NeurIPS 2019"
)
BWCCE_PAPER = (
    "Roy S, Tyagi M, Bansal V, Jain V. SVD-CLAHE boosting and balanced loss function for Covid-19 detection "
    "from an imbalanced Chest X-Ray dataset. Comput Biol Med 150:106092 (2022)"
)

FOCAL_ALPHAS = ("margins", "none")


def _help(default: Any, text: str) -> Any:
    """A dataclass field with a default and the help line ``dermbench list losses -v`` prints."""
    return field(default=default, metadata={"help": text})


# --- options: every constant of every loss, with the official code's values as defaults ------


@dataclass(frozen=True)
class WeightedCEOptions:
    reduction: str = _help(
        "weighted_mean",
        "weighted_mean: sum w_y l / sum w_y (torch's cross_entropy(weight=)); mean: sum w_y l / B (paper Eq. 2)",
    )


@dataclass(frozen=True)
class FocalOptions:
    gamma: float = _help(1.5, "focusing parameter of (1 - p_t)^gamma")
    alpha: str = _help("margins", "per-class alpha: margins (the LDAM margins, as the paper) or none")
    max_m: float = _help(0.5, "largest margin when alpha = margins (the rarest class's alpha)")


@dataclass(frozen=True)
class LDAMOptions:
    max_m: float = _help(0.5, "largest margin m_c = max_m n_c^-1/4 / max_j n_j^-1/4 (the rarest class's)")
    s: float = _help(30.0, "logit scale applied after subtracting the margin")
    weighted: bool = _help(True, "weight the cross-entropy per class by the margins (official code)")


@dataclass(frozen=True)
class LMFOptions:
    alpha: float = _help(1.5, "weight of the LDAM term (official code default; paper Table 6 mostly 1.0)")
    beta: float = _help(1.0, "weight of the focal term")
    max_m: float = _help(0.5, "largest LDAM margin, also the focal alpha scale")
    s: float = _help(30.0, "LDAM logit scale")
    gamma: float = _help(1.5, "focal focusing parameter")
    ldam_weighted: bool = _help(True, "weight the LDAM cross-entropy by the margins (official code)")
    focal_alpha: str = _help("margins", "focal per-class alpha: margins or none")


# --- factories: factory(options, ctx: LossContext) -> nn.Module -------------------------------


def _choice(where: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: option {name} must be one of {', '.join(allowed)}, got {value!r}")


def _checked(ctx: LossContext, where: str) -> list[int]:
    _losses().check_counts(ctx.class_counts, ctx.classes, where)
    if len(ctx.class_counts) != ctx.num_classes:
        raise ConfigError(f"{where}: {len(ctx.class_counts)} class counts for {ctx.num_classes} classes")
    return list(ctx.class_counts)


def make_wce(options: WeightedCEOptions, ctx: LossContext) -> nn.Module:
    _choice("loss wce", "reduction", options.reduction, REDUCTIONS)
    losses = _losses()
    return losses.WeightedCrossEntropy(
        losses.inverse_frequency_weights(_checked(ctx, "loss wce")), options.reduction
    )


def make_bwcce(options: WeightedCEOptions, ctx: LossContext) -> nn.Module:
    _choice("loss bwcce", "reduction", options.reduction, REDUCTIONS)
    losses = _losses()
    return losses.WeightedCrossEntropy(
        losses.balanced_weights(_checked(ctx, "loss bwcce")), options.reduction
    )


def _focal(gamma: float, alpha: str, max_m: float, counts: list[int], where: str) -> FocalLoss:
    _choice(where, "alpha", alpha, FOCAL_ALPHAS)
    if gamma < 0:
        raise ConfigError(f"{where}: option gamma must be >= 0, got {gamma}")
    if not max_m > 0:
        raise ConfigError(f"{where}: option max_m must be > 0, got {max_m}")
    losses = _losses()
    return losses.FocalLoss(losses.ldam_margins(counts, max_m) if alpha == "margins" else None, gamma)


def _ldam(max_m: float, s: float, weighted: bool, counts: list[int], where: str) -> LDAMLoss:
    if not max_m > 0:
        raise ConfigError(f"{where}: option max_m must be > 0, got {max_m}")
    if not s > 0:
        raise ConfigError(f"{where}: option s must be > 0, got {s}")
    losses = _losses()
    return losses.LDAMLoss(losses.ldam_margins(counts, max_m), s, weighted)


def make_focal(options: FocalOptions, ctx: LossContext) -> nn.Module:
    counts = _checked(ctx, "loss focal")
    return _focal(options.gamma, options.alpha, options.max_m, counts, "loss focal")


def make_ldam(options: LDAMOptions, ctx: LossContext) -> nn.Module:
    counts = _checked(ctx, "loss ldam")
    return _ldam(options.max_m, options.s, options.weighted, counts, "loss ldam")


def make_lmf(options: LMFOptions, ctx: LossContext) -> nn.Module:
    counts = _checked(ctx, "loss lmf")
    return _losses().LMFLoss(
        _ldam(options.max_m, options.s, options.ldam_weighted, counts, "loss lmf"),
        _focal(options.gamma, options.focal_alpha, options.max_m, counts, "loss lmf"),
        options.alpha,
        options.beta,
    )


LOSSES = (
    Component(
        "wce",
        make_wce,
        "Cross-entropy weighted by inverse class frequency, w_c = N / (K n_c)",
        options=WeightedCEOptions,
        paper=PAPER,
    ),
    Component(
        "bwcce",
        make_bwcce,
        "Balanced weighted cross-entropy, w_c = (1 - n_c / N) / (K - 1)",
        options=WeightedCEOptions,
        paper=BWCCE_PAPER,
    ),
    Component(
        "focal",
        make_focal,
        "Alpha-balanced focal loss, alpha = the LDAM margins, gamma 1.5",
        options=FocalOptions,
        paper=FOCAL_PAPER,
    ),
    Component(
        "ldam",
        make_ldam,
        "Label-distribution-aware margin loss (s = 30, max margin 0.5), margin-weighted",
        options=LDAMOptions,
        paper=LDAM_PAPER,
    ),
    Component(
        "lmf",
        make_lmf,
        "Large-margin-aware focal loss: 1.5 x LDAM + 1.0 x focal",
        options=LMFOptions,
        paper=PAPER,
    ),
)


# --- methods: one recipe per loss, all under the paper's protocol ------------------------------

# Official code and paper: EfficientNetV2-S, ResNet-50 and DenseNet-121, ImageNet-initialised;
# EfficientNetV2 is the backbone of the headline table (Table 2), of the per-class analysis
# (Table 5) and of the hyperparameter study. timm's ImageNet-1k EfficientNetV2-S weights stand in
# for torchvision's (whose state-dict keys timm cannot load).
PAPER_PROFILE: dict[str, Any] = {
    "model": "tf_efficientnetv2_s.in1k",
    "init": "imagenet",
    "image_size": 224,
    "epochs": 100,
    "batch_size": 32,
    "select": "val_macro_f1",
    "augment": "none",
}

NOTES = (
    "Paper: 70/15/15 stratified split, 224 px, ImageNet-initialised EfficientNetV2 / ResNet-50 / "
    "DenseNet-121, Adam lr 1e-4 weight decay 5e-4, step decay x0.1 every 30 epochs, 100 epochs, batch 32. "
    "Left out by the paper, taken from its official code: no augmentation (resize and to-tensor only), the "
    "checkpoint with the best validation macro-F1 is kept, EfficientNetV2 is the S size, losses as in the "
    "plugin README (margin-weighted LDAM, focal alpha = margins, LMF alpha 1.5 beta 1.0). Chosen here: "
    "timm's tf_efficientnetv2_s.in1k weights (the code used torchvision's), fed the normalisation of those "
    "weights (their pretrained_cfg: mean = std = 0.5; the code fed unnormalised [0, 1] pixels); the paper's other "
    "backbones are --model resnet50.tv_in1k and densenet121.tv_in1k (torchvision's weights, ImageNet "
    "statistics); and dermbench's lesion-grouped 70/15/15 "
    "split (the code split images, so one lesion's images could land in train and test)."
)

ADAM = Ref("adam", {"lr": 1e-4, "weight_decay": 5e-4})
STEP = Ref("step", {"step_size": 30, "gamma": 0.1})


def _method(name: str, summary: str, loss: Ref) -> Method:
    return Method(
        name=name,
        summary=summary,
        stages=(StageRecipe(name="train", runner="supervised", loss=loss, optimizer=ADAM, scheduler=STEP),),
        profiles={"paper": dict(PAPER_PROFILE), "uniform": {"select": "val_macro_f1"}},
        paper=PAPER,
        notes=NOTES,
    )


METHODS = (
    _method("ce", "Cross-entropy, Adam 1e-4, step decay: the LMF paper's CCE baseline", Ref("ce")),
    _method("wce", "Inverse-frequency weighted cross-entropy (the LMF paper's Eq. 2)", Ref("wce")),
    _method("bwcce", "Balanced weighted cross-entropy: an LMF paper baseline", Ref("bwcce")),
    _method("focal", "Focal loss, alpha = LDAM margins, gamma 1.5: an LMF paper baseline", Ref("focal")),
    _method("ldam", "Margin-weighted LDAM loss: an LMF paper baseline", Ref("ldam")),
    _method("lmf", "LMF loss = 1.5 x LDAM + 1.0 x focal (Sadi et al.)", Ref("lmf")),
)


@hookimpl
def dermbench_register_losses(register: Any) -> None:
    register(LOSSES)


@hookimpl
def dermbench_register_methods(register: Any) -> None:
    register(METHODS)
