"""Selective prediction: a classifier that may abstain, scored by its risk-coverage trade-off.

A confidence score ranks the images; keeping those above a threshold gives a **coverage** (the
share kept) and a **selective risk** (the error rate among them). The risk-coverage curve sweeps
the threshold over every distinct score; its area (AURC) is low when the errors are the images
the score is least sure of. The definitions follow FD-Shifts (Jaeger et al., "A Call to Reflect
on Evaluation Practices for Failure Detection in Image Classification", ICLR 2023):

- the curve starts at coverage 1 and removes the least confident image, one at a time, adding a
  point whenever the removed image's score differs from the one removed before it (ties leave
  together), and ends at coverage 0 with the last risk;
- AURC is the trapezoidal area under that curve, each segment weighted by the share of images it
  removes. FD-Shifts prints it x 1000; dermbench records the plain fraction (0 to 1).
- e-AURC subtracts the AURC of the ideal score for the same error rate:
  ``r + (1 - r) * ln(1 - r)``.

Any score works: the classifier's own confidence (maximum softmax probability, the baseline every
gate is compared with) or a gate's (an autoencoder's reconstruction PSNR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RiskCoverage:
    coverages: np.ndarray  # from 1 down to 0
    risks: np.ndarray  # the selective risk at each coverage
    weights: np.ndarray  # share of images removed between consecutive points (len = points - 1)

    @property
    def aurc(self) -> float:
        return float(np.sum((self.risks[:-1] + self.risks[1:]) * 0.5 * self.weights))


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """The risk-coverage curve of ``confidence`` (higher: surer) for predictions marked ``correct``."""
    confidence = np.asarray(confidence, dtype=float)
    residuals = 1.0 - np.asarray(correct, dtype=float)
    n = len(residuals)
    if n == 0 or len(confidence) != n:
        raise ValueError(f"risk_coverage: {len(confidence)} scores for {n} predictions")
    order = np.argsort(confidence, kind="stable")
    conf, res = confidence[order], residuals[order]
    errors_left = res.sum() - np.cumsum(res)[:-1]  # after removing images 0..i
    risks_after = errors_left / (n - 1 - np.arange(n - 1))
    keep = np.ones(n - 1, dtype=bool)
    keep[1:] = conf[1:-1] != conf[:-2]  # a point when the removed score differs from the previous
    idx = np.flatnonzero(keep)
    coverages = [1.0, *((n - 1 - idx) / n)]
    risks = [res.sum() / n, *risks_after[idx]]
    removed = np.diff(np.concatenate([[-1], idx])) / n  # images removed up to each point
    weights = list(removed)
    tail = (n - 2 - idx[-1]) if len(idx) else 0  # images removed after the last point
    if tail > 0:
        coverages.append(0.0)
        risks.append(risks[-1])
        weights.append(tail / n)
    return RiskCoverage(np.asarray(coverages), np.asarray(risks), np.asarray(weights))


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    return risk_coverage(confidence, correct).aurc


def ideal_aurc(error_rate: float) -> float:
    """The AURC of a score that ranks every error below every correct prediction."""
    r = float(error_rate)
    return 0.0 if r <= 0 else (r if r >= 1 else r + (1 - r) * np.log(1 - r))


def selective_summary(confidence: np.ndarray, correct: np.ndarray, curve_points: int = 21) -> dict[str, Any]:
    """AURC, e-AURC and the curve at ``curve_points`` coverages (for plots and the record)."""
    curve = risk_coverage(confidence, correct)
    error = float(1.0 - np.mean(correct))
    grid = np.linspace(1.0, 0.0, curve_points)
    # the curve's risk at each grid coverage: that of its first point at or below it (the last
    # point's below the curve's smallest coverage)
    below = [np.flatnonzero(curve.coverages <= c + 1e-12) for c in grid]
    at = [float(curve.risks[b[0] if len(b) else -1]) for b in below]
    return {
        "aurc": curve.aurc,
        "e_aurc": curve.aurc - ideal_aurc(error),
        "error_rate": error,
        "n": int(len(correct)),
        "curve": {"coverage": [round(float(c), 4) for c in grid], "risk": at},
    }


def max_softmax(probs: np.ndarray) -> np.ndarray:
    """The classifier's own confidence: its largest class probability."""
    return np.asarray(probs).max(axis=1)


def msp_selective(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Selective prediction by the classifier's own confidence, on one split."""
    probs = np.asarray(probs)
    correct = probs.argmax(axis=1) == np.asarray(y)
    return {"score": "max_softmax", **selective_summary(max_softmax(probs), correct)}
