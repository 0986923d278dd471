"""SMOTE as a sampler: synthetic minority images from flattened pixels, through imbalanced-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dermbench.data.smote import smote_split
from dermbench.data.split_data import SplitData
from dermbench.errors import ConfigError
from dermbench.testing import run_tiny


def _split(counts: list[int], size: int = 8, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int64)
    images = np.stack([rng.integers(40 * c, 40 * c + 30, (size, size, 3)) for c in y]).astype(np.uint8)
    frame = pd.DataFrame(
        {"image_id": [f"i{i}" for i in range(len(y))], "group": [f"i{i}" for i in range(len(y))]}
    )
    return SplitData("train", torch.from_numpy(images), y, frame)


def test_smote_evens_the_class_counts_with_images_between_neighbours_of_one_class():
    split = _split([20, 6, 3])
    out, info = smote_split(split, ["a", "b", "c"], k_neighbors=5, seed=0)
    assert np.bincount(out.y).tolist() == [20, 20, 20]
    assert info["synthetic_images"] == 31 and info["k_neighbors"] == 2  # the smallest class has 3 images
    assert info["class_counts_after"] == {"a": 20, "b": 20, "c": 20}
    new = out.images[len(split) :].numpy()
    for c in (1, 2):  # every synthetic pixel lies inside the range of its class's real pixels
        real = split.images[torch.as_tensor(split.y == c)].numpy()
        made = new[out.y[len(split) :] == c]
        assert made.min() >= real.min() and made.max() <= real.max()
    assert out.frame["synthetic"].iloc[len(split) :].all() and torch.equal(
        out.images[: len(split)], split.images
    )
    again, _ = smote_split(split, ["a", "b", "c"], k_neighbors=5, seed=0)
    assert torch.equal(again.images, out.images)  # seeded: a resumed stage sees the same images


def test_smote_refuses_a_class_with_one_image():
    with pytest.raises(
        ConfigError, match="sampler smote: class 'c' has 1 training image; SMOTE needs at least 2"
    ):
        smote_split(_split([10, 5, 1]), ["a", "b", "c"], 5, 0)


def test_a_run_with_the_smote_sampler_trains_on_the_enlarged_set_and_records_it(tmp_path):
    record = run_tiny(tmp_path, sampler="smote", synthetic_n=120, epochs=1)
    (stage,) = record["resolved"]["stages"]
    counts = list(record["data"]["splits"]["train"]["class_counts"].values())
    assert stage["sampler"]["name"] == "smote"
    assert stage["sampler"]["synthetic_images"] == max(counts) * len(counts) - sum(counts)
    assert set(stage["sampler"]["class_counts_after"].values()) == {max(counts)}
    assert record["data"]["splits"]["train"]["n"] == sum(counts)  # the split itself is unchanged
