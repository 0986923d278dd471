"""Split fractions and a per-class cap (paper 002's ~83/10/7 split of at most N images a class)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermbench.data.prepare import capped_rows
from dermbench.errors import ConfigError
from dermbench.testing import run_tiny


def test_a_per_class_cap_keeps_whole_lesions_and_at_most_n_images_a_class():
    frame = pd.DataFrame(
        {"y": [0] * 60 + [1] * 10, "group": [f"g{i // 2}" for i in range(60)] + [f"h{i}" for i in range(10)]}
    )
    keep = capped_rows(frame, 20, seed=0)
    kept = frame.iloc[keep]
    assert kept["y"].value_counts().to_dict() == {0: 20, 1: 10}
    assert kept.groupby("group").size().eq(2).loc[lambda s: s.index.str.startswith("g")].all()
    assert np.array_equal(capped_rows(frame, 0, 0), np.arange(70))
    assert np.array_equal(capped_rows(frame, 20, 0), keep)


def test_a_run_splits_at_the_given_fractions_within_the_cap(tmp_path):
    record = run_tiny(
        tmp_path, synthetic_n=400, split_fractions=(0.83, 0.10, 0.07), max_per_class=60, epochs=1
    )
    splits = record["data"]["splits"]
    n = {s: splits[s]["n"] for s in ("train", "val", "test")}
    total = sum(n.values())
    assert all(
        sum(splits[s]["class_counts"][c] for s in n) <= 60 + 3 for c in splits["train"]["class_counts"]
    )
    assert n["train"] / total == pytest.approx(0.83, abs=0.05) and n["test"] / total == pytest.approx(
        0.07, abs=0.04
    )
    assert "83/10/7, at most 60 images a class" in record["data"]["split_protocol"]


@pytest.mark.parametrize(
    ("fractions", "message"), [((0.8, 0.3, 0.1), "summing to 1"), ((0.9, 0.1), "three positive")]
)
def test_bad_split_fractions_are_refused(tmp_path, fractions, message):
    with pytest.raises(ConfigError, match=message):
        run_tiny(tmp_path, split_fractions=fractions)
