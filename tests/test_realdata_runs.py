"""Runs on the real HAM10000 copy in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from dermbench.testing import run_tiny

pytestmark = pytest.mark.realdata

FAST = {"model": "tinycnn", "image_size": 32, "epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("real")


def _frames(work: Path, record: dict) -> dict[str, pd.DataFrame]:
    (rec,) = list((work / "runs").rglob(f"{record['run_id']}/record.json"))
    return {s: pd.read_csv(rec.parent / p) for s, p in record["predictions"].items()}


@pytest.mark.parametrize("task", ["ham7", "binary", "triage3"])
def test_real_ham10000_run(shared_data, work, task):
    ham = shared_data / "ham10000"
    record = run_tiny(work, task=task, data={"ham10000": str(ham)}, **FAST)
    assert record["status"] == "complete" and record["data"]["synthetic"] is False
    frames = _frames(work, record)
    meta = pd.read_csv(ham / "HAM10000_metadata.csv").set_index("image_id")
    # the training split is not saved as predictions: rebuild it and tie it to the record
    from dermbench.data.splits import make_splits, split_fingerprint
    from dermbench.data.tasking import apply_task
    from dermbench.plugins import load_plugins

    reg = load_plugins(autoload=False).registries
    frame, _ = apply_task(reg.datasets.get("ham10000").build({}, str(ham)), reg.tasks.get(task))
    idx = make_splits(frame, seed=record["config"]["split_seed"])
    for split in ("train", "val", "test"):
        assert split_fingerprint(frame, idx[split]) == record["data"]["splits"][split]["fingerprint"]
    assert set(frame["image_id"].iloc[idx["test"]]) == set(frames["test"]["image_id"])
    lesions = {s: set(meta.loc[frame["image_id"].iloc[i], "lesion_id"]) for s, i in idx.items()}
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    assert sum(s["n"] for k, s in record["data"]["splits"].items()) == 10015
    classes = record["task"]["classes"]
    for split, df in frames.items():
        probs = df[[f"p_{c}" for c in classes]].to_numpy()
        y = df["label"].to_numpy()
        m = record["metrics"][split]
        assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
        if len(classes) == 2:
            assert m["macro_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
        else:
            assert m["macro_auc"] == pytest.approx(
                roc_auc_score(y, probs, multi_class="ovr", average="macro")
            )
    if task in ("binary", "triage3"):
        op = record["metrics"]["test"]["operating_point"]
        assert op["threshold"] == record["metrics"]["val"]["operating_point"]["threshold"]


def test_dermai13_from_a_csv_manifest_of_real_images(shared_data, work):
    ham = shared_data / "ham10000"
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    sample = meta.groupby("dx").head(60)
    long_name = {"nv": "Nevus", "mel": "Malignant Melanoma", "bcc": "Basal Cell Carcinoma"}
    long_name |= {"akiec": "Actinic Keratosis", "df": "Dermatofibroma", "vasc": "Haemangioma"}
    long_name |= {"bkl": "Seborrheic Keratosis"}
    manifest = pd.DataFrame(
        {
            "image": [str(ham / "images" / f"{i}.jpg") for i in sample["image_id"]],
            "label": sample["dx"].map(long_name).to_numpy(),
            "lesion_id": sample["lesion_id"].to_numpy(),
            "sex": sample["sex"].to_numpy(),
        }
    )
    path = work / "dermai_manifest.csv"
    manifest.to_csv(path, index=False)
    record = run_tiny(
        work,
        task="dermai13",
        data={"manifest": str(path)},
        options={"data.manifest.label_source": "dermai13_long"},
        allow_empty_classes=True,
        **FAST,
    )
    assert record["status"] == "complete"
    counts = record["data"]["splits"]["train"]["class_counts"]
    assert counts["SLent"] == 0 and counts["Nev"] > 0
    assert record["metrics"]["test"]["per_class"]["SLent"]["recall"] is None
    assert np.isfinite(record["metrics"]["test"]["macro_f1"])


def test_external_test_set_is_scored_with_the_validation_threshold(shared_data, work):
    record = run_tiny(
        work,
        task="binary",
        data={"ham10000": str(shared_data / "ham10000")},
        test_data={"fitzpatrick17k": str(shared_data / "fitzpatrick17k")},
        **FAST,
    )
    ext = record["metrics"]["external:fitzpatrick17k"]
    assert ext["n"] == record["data"]["splits"]["external:fitzpatrick17k"]["n"] > 1000
    assert ext["operating_point"]["threshold"] == record["metrics"]["val"]["operating_point"]["threshold"]
    frames = _frames(work, record)
    ext_frame = frames["external:fitzpatrick17k"]
    y = ext_frame["label"].to_numpy()
    assert ext["macro_auc"] == pytest.approx(roc_auc_score(y, ext_frame["p_malignant"]))
    roles = {d["name"]: d["role"] for d in record["data"]["datasets"]}
    assert roles == {"ham10000": "train", "fitzpatrick17k": "external-test"}
