"""ISIC 2018 Task 3 scored as the challenge scores it: score weights, ISIC_0035068, and the
challenge's metric set, against numbers the official scorer produced on a committed fixture
(``scripts/isic_official_scores.py`` made them, in its own environment: the scorer needs pandas < 3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.data import isic_adapter as I
from dermbench.errors import DataError
from dermbench.evaluation.challenge import CATEGORY_SCORES, challenge_report
from dermbench.evaluation.metrics import classification_report
from dermbench.testing import run_tiny

FIXTURE = Path(__file__).parent / "fixtures" / "isic_challenge"
OFFICIAL = json.loads((FIXTURE / "official_scores.json").read_text())
CLASSES = list(I.ISIC_CLASSES)


def isic_folder(tmp_path: Path, truth: str) -> Path:
    """The fixture's ground truth beside one small image per row, as the challenge lays it out."""
    root = tmp_path / "isic"
    (root / "gt").mkdir(parents=True)
    shutil.copy(FIXTURE / truth, root / "gt" / truth)
    images = root / "ISIC2018_Task3_Test_Input"
    images.mkdir()
    for i, image in enumerate(pd.read_csv(FIXTURE / truth)["image"]):
        Image.new("RGB", (12, 9), (i % 256, 80, 160)).save(images / f"{image}.jpg")
    return root


def kept_predictions(records) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the fixture's predicted probabilities of the rows the adapter kept, in ISIC order."""
    pred = pd.read_csv(FIXTURE / "predictions.csv").set_index("image").loc[records.frame["image_id"]]
    y = np.array([CLASSES.index(c) for c in records.frame["label"]])
    return y, pred[CLASSES].to_numpy()


@pytest.mark.parametrize("truth", ["ground_truth.csv", "ground_truth_weighted.csv"])
def test_the_adapter_leaves_out_what_the_official_scorer_weighs_zero(tmp_path, truth):
    table = pd.read_csv(FIXTURE / truth)
    zero = set(table["image"][table.get("score_weight", pd.Series(1.0, index=table.index)) == 0])
    records = I.load_isic2018(I.Isic2018Options(), str(isic_folder(tmp_path, truth)))
    assert set(records.excluded["images"]) == zero | {"ISIC_0035068"}
    assert records.excluded["n"] == len(zero | {"ISIC_0035068"})
    assert len(records) == len(table) - records.excluded["n"]
    assert not set(records.frame["image_id"]) & set(records.excluded["images"])


@pytest.mark.parametrize("truth", ["ground_truth.csv", "ground_truth_weighted.csv"])
def test_the_challenge_metric_set_equals_the_official_scorer(tmp_path, truth):
    official = OFFICIAL[truth]
    records = I.load_isic2018(I.Isic2018Options(), str(isic_folder(tmp_path, truth)))
    ours = challenge_report(*kept_predictions(records), CLASSES)
    assert ours["balanced_accuracy"] == pytest.approx(official["aggregate"]["balanced_accuracy"], abs=1e-12)
    for key in CATEGORY_SCORES:
        for c in CLASSES:
            assert ours["per_category"][c][key] == pytest.approx(
                official["per_category"][key][c], abs=1e-12
            ), (key, c)
        assert ours["macro_average"][key] == pytest.approx(official["macro_average"][key], abs=1e-12), key


def test_the_core_macro_auc_is_the_official_one_and_ties_are_what_separates_balanced_accuracy(tmp_path):
    """The core scores argmax decisions; the scorer calls a shared maximum "undecided". The fixture
    has six rows with a shared maximum: without them both balanced accuracies agree."""
    records = I.load_isic2018(I.Isic2018Options(), str(isic_folder(tmp_path, "ground_truth.csv")))
    y, probs = kept_predictions(records)
    core = classification_report(y, probs, CLASSES)
    assert core["macro_auc"] == pytest.approx(OFFICIAL["ground_truth.csv"]["macro_average"]["auc"], abs=1e-12)
    tied = (probs == probs.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.sum() == 6
    untied = classification_report(y[~tied], probs[~tied], CLASSES)["balanced_accuracy"]
    assert untied == pytest.approx(challenge_report(y[~tied], probs[~tied], CLASSES)["balanced_accuracy"])


def test_a_weight_other_than_0_or_1_names_its_row(tmp_path):
    root = isic_folder(tmp_path, "ground_truth_weighted.csv")
    csv = root / "gt" / "ground_truth_weighted.csv"
    table = pd.read_csv(csv)
    table.loc[9, "score_weight"] = 0.5
    table.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"ground_truth_weighted.csv: line 11: score_weight is '0.5'"):
        I.load_isic2018(I.Isic2018Options(), str(root))


def test_a_missing_image_after_a_left_out_row_is_named_by_its_own_line(tmp_path):
    root = isic_folder(tmp_path, "ground_truth.csv")
    table = pd.read_csv(root / "gt" / "ground_truth.csv")
    after = int(np.flatnonzero(table["image"] == "ISIC_0035068")[0]) + 3
    (root / "ISIC2018_Task3_Test_Input" / f"{table['image'][after]}.jpg").unlink()
    with pytest.raises(
        DataError, match=rf"ground_truth.csv: line {after + 2}: image file {table['image'][after]}.jpg"
    ):
        I.load_isic2018(I.Isic2018Options(), str(root))


def test_a_run_scores_isic_test_data_by_the_challenge_set_and_records_what_it_left_out(tmp_path):
    root = isic_folder(tmp_path, "ground_truth.csv")
    record = run_tiny(tmp_path, task="ham7", test_data={"isic2018": str(root)}, epochs=1, synthetic_n=140)
    (name,) = [k for k in record["metrics"] if "isic2018" in k]
    metrics = record["metrics"][name]
    assert metrics["n"] == 399 and metrics["challenge"]["n"] == 399
    (source,) = [s for s in record["data"]["datasets"] if s["name"] == "isic2018"]
    assert source["excluded"]["images"] == ["ISIC_0035068"] and source["n_used"] == 399
    assert "challenge" not in record["metrics"]["test"]  # the synthetic split is no challenge's data
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("record.json")]
    saved = pd.read_csv(run_dir / record["predictions"][name])
    assert "ISIC_0035068" not in set(saved["image_id"])
    probs = saved[[f"p_{c}" for c in record["task"]["classes"]]].to_numpy()
    again = challenge_report(saved["label"].to_numpy(), probs, record["task"]["classes"])
    assert metrics["challenge"]["balanced_accuracy"] == pytest.approx(again["balanced_accuracy"])


def test_the_method_page_shows_the_challenge_metrics_of_the_challenges_split(tmp_path):
    """The run's page has the challenge block of the ISIC split (its primary score and the macro
    averages), and none for the synthetic test split, which is no challenge's data."""
    import re

    from dermbench.leaderboard import build_report
    from dermbench.leaderboard.generic import cell

    root = isic_folder(tmp_path, "ground_truth.csv")
    record = run_tiny(tmp_path, task="ham7", test_data={"isic2018": str(root)}, epochs=1, synthetic_n=140)
    (name,) = [k for k in record["metrics"] if "isic2018" in k]
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("record.json")]
    html = build_report(run_dir, tmp_path / "page").read_text()
    assert 'id="challenge"' in html
    captions = re.findall(r"<caption>([^<]*challenge&#39;s metrics[^<]*)</caption>", html)
    assert captions and all(f", {name}: the isic challenge" in c for c in captions)
    assert not [c for c in captions if ", test: " in c]
    ours = record["metrics"][name]["challenge"]
    assert f"<td>balanced_accuracy</td><td>{cell(ours['balanced_accuracy'])}</td>" in html
    assert f"<td>{cell(ours['macro_average']['auc'])}</td>" in html
