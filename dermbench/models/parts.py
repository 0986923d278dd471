"""The parts of a backbone: its classifier, its feature stages, and an MLP head in place of the
classifier.

Any timm model names its stages through ``group_matcher(coarse=True)`` (ConvNeXt: the stem, then
``stages.0`` ... ``stages.3``; ResNet: the stem, then ``layer1`` ... ``layer4``); parameters no
stage pattern matches (the final norm, the head) form a last group. A stage here is one of the
groups between the stem and that last group. Models that are not timm's and expose no
``group_matcher`` have no stages the core can name, and asking for them is an error.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dermbench.errors import ConfigError


def classifier_module(model: nn.Module) -> nn.Module:
    """The module that maps features to class logits (timm's ``get_classifier()``, else ``head``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"model {type(model).__name__} exposes no classifier (get_classifier() or .head)")
    return head


def classifier_param_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in classifier_module(model).parameters()}


def stage_param_names(model: nn.Module) -> list[list[str]]:
    """Parameter names per feature stage, input to output; the stem is left out, and everything after
    the last stage (final norm, head) is joined to the last stage."""
    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise ConfigError(
            f"model {type(model).__name__} names no feature stages (no timm group_matcher): "
            f"use a timm backbone to freeze or unfreeze by stage"
        )
    from timm.models import group_parameters

    groups = [names for _, names in sorted(group_parameters(model, matcher(coarse=True)).items())]
    if len(groups) < 3:
        raise ConfigError(
            f"model {type(model).__name__}: expected a stem, stages and a head, got {len(groups)} groups"
        )
    stages = groups[1:-1]
    stages[-1] = stages[-1] + groups[-1]
    return stages


def trainable_last_stages(model: nn.Module, n: int) -> list[nn.Parameter]:
    """The parameters of the last ``n`` feature stages (and what follows them), classifier excluded."""
    if n <= 0:
        return []
    stages = stage_param_names(model)
    if n > len(stages):
        raise ConfigError(
            f"train_last_stages={n}, but model {type(model).__name__} has {len(stages)} feature stages"
        )
    names = {name for group in stages[-n:] for name in group}
    head_ids = classifier_param_ids(model)
    return [p for name, p in model.named_parameters() if name in names and id(p) not in head_ids]


class MLPHead(nn.Sequential):
    """``Linear(d, hidden) -> ReLU -> Dropout(p) -> Linear(hidden, classes)``."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


def attach_mlp_head(model: nn.Module, hidden: int, dropout: float) -> nn.Module:
    """Replace a timm model's final linear classifier with an :class:`MLPHead` (in place)."""
    head = classifier_module(model)
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            f"model option head_hidden: the classifier of {type(model).__name__} is a "
            f"{type(head).__name__}, not one linear layer"
        )
    mlp = MLPHead(head.in_features, hidden, head.out_features, dropout)
    parent, attr = _parent_of(model, head)
    setattr(parent, attr, mlp)
    if getattr(model, "get_classifier", None) is not None and classifier_module(model) is not mlp:
        raise ConfigError(f"model {type(model).__name__}: could not replace its classifier with an MLP head")
    return model


def _parent_of(model: nn.Module, child: nn.Module) -> tuple[nn.Module, str]:
    for module in model.modules():
        for attr, sub in module.named_children():
            if sub is child:
                return module, attr
    raise ConfigError(f"model {type(model).__name__}: its classifier is not one of its submodules")


HEAD_OPTIONS = ("head_hidden", "head_dropout")


def split_head_options(options: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, float] | None]:
    """``--opt model.head_hidden=256 --opt model.head_dropout=0.5`` are dermbench's, not timm's."""
    rest = {k: v for k, v in options.items() if k not in HEAD_OPTIONS}
    if "head_hidden" not in options:
        if "head_dropout" in options:
            raise ConfigError("model option head_dropout needs head_hidden (the MLP head's width)")
        return rest, None
    try:
        hidden, dropout = int(options["head_hidden"]), float(options.get("head_dropout", 0.0))
    except (TypeError, ValueError):
        raise ConfigError(
            f"model options head_hidden/head_dropout: expected an int and a float, got "
            f"{options.get('head_hidden')!r}, {options.get('head_dropout')!r}"
        ) from None
    if hidden < 1 or not 0.0 <= dropout < 1.0:
        raise ConfigError(
            f"model options: head_hidden must be >= 1 and 0 <= head_dropout < 1, got {hidden}, {dropout}"
        )
    return rest, (hidden, dropout)
