"""Segmentation metrics of binary lesion masks: IoU, Dice and the boundary F-score, per image and
as a mean with a bootstrap interval over images.

Definitions (docs/segmentation.md):

- **IoU** (Jaccard) = |P & T| / |P | T| and **Dice** = 2 |P & T| / (|P| + |T|) per image. When both
  the prediction and the truth are empty the image is a correct "no lesion": both are 1.0. When
  exactly one is empty, both are 0.0. (ISIC's scorer scores the same, ``binary_jaccard`` /
  ``binary_dice`` of ``isic-challenge-scoring``.)
- **Boundary F-score** (Csurka, Larlus and Perronnin, "What is a good evaluation measure for
  semantic segmentation?", BMVC 2013; the DAVIS contour measure, Perazzi et al., CVPR 2016): the
  boundary of a mask is its pixels with a 4-neighbour outside it; precision is the share of the
  predicted boundary within ``tolerance`` pixels (Euclidean) of the true boundary, recall the
  reverse, F their harmonic mean. Both empty: 1.0; one empty: 0.0.
- **Mean and interval**: the mean over images, and a percentile bootstrap interval from
  :func:`dermbench.evaluation.resample.resample_weights` (images, or whole groups, drawn with
  replacement), the resampler every other interval of dermbench uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from dermbench.errors import DataError
from dermbench.evaluation.resample import percentile_interval, resample_weights

BOUNDARY_TOLERANCE = 2  # pixels; DAVIS uses 0.8% of the image diagonal, about 2 px at 256 px


def _pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if p.shape != t.shape or p.ndim != 2:
        raise DataError(f"a predicted mask {p.shape} and its truth {t.shape} must be 2-d and of one size")
    return p, t


def iou(pred: Any, truth: Any) -> float:
    p, t = _pair(pred, truth)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred: Any, truth: Any) -> float:
    p, t = _pair(pred, truth)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def boundary(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` with a 4-neighbour outside it (the image edge counts as outside)."""
    inner = binary_erosion(mask, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]), border_value=0)
    return mask & ~inner


def boundary_f(pred: Any, truth: Any, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    p, t = _pair(pred, truth)
    bp, bt = boundary(p), boundary(t)
    if not bp.any() and not bt.any():
        return 1.0
    if not bp.any() or not bt.any():
        return 0.0
    to_truth = distance_transform_edt(~bt)  # distance of every pixel to the nearest true boundary pixel
    to_pred = distance_transform_edt(~bp)
    precision = float((to_truth[bp] <= tolerance).mean())
    recall = float((to_pred[bt] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


PER_IMAGE = {"iou": iou, "dice": dice, "boundary_f": boundary_f}


def per_image_scores(preds: Sequence[Any], truths: Sequence[Any]) -> dict[str, np.ndarray]:
    """Each metric of each (prediction, truth) pair."""
    if len(preds) != len(truths):
        raise DataError(f"{len(preds)} predicted masks for {len(truths)} true masks")
    return {
        name: np.array([fn(p, t) for p, t in zip(preds, truths, strict=True)])
        for name, fn in PER_IMAGE.items()
    }


def segmentation_report(
    preds: Sequence[Any], truths: Sequence[Any], n_boot: int = 1000, seed: int = 0, groups: Any = None
) -> dict[str, Any]:
    """Per metric: the mean over images, its bootstrap interval, and the per-image values."""
    scores = per_image_scores(preds, truths)
    n = len(preds)
    out: dict[str, Any] = {"n": n, "n_boot": n_boot, "empty_truth": int(sum(not np.any(t) for t in truths))}
    for name, values in scores.items():
        mean = float(values.mean()) if n else None
        interval = None
        if n and n_boot:
            draws = np.concatenate(
                [w @ values / w.sum(axis=1) for w in resample_weights(n, n_boot, seed, groups)]
            )
            interval = percentile_interval(draws, 0.05, mean).to_dict()
        out[name] = {"mean": mean, "ci95": interval, "per_image": values.round(6).tolist()}
    return out
