"""Selective prediction: the risk-coverage curve and AURC as FD-Shifts defines them."""

from __future__ import annotations

import numpy as np
import pytest

from dermbench.evaluation.selective import aurc, ideal_aurc, msp_selective, risk_coverage


def _fd_shifts_loop(conf, correct):
    """The definition, written as a loop over the images from the least confident."""
    res = 1 - np.asarray(correct, dtype=float)
    n, order = len(res), np.argsort(conf, kind="stable")
    cov, err = n, res.sum()
    covs, risks, weights, tmp = [1.0], [err / n], [], 0
    for i in range(n - 1):
        cov -= 1
        err -= res[order[i]]
        tmp += 1
        if i == 0 or conf[order[i]] != conf[order[i - 1]]:
            covs.append(cov / n)
            risks.append(err / (n - 1 - i))
            weights.append(tmp / n)
            tmp = 0
    if tmp > 0:
        covs.append(0.0)
        risks.append(risks[-1])
        weights.append(tmp / n)
    return covs, risks, sum((risks[i] + risks[i + 1]) * 0.5 * weights[i] for i in range(len(weights)))


def test_aurc_by_hand_on_four_predictions():
    # scores 0.1 (wrong), 0.4 (right), 0.6 (wrong), 0.9 (right)
    conf, correct = np.array([0.9, 0.1, 0.6, 0.4]), np.array([1, 0, 0, 1])
    curve = risk_coverage(conf, correct)
    # coverage 1: 2/4 wrong; remove 0.1 -> 1/3; remove 0.4 -> 1/2; remove 0.6 -> 0/1 (the most
    # confident image is never removed), so the points are (1, .5), (.75, 1/3), (.5, .5), (.25, 0)
    assert np.allclose(curve.coverages, [1, 0.75, 0.5, 0.25])
    assert np.allclose(curve.risks, [0.5, 1 / 3, 0.5, 0.0])
    by_hand = 0.25 * ((0.5 + 1 / 3) / 2 + (1 / 3 + 0.5) / 2 + (0.5 + 0.0) / 2)
    assert curve.aurc == pytest.approx(by_hand)


@pytest.mark.parametrize("seed", range(5))
def test_aurc_equals_the_loop_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 6, 40) / 5  # many ties
    correct = rng.random(40) < 0.7
    covs, risks, area = _fd_shifts_loop(conf, correct)
    curve = risk_coverage(conf, correct)
    assert np.allclose(curve.coverages, covs) and np.allclose(curve.risks, risks)
    assert aurc(conf, correct) == pytest.approx(area)


def test_a_perfect_score_reaches_the_ideal_aurc_and_a_reversed_one_is_worse():
    correct = np.array([1] * 30 + [0] * 10)
    perfect = np.where(correct == 1, 1.0, 0.0) + np.linspace(0, 0.01, 40)
    assert aurc(perfect, correct) < aurc(-perfect, correct)
    assert ideal_aurc(0.0) == 0.0 and 0 < ideal_aurc(0.25) < 0.25
    summary = msp_selective(np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.03, np.array([0, 1, 2, 1]))
    assert summary["score"] == "max_softmax" and summary["error_rate"] == 0.25
    assert summary["curve"]["coverage"][0] == 1.0 and summary["curve"]["risk"][0] == 0.25


def test_every_run_records_the_max_softmax_risk_coverage_of_each_split(tmp_path):
    import pandas as pd

    from dermbench.testing import run_tiny

    record = run_tiny(tmp_path, epochs=1, synthetic_n=120)
    sel = record["metrics"]["test"]["selective"]["max_softmax"]
    run_dir = next((tmp_path / "runs").rglob("record.json")).parent
    preds = pd.read_csv(run_dir / record["predictions"]["test"])
    probs = preds[[c for c in preds.columns if c.startswith("p_")]].to_numpy()
    correct = probs.argmax(1) == preds["label"].to_numpy()
    assert sel["aurc"] == pytest.approx(aurc(probs.max(1), correct), abs=1e-6)
    assert sel["n"] == len(preds) == record["metrics"]["test"]["n"]
    from dermbench.cli.textreport import format_record

    assert "aurc (max softmax)" in format_record(record)
