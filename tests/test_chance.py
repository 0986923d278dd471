"""Chance baselines: the two rules score what scikit-learn says they do, a model no better than
them is flagged and a model that learned is not, and every record and board carries them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from dermbench.evaluation.chance import (
    CODE,
    baseline_probs,
    baseline_threshold,
    chance_flag,
    chance_report,
    class_shares,
)
from dermbench.leaderboard.verify import record_folders, verify_run
from dermbench.testing import make_plugins, run_tiny

CLASSES = ["a", "b", "c", "d"]
RNG = np.random.default_rng(7)
Y_TRAIN = RNG.choice(4, size=3000, p=[0.6, 0.2, 0.15, 0.05])
Y_TEST = RNG.choice(4, size=2000, p=[0.6, 0.2, 0.15, 0.05])


def test_the_majority_rule_is_sklearns_prior_dummy():
    shares = class_shares(Y_TRAIN, 4)
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((len(Y_TRAIN), 1)), Y_TRAIN)
    probs = baseline_probs("majority", shares, len(Y_TEST))
    np.testing.assert_allclose(probs, dummy.predict_proba(np.zeros((len(Y_TEST), 1))))
    report = chance_report(Y_TEST, shares, CLASSES, {}, None)["majority"]
    pred = dummy.predict(np.zeros((len(Y_TEST), 1)))
    assert report["class"] == "a"
    assert report["macro_f1"] == pytest.approx(f1_score(Y_TEST, pred, average="macro", zero_division=0))
    assert report["accuracy"] == pytest.approx(accuracy_score(Y_TEST, pred))
    assert report["macro_auc"] == pytest.approx(0.5)


def test_the_stratified_rule_draws_by_the_training_shares_and_scores_as_sklearn_does():
    shares = class_shares(Y_TRAIN, 4)
    probs = baseline_probs("stratified", shares, 20000)
    np.testing.assert_allclose(probs.mean(axis=0), shares, atol=0.01)
    assert set(np.unique(probs)) == {0.0, 1.0}
    report = chance_report(Y_TEST, shares, CLASSES, {}, None)["stratified"]
    pred = baseline_probs("stratified", shares, len(Y_TEST)).argmax(axis=1)
    assert report["macro_f1"] == pytest.approx(f1_score(Y_TEST, pred, average="macro"))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TEST, pred))
    np.testing.assert_array_equal(
        baseline_probs("stratified", shares, 50), baseline_probs("stratified", shares, 50)
    )


def _report(y, classes, positive=None, constraint=None):
    shares = class_shares(Y_TRAIN if len(classes) == 4 else (Y_TRAIN == 0).astype(int), len(classes))
    th = {
        r: baseline_threshold(r, shares, y, classes, positive, constraint) for r in ("majority", "stratified")
    }
    return chance_report(y, shares, classes, th, positive)


def test_a_model_that_learned_nothing_is_flagged_and_one_that_learned_is_not():
    chance = _report(Y_TEST, CLASSES)
    noise = RNG.dirichlet(np.ones(4), size=len(Y_TEST))
    flag = chance_flag(Y_TEST, noise, None, chance, CLASSES, "macro_f1", None)
    assert flag["code"] == CODE and flag["difference"]["low"] <= 0
    learned = 0.5 * np.eye(4)[Y_TEST] + 0.5 * noise  # argmax mostly right
    assert chance_flag(Y_TEST, learned, None, chance, CLASSES, "macro_f1", None) is None


def test_calling_every_image_positive_is_no_better_than_chance_at_the_recall_constraint():
    y = (Y_TEST == 0).astype(int)  # positive "b" is class 1: 60% of images
    classes = ["a", "b"]
    chance = _report(y, classes, "b", 0.85)
    assert chance["majority"]["operating_point"]["positive_rate"] == 1.0  # constant scores: all positive
    everything = np.tile([0.1, 0.9], (len(y), 1))
    flag = chance_flag(y, everything, 0.5, chance, classes, "operating_point.f1", "b")
    assert flag is not None and flag["rule"] == "majority"
    good = np.stack([1 - y * 0.8 - 0.1, y * 0.8 + 0.1], axis=1)
    assert chance_flag(y, good, 0.5, chance, classes, "operating_point.f1", "b") is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("chance")
    run_tiny(out, epochs=1, synthetic_n=200, task="tiny3")
    (folder,) = record_folders([out / "runs"])
    return folder


def test_every_split_of_a_run_carries_its_chance_baselines_and_verify_checks_them(tiny_run, tmp_path):
    record = json.loads((tiny_run / "record.json").read_text())
    for split in ("train", "val", "test"):
        chance = record["metrics"][split]["chance"]
        assert chance["fitted_on"] == "train" and set(chance["class_shares"]) == set(
            record["task"]["classes"]
        )
        assert 0 <= chance["majority"]["macro_f1"] <= 1
    assert verify_run(tiny_run, make_plugins()) == []

    edited = tmp_path / "edited"
    shutil.copytree(tiny_run, edited)
    record["metrics"]["test"]["chance"]["stratified"]["macro_f1"] += 0.1
    (edited / "record.json").write_text(json.dumps(record))
    (problem,) = verify_run(edited, make_plugins())
    assert problem.startswith("metric test.chance.stratified.macro_f1 is ")


def test_a_flag_removed_from_or_added_to_a_record_is_refused(tiny_run, tmp_path):
    record = json.loads((tiny_run / "record.json").read_text())
    flags = record["metrics"]["test"]["flags"]
    if flags:
        record["metrics"]["test"]["flags"] = []
        expect = f"flag test.{flags[0]['code']} is raised by the predictions but missing"
    else:
        record["metrics"]["test"]["flags"] = [{"code": "one_class", "message": "invented"}]
        expect = "flag test.one_class is in the record but the predictions do not raise it"
    edited = tmp_path / "edited"
    shutil.copytree(tiny_run, edited)
    (edited / "record.json").write_text(json.dumps(record))
    assert any(p.startswith(expect) for p in verify_run(edited, make_plugins()))
