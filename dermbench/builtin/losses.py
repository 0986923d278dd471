"""Built-in loss: plain cross-entropy (with optional label smoothing and class weights)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import LossContext


@dataclass(frozen=True)
class CEOptions:
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | inverse (w_c = N / (K n_c))


def make_ce(options: CEOptions, ctx: LossContext) -> Any:
    from dermbench.builtin.ce_loss import CrossEntropy, inverse_frequency_weights

    if options.class_weights not in ("none", "inverse"):
        raise ValueError(f"ce: class_weights must be none or inverse, got {options.class_weights!r}")
    weight = inverse_frequency_weights(ctx.class_counts) if options.class_weights == "inverse" else None
    return CrossEntropy(weight, options.label_smoothing)


@hookimpl
def dermbench_register_losses(register):
    register(
        Component(
            "ce",
            make_ce,
            "Cross-entropy, optionally label-smoothed and class-weighted",
            options=CEOptions,
        )
    )
