"""Subgroup audit and explanations of a whole run (binary task, synthetic sample)."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import recall_score, roc_auc_score

from dermbench.errors import ConfigError
from dermbench.testing import run_tiny


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    record = run_tiny(
        out, task="binary", epochs=2, synthetic_n=400, groups=("ita", "sex", "fitzpatrick"), ensemble="none"
    )
    (path,) = list((out / "runs").rglob("record.json"))
    return record, path.parent


def test_per_group_numbers_equal_sklearn_on_the_saved_predictions(audited):
    record, run_dir = audited
    preds = pd.read_csv(run_dir / record["predictions"]["test"])
    t = record["fairness"]["threshold"]
    assert t == record["metrics"]["val"]["operating_point"]["threshold"]
    y = (preds["label"] == 1).to_numpy()
    called = (preds["p_malignant"] >= t).to_numpy()
    light = (preds["ita"] > 28).to_numpy()
    rows = {g["group"]: g for g in record["fairness"]["splits"]["test"]["groupings"]["ita"]["groups"]}
    for name, mask in (("light", light), ("dark", ~light)):
        if y[mask].sum() == 0:
            assert rows[name]["recall"] is None
            continue
        assert rows[name]["n"] == mask.sum()
        assert rows[name]["recall"] == pytest.approx(recall_score(y[mask], called[mask]))
        if 0 < y[mask].sum() < mask.sum():
            assert rows[name]["auc"] == pytest.approx(roc_auc_score(y[mask], preds["p_malignant"][mask]))
    assert set(record["fairness"]["splits"]["test"]["groupings"]) == {"ita", "sex", "fitzpatrick"}
    assert {"global", "per_group"} <= set(record["fairness"]["recalibration"])


def test_measured_ita_tracks_the_generators_skin_tone(audited):
    record, run_dir = audited
    preds = pd.read_csv(run_dir / record["predictions"]["test"])
    rho = preds[["ita", "ita_true"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.8


def test_explain_writes_overlays_and_lists_every_false_negative(audited):
    from dermbench.explain.run import explain_run

    record, run_dir = audited
    updated = explain_run(run_dir, n=2, progress=False, log=lambda *a: None)
    cams = updated["artifacts"]["cams"]
    assert cams and all((run_dir / c["path"]).is_file() for c in cams)
    assert {c["category"] for c in cams} <= {"tp", "fp", "fn", "tn"}
    with Image.open(run_dir / cams[0]["path"]) as im:
        assert im.size[0] > 0
    preds = pd.read_csv(run_dir / record["predictions"]["test"])
    t = updated["error_analysis"]["threshold"]
    expected = set(preds.loc[(preds["label"] == 1) & (preds["p_malignant"] < t), "image_id"])
    assert {r["image_id"] for r in updated["error_analysis"]["false_negatives"]} == expected
    probs = [r["probability"] for r in updated["error_analysis"]["false_negatives"]]
    assert probs == sorted(probs)


def test_groups_need_a_decision_task(tmp_path):
    with pytest.raises(ConfigError, match="--groups needs a task with a positive class"):
        run_tiny(tmp_path, groups=("sex",))
    assert not list(tmp_path.rglob("record.json")), "must fail before any training"


def test_unknown_group_column_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no column 'hospital'"):
        run_tiny(tmp_path, task="binary", synthetic_n=300, groups=("hospital",))
    assert not list(tmp_path.rglob("record.json")), "must fail before any training"
