"""Built-in post-hoc steps: fit on validation predictions, applied unchanged to every split.

``recall_threshold`` is the recall-constrained operating point of Rumale et al.,
"Recall-Oriented Deep Learning Framework for Skin Cancer Detection with Explainability and
Fairness Analysis": on validation, thresholds on p(positive) in steps of 0.02, the one with the
highest F1 among those with recall >= gamma. The threshold is frozen after ``fit``, so test
labels can never move it; ``apply`` only measures it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.evaluation.metrics import choose_threshold, operating_point
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import PosthocContext

PAPER = (
    "Rumale et al., Recall-Oriented Deep Learning Framework for Skin Cancer Detection with "
    "Explainability and Fairness Analysis"
)


@dataclass(frozen=True)
class RecallThresholdOptions:
    step: float = field(default=0.02, metadata={"help": "spacing of the threshold grid on p(positive)"})
    recall_constraint: float | None = field(
        default=None, metadata={"help": "minimum validation recall; None takes the task's"}
    )


class RecallThreshold:
    """The operating point chosen on validation; its result lands in ``metrics.<split>.operating_point``."""

    key = "operating_point"

    def __init__(self, options: RecallThresholdOptions, ctx: PosthocContext) -> None:
        if ctx.positive_class is None:
            raise ConfigError(
                "posthoc recall_threshold needs a task with a positive_class (e.g. binary, triage3)"
            )
        if ctx.positive_class not in ctx.classes:
            raise ConfigError(
                f"posthoc recall_threshold: positive_class {ctx.positive_class!r} is not one of {ctx.classes}"
            )
        self.classes = list(ctx.classes)
        self.positive_class = ctx.positive_class
        self.step = float(options.step)
        gamma = options.recall_constraint
        self.recall_constraint = ctx.recall_constraint if gamma is None else float(gamma)
        self.choice: dict[str, Any] | None = None

    def fit(self, val_y: np.ndarray, val_probs: np.ndarray, val_frame: Any = None) -> dict[str, Any]:
        self.choice = choose_threshold(
            val_y, val_probs, self.classes, self.positive_class, self.recall_constraint, step=self.step
        )
        return self.choice

    def apply(self, y: np.ndarray, probs: np.ndarray, frame: Any = None) -> dict[str, Any]:
        if self.choice is None:
            raise RuntimeError("recall_threshold.apply() called before fit() on validation predictions")
        if self.choice["threshold"] is None:
            return self._unchosen()
        return operating_point(
            y,
            probs,
            self.classes,
            self.positive_class,
            self.choice["threshold"],
            recall_constraint=self.recall_constraint,
            feasible=self.choice["feasible"],
        )

    def _unchosen(self) -> dict[str, Any]:
        """No threshold could be chosen on validation: every rate is undefined, for that reason."""
        why = self.choice["reason"] if self.choice else "not fitted"
        rates = ("recall", "precision", "f1", "sensitivity", "specificity", "tp", "fp", "tn", "fn")
        return {
            "positive_class": self.positive_class,
            "recall_constraint": self.recall_constraint,
            "threshold": None,
            "feasible": False,
            **{r: None for r in rates},
            "undefined": {r: why for r in ("threshold", *rates[:5])},
        }


def make_recall_threshold(options: RecallThresholdOptions, ctx: PosthocContext) -> RecallThreshold:
    return RecallThreshold(options, ctx)


@hookimpl
def dermbench_register_posthoc(register: Any) -> None:
    register(
        Component(
            name="recall_threshold",
            factory=make_recall_threshold,
            summary="Threshold on p(positive) with the best validation F1 subject to recall >= gamma",
            options=RecallThresholdOptions,
            paper=PAPER,
        )
    )
