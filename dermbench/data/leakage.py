"""Leakage: an image a run reads beside its training split that is one of the split's own images.

An external test set, an out-of-distribution set or a split file that holds images of the training,
validation or test split would score a model on what it was trained or selected on. Every such set
is compared with the run's splits by image id (within one dataset), by lesion (within one dataset)
and by decoded pixels (the same photograph under another name or in another dataset). Overlap is
an error naming the count and how to proceed; ``--allow-overlap`` scores anyway, records the counts
under ``data.overlap`` and flags the result ``overlaps_run_images``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dermbench.data.chain import pixel_hashes, raw_ids
from dermbench.errors import ConfigError

FLAG = "overlaps_run_images"


def _dataset_of(frame: pd.DataFrame, default: str) -> pd.Series:
    if "dataset" in frame.columns:
        return frame["dataset"].astype(str)
    return pd.Series(default, index=frame.index)


def _keys(frame: pd.DataFrame, dataset: str, column: str | None) -> pd.Series:
    """``dataset|id`` (or ``dataset|lesion``): ids only collide within one dataset."""
    values = raw_ids(frame) if column is None else frame[column].astype(str)
    if column is not None and "dataset" in frame.columns:
        prefix = frame["dataset"].astype(str) + ":"
        values = pd.Series(
            [v.removeprefix(p) for v, p in zip(values, prefix, strict=True)], index=frame.index
        )
    return _dataset_of(frame, dataset) + "|" + values


def overlap_counts(
    frame: pd.DataFrame, images: np.ndarray, dataset: str, splits: Mapping[str, Any]
) -> dict[str, Any]:
    """How many of the set's images are images of each run split, by id, lesion and pixels, and
    in all (``total``: images that match any split by any of them); {} when none."""
    ids = _keys(frame, dataset, None)
    lesions = _keys(frame, dataset, "group") if "group" in frame.columns else None
    hashes = pd.Series(pixel_hashes(images), index=frame.index)
    hit = np.zeros(len(frame), dtype=bool)
    out: dict[str, Any] = {}
    for name, split in splits.items():
        theirs = split.frame
        by_id = ids.isin(set(_keys(theirs, "", None))).to_numpy()
        by_lesion = np.zeros(len(frame), dtype=bool)
        if lesions is not None and "group" in theirs.columns:
            by_lesion = lesions.isin(set(_keys(theirs, "", "group"))).to_numpy()
        held = set(pixel_hashes(split.images.numpy())) if split.images is not None else set()
        by_pixels = hashes.isin(held).to_numpy()
        counts = {
            "by_id": int(by_id.sum()),
            "by_lesion": int(by_lesion.sum()),
            "by_pixels": int(by_pixels.sum()),
        }
        if any(counts.values()):
            out[name] = counts
        hit |= by_id | by_lesion | by_pixels
    if out:
        out["total"] = int(hit.sum())
    return out


def check_overlap(what: str, n: int, counts: dict[str, Any], allow: bool) -> dict[str, Any] | None:
    """The error for a set that holds the run's images, or (``allow``) the counts to record."""
    if not counts:
        return None
    detail = "; ".join(
        f"{split}: {c['by_id']} by id, {c['by_lesion']} by lesion, {c['by_pixels']} by pixels"
        for split, c in counts.items()
        if split != "total"
    )
    if not allow:
        raise ConfigError(
            f"{what}: {counts['total']} of its {n} images are images of this run's splits ({detail}); remove them "
            "from the set, or pass --allow-overlap to score it anyway (the record flags the result)"
        )
    return counts


def overlap_flag(counts: dict[str, Any]) -> dict[str, Any]:
    """The flag of a result scored on a set that overlaps the run's splits (``--allow-overlap``)."""
    splits = ", ".join(k for k in counts if k != "total")
    return {
        "code": FLAG,
        "message": f"{counts['total']} images of this set are images of the run's splits ({splits}): "
        "scored with --allow-overlap",
        "overlap": counts,
    }
