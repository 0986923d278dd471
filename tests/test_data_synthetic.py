"""The embedded synthetic sample: deterministic, imbalanced as asked, grouped, learnable."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score, recall_score

from dermbench.data.splits import make_splits
from dermbench.data.synthetic import HAM_COUNTS, SyntheticOptions, class_counts, load_synthetic
from dermbench.data.tasking import apply_task
from dermbench.errors import ConfigError
from dermbench.tasks import builtin_tasks

TASKS = {t.name: t for t in builtin_tasks()}


@pytest.fixture(scope="module")
def sample() -> tuple:
    start = time.perf_counter()
    rec = load_synthetic(SyntheticOptions(n=1500))
    images = np.stack([np.asarray(rec.read_image(i)) for i in range(len(rec))])
    print(f"synthetic: 1500 images at 64 px in {time.perf_counter() - start:.2f}s")
    return rec, images


def test_shape_and_columns(sample: tuple) -> None:
    rec, images = sample
    assert rec.synthetic and rec.path is None and rec.label_source == "ham10000_dx"
    assert images.shape == (1500, 64, 64, 3) and images.dtype == np.uint8
    assert rec.frame["image_id"].is_unique
    assert {"image_id", "label", "group", "skin_type", "ita", "sex", "age"} <= set(rec.frame.columns)


def test_deterministic_and_seeded(sample: tuple) -> None:
    rec, images = sample
    again = load_synthetic(SyntheticOptions(n=1500))
    assert again.identity == rec.identity
    assert again.frame.equals(rec.frame)
    for row in (0, 17, 1499):
        assert (np.asarray(again.read_image(row)) == images[row]).all()
    other = load_synthetic(SyntheticOptions(n=1500, seed=1))
    assert other.identity != rec.identity
    assert not other.frame["label"].equals(rec.frame["label"])
    assert load_synthetic(SyntheticOptions(n=1500, image_size=32)).identity != rec.identity


def test_class_counts_follow_ham_priors(sample: tuple) -> None:
    rec, _ = sample
    counts = rec.frame["label"].value_counts().to_dict()
    total = sum(HAM_COUNTS.values())
    for cls, c in HAM_COUNTS.items():
        assert abs(counts[cls] - 1500 * c / total) <= 1, cls
    assert sum(counts.values()) == 1500


def test_task_priors_and_small_samples_keep_every_class() -> None:
    task = TASKS["dermai13"]
    rec = load_synthetic(SyntheticOptions(n=240, label_source="dermai13", priors=dict(task.synthetic_priors)))
    frame, dropped = apply_task(rec, task)
    assert dropped == {} and len(frame) == 240
    counts = frame["label"].value_counts()
    assert set(counts.index) == set(task.classes) and counts.min() >= 6
    assert counts.idxmax() == "SebKer"  # the largest prior
    assert class_counts({"a": 1, "b": 1, "c": 98}, 100) == {"a": 6, "b": 6, "c": 88}


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="label source 'dermai13' needs option priors"):
        load_synthetic(SyntheticOptions(label_source="dermai13"))
    with pytest.raises(ConfigError, match="synthetic.n=20 is too small for 7 classes"):
        load_synthetic(SyntheticOptions(n=20))
    with pytest.raises(ConfigError, match="weight of 'a' is 'x'"):
        load_synthetic(SyntheticOptions(priors={"a": "x"}))
    assert load_synthetic(SyntheticOptions(n=40, priors="nv=3,mel=1")).frame[
        "label"
    ].value_counts().to_dict() == {
        "nv": 30,
        "mel": 10,
    }


def test_lesion_groups_are_small_pure_and_similar(sample: tuple) -> None:
    rec, images = sample
    f = rec.frame
    sizes = f.groupby("group").size()
    assert sizes.min() >= 1 and sizes.max() <= 3 and (sizes > 1).sum() > 100
    assert (f.groupby("group")["label"].nunique() == 1).all()
    assert (f.groupby("group")["skin_type"].nunique() == 1).all()
    pairs = [g.index[:2] for _, g in f.groupby("group") if len(g) > 1][:100]
    x = images.astype(float)
    same = np.mean([np.abs(x[a] - x[b]).mean() for a, b in pairs])
    rng = np.random.default_rng(0)
    other = np.mean([np.abs(x[a] - x[b]).mean() for a, b in rng.integers(0, 1500, (100, 2)) if a != b])
    assert same < 0.6 * other


def test_skin_tones_span_types_and_match_ita(sample: tuple) -> None:
    rec, images = sample
    f = rec.frame
    assert set(f["skin_type"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert f["ita"].max() > 50 and f["ita"].min() < -30
    # lighter types have higher ITA, and the background (a corner) is brighter
    assert spearmanr(f["skin_type"], f["ita"]).statistic < -0.9
    corner = images[:, :6, :6].astype(float).mean(axis=(1, 2, 3))
    assert spearmanr(f["ita"], corner).statistic > 0.8


def test_cues_are_learnable_but_not_trivial(sample: tuple) -> None:
    """A linear model on colour statistics beats chance by far but is far from perfect, and the
    rarest classes are recognised worse than the majority."""
    rec, images = sample
    x = images.astype(float) / 255
    centre = x[:, 16:48, 16:48]
    border = np.concatenate([x[:, :8].reshape(len(x), -1, 3), x[:, -8:].reshape(len(x), -1, 3)], axis=1)
    feats = np.concatenate([centre.mean((1, 2)), centre.std((1, 2)), border.mean(1)], axis=1)
    frame, _ = apply_task(rec, TASKS["ham7"])
    splits = make_splits(frame, seed=0)
    y = frame["y"].to_numpy()
    clf = LinearDiscriminantAnalysis().fit(feats[splits["train"]], y[splits["train"]])
    pred = clf.predict(feats[splits["test"]])
    bacc = balanced_accuracy_score(y[splits["test"]], pred)
    assert 2 / 7 < bacc < 0.9
    recall = dict(
        zip(TASKS["ham7"].classes, recall_score(y[splits["test"]], pred, average=None), strict=True)
    )
    assert recall["nv"] > np.mean([recall["df"], recall["vasc"], recall["akiec"]])
