"""Task label mapping and lesion-grouped, stratified, seeded splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.data import adapters as A
from dermbench.data.records import DatasetRecords
from dermbench.data.splits import check_splits, kfold_splits, make_splits, split_fingerprint
from dermbench.data.synthetic import SyntheticOptions, load_synthetic
from dermbench.data.tasking import apply_task
from dermbench.errors import ConfigError
from dermbench.tasks import builtin_tasks

TASKS = {t.name: t for t in builtin_tasks()}


def records(labels: list[str], source: str, groups: list[str] | None = None) -> DatasetRecords:
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(len(labels))], "label": labels})
    frame["group"] = groups or frame["image_id"]
    return DatasetRecords("t", None, frame, source, lambda row: Image.new("RGB", (2, 2), (row, 0, 0)), "id")


def assert_grouped(frame: pd.DataFrame, splits: dict[str, np.ndarray]) -> None:
    seen: dict[str, str] = {}
    for name, idx in splits.items():
        for g in set(frame["group"].iloc[idx]):
            assert seen.setdefault(g, name) == name, f"group {g} in {seen[g]} and {name}"


def proportions(frame: pd.DataFrame, idx: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(frame["y"].to_numpy()[idx], minlength=k) / len(idx)


# --- apply_task -------------------------------------------------------------------------------


def test_apply_task_maps_drops_and_counts() -> None:
    rec = records(
        ["melanoma", "acne", "dermatofibroma", "acne", "keloid", "melanoma"], "fitzpatrick17k_label"
    )
    frame, dropped = apply_task(rec, TASKS["ham7"])
    assert dropped == {"acne": 2, "keloid": 1}
    assert frame["label"].tolist() == ["melanoma", "dermatofibroma", "melanoma"]
    assert frame["y"].tolist() == [TASKS["ham7"].index(c) for c in ("mel", "df", "mel")]
    assert frame["row"].tolist() == [0, 2, 5]
    assert list(frame.index) == [0, 1, 2]
    assert rec.read_image(int(frame["row"].iloc[2])).getpixel((0, 0))[0] == 5
    binary, dropped = apply_task(records(["MEL", "NV", "AKIEC"], "isic2018"), TASKS["binary"])
    assert binary["y"].tolist() == [1, 0, 1] and dropped == {}
    with pytest.raises(ConfigError, match="no label mapping for source 'nonsense'"):
        apply_task(records(["a"], "nonsense"), TASKS["ham7"])


# --- make_splits ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_frame() -> pd.DataFrame:
    return apply_task(load_synthetic(SyntheticOptions(n=1500)), TASKS["ham7"])[0]


def test_grouped_stratified_seeded(synthetic_frame: pd.DataFrame) -> None:
    f = synthetic_frame
    s = make_splits(f, seed=0)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(len(f)))
    assert_grouped(f, s)
    sizes = {k: len(v) / len(f) for k, v in s.items()}
    assert sizes == pytest.approx({"train": 0.7, "val": 0.15, "test": 0.15}, abs=0.02)
    overall = proportions(f, np.arange(len(f)), 7)
    for idx in s.values():
        assert np.abs(proportions(f, idx, 7) - overall).max() < 0.02
    check_splits(f, s, TASKS["ham7"].classes)  # every class in every split, even df with 17 images
    again = make_splits(f, seed=0)
    assert all((again[k] == s[k]).all() for k in s)
    assert all(split_fingerprint(f, again[k]) == split_fingerprint(f, s[k]) for k in s)
    other = make_splits(f, seed=1)
    assert split_fingerprint(f, other["test"]) != split_fingerprint(f, s["test"])


def test_fingerprint_depends_on_membership_and_labels_not_order(synthetic_frame: pd.DataFrame) -> None:
    f = synthetic_frame
    idx = np.arange(10)
    fp = split_fingerprint(f, idx)
    assert split_fingerprint(f, idx[::-1]) == fp
    assert split_fingerprint(f, np.arange(1, 11)) != fp
    relabelled = f.assign(y=(f["y"] + 1) % 7)
    assert split_fingerprint(relabelled, idx) != fp
    assert len(fp) == 64


def test_other_fractions_and_bad_fractions(synthetic_frame: pd.DataFrame) -> None:
    s = make_splits(synthetic_frame, seed=3, fractions=(0.5, 0.25, 0.25))
    assert len(s["train"]) / len(synthetic_frame) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ConfigError, match="sum to 1"):
        make_splits(synthetic_frame, seed=0, fractions=(0.7, 0.2, 0.2))


def test_official_split_is_used_when_complete_and_val_carved_when_absent() -> None:
    labels = ["nv", "mel"] * 60
    frame = apply_task(records(labels, "ham10000_dx"), TASKS["ham7"])[0]
    frame["split"] = np.repeat(["train", "val", "test"], 40)
    s = make_splits(frame, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [40, 40, 40]
    assert (frame["split"].iloc[s["val"]] == "val").all()
    partial = frame.assign(split=frame["split"].where(frame.index > 3))
    assert len(make_splits(partial, seed=0)["train"]) == pytest.approx(84, abs=2)  # incomplete: own split
    assert len(make_splits(frame, seed=0, official=False)["val"]) == 18
    no_val = frame.assign(split=np.where(np.arange(120) < 100, "train", "test"))
    s = make_splits(no_val, seed=0)
    assert len(s["test"]) == 20 and (no_val["split"].iloc[s["val"]] == "train").all()
    assert len(s["val"]) == pytest.approx(100 * 0.15 / 0.85, abs=1)


def test_kfold_is_grouped_disjoint_and_stratified(synthetic_frame: pd.DataFrame) -> None:
    f = synthetic_frame
    folds = kfold_splits(f, 3, seed=0)
    held = [h for _, h in folds]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(f)))
    overall = proportions(f, np.arange(len(f)), 7)
    for train, h in folds:
        assert len(np.intersect1d(train, h)) == 0 and len(train) + len(h) == len(f)
        assert not set(f["group"].iloc[train]) & set(f["group"].iloc[h])
        assert np.abs(proportions(f, h, 7) - overall).max() < 0.02
    with pytest.raises(ConfigError, match="k >= 2"):
        kfold_splits(f, 1, seed=0)


def test_check_splits_names_the_empty_class_and_split() -> None:
    frame = apply_task(records(["nv"] * 30 + ["df"] * 2, "ham10000_dx"), TASKS["ham7"])[0]
    s = make_splits(frame, seed=0)
    classes = ["df", "nv"]
    frame = frame.assign(y=(frame["label"] == "nv").astype(int))
    with pytest.raises(
        ConfigError, match=r"class 'df' has no images in the (val|test) split \(train 2, val 0, test 0\)"
    ):
        check_splits(frame, s, classes)
    counts = check_splits(frame, s, classes, allow_empty=True)
    assert sum(c["df"] for c in counts.values()) == 2
    three = apply_task(records(["nv"] * 30 + ["df"] * 3, "ham10000_dx"), TASKS["ham7"])[0]
    counts = check_splits(three, make_splits(three, seed=0), TASKS["ham7"].classes, allow_empty=True)
    assert [c["df"] for c in counts.values()] == [1, 1, 1]  # a class of three lesions reaches every split


@pytest.mark.realdata
def test_real_ham10000_split_keeps_lesions_together(shared_data: Path) -> None:
    rec = A.load_ham10000(A.Ham10000Options(), str(shared_data / "ham10000"))
    frame, dropped = apply_task(rec, TASKS["ham7"])
    assert dropped == {} and len(frame) == 10015
    s = make_splits(frame, seed=0)
    assert_grouped(frame, s)
    overall = proportions(frame, np.arange(len(frame)), 7)
    for idx in s.values():
        assert np.abs(proportions(frame, idx, 7) - overall).max() < 0.02
    assert len(s["train"]) / len(frame) == pytest.approx(0.7, abs=0.01)
    counts = check_splits(frame, s, TASKS["ham7"].classes)
    assert counts["val"]["df"] >= 10
    s7 = make_splits(frame, seed=7)
    assert_grouped(frame, s7)
    assert split_fingerprint(frame, s7["val"]) != split_fingerprint(frame, s["val"])
    assert split_fingerprint(frame, make_splits(frame, seed=0)["val"]) == split_fingerprint(frame, s["val"])


@pytest.mark.realdata
def test_real_dermamnist_uses_the_official_split(shared_data: Path) -> None:
    rec = A.load_dermamnist(A.DermamnistOptions(), str(shared_data / "dermamnist"))
    frame, _ = apply_task(rec, TASKS["ham7"])
    s = make_splits(frame, seed=0)
    assert {k: len(v) for k, v in s.items()} == {"train": 7007, "val": 1003, "test": 2005}
    check_splits(frame, s, TASKS["ham7"].classes)


def test_group_size_does_not_decide_the_split():
    """Regression: ordering groups by size sent nearly every multi-image lesion to train."""
    from dermbench.data.splits import grouped_assignment

    rng = np.random.default_rng(0)
    sizes = np.where(rng.random(3000) < 0.3, 4, 1)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    y = np.repeat(rng.integers(0, 3, len(sizes)), sizes)
    part = grouped_assignment(y, groups, (0.7, 0.15, 0.15), seed=0)
    multi = np.repeat(sizes > 1, sizes)
    shares = [multi[part == p].mean() for p in range(3)]
    assert max(shares) - min(shares) < 0.05, shares


def test_real_ham10000_splits_share_multi_image_lesions_alike(shared_data):
    from dermbench.data.adapters import Ham10000Options, load_ham10000
    from dermbench.data.tasking import apply_task
    from dermbench.plugins import load_plugins

    task = load_plugins(autoload=False).registries.tasks.get("ham7")
    frame, _ = apply_task(load_ham10000(Ham10000Options(), str(shared_data / "ham10000")), task)
    multi = (frame.groupby("group")["image_id"].transform("count") > 1).to_numpy()
    idx = make_splits(frame, seed=0)
    shares = [multi[idx[s]].mean() for s in ("train", "val", "test")]
    assert max(shares) - min(shares) < 0.05, shares
