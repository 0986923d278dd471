"""Reference numbers from the ISIC challenge's official scorer, for dermbench's tests.

Writes a seeded ISIC 2018 Task 3 fixture (``tests/fixtures/isic_challenge/``): a ground truth
that contains ISIC_0035068, the same ground truth with a ``score_weight`` column, and predicted
probabilities with a few rows whose maximum is shared; then, where the scorer is importable,
scores both with it and saves its output beside them (``official_scores.json``).

The scorer (``isic-challenge-scoring``, 5.6.0 on Python 3.11; later releases need Python 3.13)
needs pandas < 3, so it runs in its own environment:

    python3 -m venv /tmp/isicenv
    /tmp/isicenv/bin/pip install "isic-challenge-scoring==5.6.0" "pandas<3"
    /tmp/isicenv/bin/python scripts/isic_official_scores.py
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
PRIOR = (0.11, 0.67, 0.05, 0.03, 0.11, 0.015, 0.015)  # roughly ISIC 2018's test mix
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "isic_challenge"
N, TIES, ZEROED = 400, 6, 5


def make_fixture(seed: int = 2018) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    # Sorted ids, as the official test ground truth lists them, with ISIC_0035068 (i = 272) among
    # them: the scorer sorts the probabilities by image but not the weights, so its weights are
    # aligned only when the ground truth comes sorted.
    images = [f"ISIC_{34524 + 2 * i:07d}" for i in range(N)]
    y = rng.choice(len(CLASSES), size=N, p=np.asarray(PRIOR) / sum(PRIOR))
    y[: len(CLASSES)] = np.arange(len(CLASSES))  # every category present
    logits = rng.normal(0.0, 1.0, (N, len(CLASSES)))
    logits[np.arange(N), y] += rng.uniform(0.0, 3.0, N)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for i in range(len(CLASSES), len(CLASSES) + TIES):  # two categories share the maximum
        top = np.argsort(probs[i])[-2:]
        probs[i, top] = probs[i, top].mean()
    truth = pd.DataFrame({"image": images, **{c: (y == j).astype(float) for j, c in enumerate(CLASSES)}})
    weighted = truth.assign(score_weight=1.0, validation_weight=1.0)
    weighted.loc[rng.choice(np.arange(20, N), ZEROED, replace=False), "score_weight"] = 0.0
    predictions = pd.DataFrame({"image": images, **{c: probs[:, j] for j, c in enumerate(CLASSES)}})
    return truth, weighted, predictions


def official_scores(truth: Path, predictions: Path) -> dict:
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    score = ClassificationScore.from_file(truth, predictions, ClassificationMetric.BALANCED_ACCURACY)
    return score.to_dict(rocs=False)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    truth, weighted, predictions = make_fixture()
    truth.to_csv(OUT / "ground_truth.csv", index=False)
    weighted.to_csv(OUT / "ground_truth_weighted.csv", index=False)
    predictions.to_csv(OUT / "predictions.csv", index=False)
    try:
        import isic_challenge_scoring
    except ImportError:
        print(
            "isic_challenge_scoring is not importable here: fixture written, scores not (see the docstring)"
        )
        return 1
    scores = {
        "scorer": f"{isic_challenge_scoring.__name__} {version('isic-challenge-scoring')}, pandas {pd.__version__}",
        "command": "/tmp/isicenv/bin/python scripts/isic_official_scores.py",
        "ground_truth.csv": official_scores(OUT / "ground_truth.csv", OUT / "predictions.csv"),
        "ground_truth_weighted.csv": official_scores(
            OUT / "ground_truth_weighted.csv", OUT / "predictions.csv"
        ),
    }
    (OUT / "official_scores.json").write_text(json.dumps(scores, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT / 'official_scores.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
