"""Dataset chains: labelled source datasets a method trains on before (or beside) the task's own.

``--chain NAME=PATH`` (repeatable, in order) or ``chain = ["NAME=PATH", ...]`` in a config file
names them. NAME is a registered dataset adapter, or ``ALIAS:ADAPTER`` to use one adapter twice
(two manifests, say); the dataset's options are ``--opt data.NAME.OPTION=...`` under that name.
Each source's labels are mapped into the task through the task file's mappings; labels it cannot
map are dropped and counted. Validation and test come from the target alone: a source image that
is one of the held-out images, by id or by its decoded pixels (the same photograph shipped in two
datasets), is removed and counted before any training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.errors import ConfigError


@dataclass(frozen=True)
class ChainSource:
    name: str  # the dataset's name in the run (the alias, else the adapter)
    adapter: str
    path: str | None  # None: the default dataset (the generated sample), which needs none

    @property
    def spec(self) -> str:
        head = self.name if self.name == self.adapter else f"{self.name}:{self.adapter}"
        return head if self.path is None else f"{head}={self.path}"


def parse_chain(items: tuple[str, ...] | list[str], target: dict[str, str] | Any) -> list[ChainSource]:
    """The chain's sources in order; malformed items, repeats (a cycle) and the target itself are
    errors naming the item."""
    sources: list[ChainSource] = []
    for item in items:
        head, sep, path = str(item).partition("=")
        name, _, adapter = head.strip().partition(":")
        adapter = adapter.strip() or name
        name = name.strip()
        if not name or not adapter or (sep and not path.strip()):
            raise ConfigError(f"--chain {item!r}: expected NAME=PATH or ALIAS:ADAPTER=PATH")
        src = ChainSource(name, adapter, path.strip() if sep else None)
        if any(s.name == name for s in sources):
            raise ConfigError(
                f"--chain {item!r}: dataset {name!r} is already in the chain (a chain visits each dataset once; "
                f"use ALIAS:ADAPTER to chain two datasets read by one adapter)"
            )
        if _is_target(src, target):
            raise ConfigError(f"--chain {item!r}: {name!r} is the task's own training data (the chain's end)")
        sources.append(src)
    return sources


def _is_target(src: ChainSource, target: dict[str, str]) -> bool:
    if src.name not in target or src.path is None:
        return False
    return Path(target[src.name]).resolve() == Path(src.path).resolve()


def check_adapters(sources: list[ChainSource], registries: Any, target: dict[str, str]) -> None:
    """Every adapter exists; only the default dataset (the generated sample) goes without a path,
    and when the run trains on it, it is the target and cannot be a source under its own name."""
    known = set(registries.datasets.names())
    default = registries.default_of("datasets")
    for src in sources:
        if src.adapter not in known:
            raise ConfigError(
                f"--chain {src.spec!r}: unknown dataset {src.adapter!r} (known: {', '.join(sorted(known))})"
            )
        if src.path is None and src.adapter != default:
            raise ConfigError(f"--chain {src.spec!r}: dataset {src.adapter!r} needs a path (NAME=PATH)")
        if not target and src.name == default:
            raise ConfigError(
                f"--chain {src.spec!r}: {src.name!r} is the task's own training data (the chain's end)"
            )


def raw_ids(frame: pd.DataFrame) -> pd.Series:
    """Image ids without the ``dataset:`` prefix a multi-source split gives them."""
    ids = frame["image_id"].astype(str)
    if "dataset" not in frame.columns:
        return ids
    prefix = frame["dataset"].astype(str) + ":"
    return pd.Series(
        [i[len(p) :] if i.startswith(p) else i for i, p in zip(ids, prefix, strict=True)], index=frame.index
    )


def pixel_hashes(images: np.ndarray) -> list[str]:
    """One hash per decoded image (uint8 N x S x S x 3): equal pixels, equal hash."""
    return [hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() for img in images]
