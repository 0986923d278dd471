"""Which of a run's settings make what it computes: shared by run ids and leaderboard variants.

Two kinds of setting are left out of both. ``NON_IDENTITY``: where and how a run executes, never
what it computes (results are identical either way). ``LATER_SETTINGS``: settings added after the
first runs were recorded, each at the value that reproduces what runs made before it did. A
record made before a setting existed lacks it, so leaving the setting out at that value keeps
older run ids as they were, and puts an older record in the same leaderboard entry as newer
records at that value. This module imports nothing heavy: the leaderboard reads it without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# where and how a run executes: never part of what it computes
NON_IDENTITY = ("device", "out", "cache_dir", "num_workers", "image_memory", "task_file")


def _empty(value: Any) -> bool:
    return not value


# setting -> is this value what runs did before the setting existed?
LATER_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "pretrain_data": _empty,
    "allow_overlap": _empty,
    "task_sha256": lambda v: v is None,  # a registered task, as every run before task files
    "chain": _empty,
    "resize": lambda v: v == "bilinear",
    "gate": _empty,
    "ood_data": _empty,
    "max_per_class": _empty,
    "near_duplicates": lambda v: v == "off",
    "split_fractions": lambda v: v is not None and tuple(v) == (0.7, 0.15, 0.15),
    "split_file": lambda v: v is None,
    "precision": lambda v: v == "auto",  # before it: fp32 on the CPU, bf16 on CUDA, as auto chooses there
    "head_init": lambda v: v == "model",  # before it: every new classifier started as its architecture's
}


# the value a later setting had before it existed, where that is one value (a label shows it)
FORMER_VALUES = {"resize": "bilinear", "near_duplicates": "off", "precision": "auto", "head_init": "model"}


def as_before(key: str, value: Any) -> bool:
    """True when ``value`` of the setting ``key`` is what runs did before the setting existed."""
    rule = LATER_SETTINGS.get(key)
    return rule is not None and rule(value)


def normalised(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each setting that does nothing under the others read as its old value:
    ``head_init`` concerns a new classifier over loaded weights, so from random weights (the whole
    model the architecture's own) it is ``model``, as before it existed."""
    if config.get("init") == "random" and "head_init" in config:
        return {**config, "head_init": "model"}
    return config
