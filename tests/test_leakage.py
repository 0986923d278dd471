"""Leakage: a set a run reads beside its training split that holds the run's own images is
refused (by id, lesion or pixels), or with --allow-overlap scored and flagged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermbench.errors import ConfigError
from dermbench.testing import run_tiny

pytestmark = pytest.mark.realdata
FAST = {"task": "ham7", "image_size": 16, "epochs": 1, "batch_size": 32, "allow_empty_classes": True}


def _ham(shared: Path, dest: Path, rows: pd.DataFrame, rename: bool = False) -> Path:
    """A HAM10000 folder of ``rows``: linked images, or (``rename``) copies under new ids and lesions."""
    dest.mkdir()
    rows = rows.copy()
    if rename:
        (dest / "images").mkdir()
        for i, image_id in enumerate(rows["image_id"]):
            shutil.copy(
                shared / "ham10000" / "images" / f"{image_id}.jpg", dest / "images" / f"COPY_{i:04d}.jpg"
            )
        rows["image_id"] = [f"COPY_{i:04d}" for i in range(len(rows))]
        rows["lesion_id"] = [f"LCOPY_{i:04d}" for i in range(len(rows))]
    else:
        os.symlink(shared / "ham10000" / "images", dest / "images")
    rows.to_csv(dest / "HAM10000_metadata.csv", index=False)
    return dest


@pytest.fixture
def ham(shared_data, tmp_path):
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")
    return meta.head(240), _ham(shared_data, tmp_path / "train", meta.head(240))


def test_an_external_test_set_of_training_images_under_other_names_is_refused(shared_data, tmp_path, ham):
    """99 of 140 images of an external test set were training images, scored with no warning."""
    meta, train = ham
    ext = _ham(shared_data, tmp_path / "ext", meta.head(60), rename=True)
    with pytest.raises(ConfigError) as exc:
        run_tiny(tmp_path, data={"ham10000": str(train)}, test_data={"ham10000": str(ext)}, **FAST)
    text = str(exc.value)
    assert text.startswith(f"--test-data ham10000={ext}: 60 of its 60 images are images of this run's splits")
    assert "by pixels" in text and "--allow-overlap" in text and "\n" not in text
    assert not list((tmp_path / "runs").rglob("record.json"))


def test_the_same_ids_are_caught_and_allow_overlap_scores_them_flagged(shared_data, tmp_path, ham):
    meta, train = ham
    fresh = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").iloc[1000:1030]
    ext = _ham(shared_data, tmp_path / "ext", pd.concat([meta.head(20), fresh]))
    with pytest.raises(ConfigError, match="20 of its 50 images are images of this run's splits"):
        run_tiny(tmp_path, data={"ham10000": str(train)}, test_data={"ham10000": str(ext)}, **FAST)
    record = run_tiny(
        tmp_path, data={"ham10000": str(train)}, test_data={"ham10000": str(ext)}, allow_overlap=True, **FAST
    )
    overlap = record["data"]["overlap"]["external:ham10000"]
    assert overlap["total"] == 20 and sum(c["by_id"] for k, c in overlap.items() if k != "total") == 20
    (flag,) = [
        f for f in record["metrics"]["external:ham10000"]["flags"] if f["code"] == "overlaps_run_images"
    ]
    assert flag["message"].startswith("20 images of this set are images of the run's splits")
    assert record["config"]["allow_overlap"] is True


def test_a_set_of_other_images_passes_and_leaves_the_run_id_as_before(shared_data, tmp_path, ham):
    _, train = ham
    fresh = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").iloc[2000:2040]
    ext = _ham(shared_data, tmp_path / "ext", fresh)
    record = run_tiny(tmp_path, data={"ham10000": str(train)}, test_data={"ham10000": str(ext)}, **FAST)
    assert "overlap" not in record["data"]
    assert not [
        f for f in record["metrics"]["external:ham10000"]["flags"] if f["code"] == "overlaps_run_images"
    ]


def test_allow_overlap_off_is_not_part_of_a_run_id():
    from dermbench.run.config import RunConfig

    assert "allow_overlap" not in RunConfig(task="ham7", method="erm").identity()
    assert RunConfig(task="ham7", method="erm", allow_overlap=True).identity()["allow_overlap"] is True
