"""A method's stages laid out on a run's data: which stage trains on which images, in order.

A recipe with ``data="target"`` trains on the task's training split; ``data="chain"`` becomes
one stage per ``--chain`` dataset, in the chain's order (``source:ham10000`` ...); ``data="merged"``
trains once on the training split pooled with every chain dataset. The plan is fixed by the
method and the chain, both part of the run's identity, so a resumed run finds the same stage
at the same index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dermbench.components import Method, StageRecipe
from dermbench.data.split_data import SplitData, concat_splits
from dermbench.errors import ConfigError
from dermbench.tasks import Task

DATA_KINDS = ("target", "chain", "merged")


@dataclass(frozen=True)
class PlannedStage:
    recipe: StageRecipe
    train: SplitData
    dataset: str  # what it trains on, for the history rows: "ham10000", "fitzpatrick17k+ham10000"


def datasets_of(split: SplitData) -> str:
    if "dataset" not in split.frame.columns:
        return split.name
    return "+".join(dict.fromkeys(split.frame["dataset"].astype(str)))


def uses_chain(method: Method) -> bool:
    return any(r.data in ("chain", "merged") for r in method.stages)


def plan_stages(method: Method, train: SplitData, sources: list[SplitData]) -> list[PlannedStage]:
    plan: list[PlannedStage] = []
    for recipe in method.stages:
        if recipe.data not in DATA_KINDS:
            raise ConfigError(
                f"method {method.name!r}: stage {recipe.name!r} has data={recipe.data!r} "
                f"(expected one of {', '.join(DATA_KINDS)})"
            )
        if recipe.data != "target" and not sources:
            raise ConfigError(
                f"method {method.name!r} trains on source datasets (stage {recipe.name!r}, data={recipe.data}): "
                f"name at least one with --chain NAME=PATH"
            )
        if recipe.data == "target":
            plan.append(PlannedStage(recipe, train, datasets_of(train)))
        elif recipe.data == "chain":
            for src in sources:
                name = datasets_of(src)
                plan.append(PlannedStage(replace(recipe, name=f"{recipe.name}:{name}"), src, name))
        else:
            pooled = concat_splits("train", train, *sources)
            plan.append(PlannedStage(recipe, pooled, datasets_of(pooled)))
    return plan


def stage_summary(stage: PlannedStage, task: Task) -> dict[str, Any]:
    """The run record's account of one planned stage: its data and class counts."""
    counts = np.bincount(stage.train.y, minlength=task.num_classes).tolist()
    return {
        "stage": stage.recipe.name,
        "dataset": stage.dataset,
        "n_train": len(stage.train),
        "train_class_counts": dict(zip(task.classes, counts, strict=True)),
    }
