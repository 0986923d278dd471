"""Derm7pt (EDRA) and Dermofit adapters, on fixtures written in their published layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.data.atlas_adapters import Derm7ptOptions, DermofitOptions, load_derm7pt, load_dermofit
from dermbench.data.tasking import apply_task
from dermbench.errors import DataError
from dermbench.testing import make_plugins

DIAGNOSES = [
    "basal cell carcinoma",
    "clark nevus",
    "melanoma (in situ)",
    "miscellaneous",
    "lentigo",
    "vascular lesion",
]


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)


def write_derm7pt(root: Path, n: int = 12) -> pd.DataFrame:
    """``release_v0``: meta/meta.csv, meta/{train,valid,test}_indexes.csv, images/<folder>/<file>."""
    rows = []
    for i in range(n):
        folder = ["Aal", "Fbl", "Nel"][i % 3]
        clinic, derm = f"{folder}/{folder}{i:03d}.jpg", f"{folder}/{folder}{i:03d}d.jpg"
        _jpg(root / "images" / clinic, i)
        _jpg(root / "images" / derm, 100 + i)
        rows.append({"case_num": i + 1, "diagnosis": DIAGNOSES[i % len(DIAGNOSES)], "seven_point_score": 1,
                     "clinic": clinic, "derm": derm, "elevation": "flat", "location": "back", "sex": "female"})  # fmt: skip
    meta = pd.DataFrame(rows)
    (root / "meta").mkdir(parents=True)
    meta.to_csv(root / "meta" / "meta.csv", index=False)
    idx = np.arange(n)
    for name, part in (("train", idx[: n - 4]), ("valid", idx[n - 4 : n - 2]), ("test", idx[n - 2 :])):
        pd.DataFrame({"indexes": part}).to_csv(root / "meta" / f"{name}_indexes.csv", index=False)
    return meta


def test_derm7pt_reads_its_published_layout_with_the_official_split(tmp_path):
    meta = write_derm7pt(tmp_path / "release_v0")
    rec = load_derm7pt(Derm7ptOptions(), str(tmp_path / "release_v0"))
    assert len(rec) == len(meta) and rec.label_source == "derm7pt_diagnosis"
    assert list(rec.frame["label"]) == list(meta["diagnosis"])
    assert list(rec.frame["split"]) == ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    assert rec.frame["path"].iloc[0].endswith("images/Aal/Aal000.jpg")
    assert np.asarray(rec.read_image(0)).shape == (20, 24, 3)
    both = load_derm7pt(Derm7ptOptions(image="both"), str(tmp_path / "release_v0"))
    assert len(both) == 2 * len(meta)
    assert all(sorted(m) == ["clinic", "derm"] for _, m in both.frame.groupby("group")["modality"])


def test_derm7pt_maps_into_dermai13_by_the_papers_rule(tmp_path):
    write_derm7pt(tmp_path / "r")
    rec = load_derm7pt(Derm7ptOptions(official_split=False), str(tmp_path / "r"))
    task = make_plugins().registries.tasks.get("dermai13")
    frame, dropped = apply_task(rec, task)
    assert dropped == {"miscellaneous": 2, "vascular lesion": 2}
    assert sorted({task.classes[i] for i in frame["y"]}) == ["BCC", "MM", "Nev", "SLent"]


def test_derm7pt_bad_layouts_are_one_line_errors_naming_the_file(tmp_path):
    write_derm7pt(tmp_path / "r")
    with pytest.raises(DataError, match="no meta/meta.csv under"):
        load_derm7pt(Derm7ptOptions(), str(tmp_path / "r" / "images"))
    (tmp_path / "r" / "images" / "Nel" / "Nel002.jpg").unlink()
    with pytest.raises(DataError, match=r"meta.csv: line 4: image file .*Nel002.jpg .*does not exist"):
        load_derm7pt(Derm7ptOptions(), str(tmp_path / "r"))
    pd.DataFrame({"indexes": [0, 99]}).to_csv(tmp_path / "r" / "meta" / "test_indexes.csv", index=False)
    with pytest.raises(DataError, match=r"test_indexes.csv: line 3: index '99' is not a row of"):
        load_derm7pt(Derm7ptOptions(skip_missing=True), str(tmp_path / "r"))
    pd.DataFrame({"indexes": [0]}).to_csv(tmp_path / "r" / "meta" / "test_indexes.csv", index=False)
    with pytest.raises(DataError, match="row 0 of .* is already in the train split"):
        load_derm7pt(Derm7ptOptions(skip_missing=True), str(tmp_path / "r"))
    with pytest.raises(DataError, match="option image must be one of clinic, derm, both"):
        load_derm7pt(Derm7ptOptions(image="macro"), str(tmp_path / "r"))


DERMOFIT = {"AK": ["A1", "A2"], "IEC": ["E1"], "PYO": ["P1", "P2"], "SK": ["S1"], "ML": ["M1", "M2", "M3"]}


def write_dermofit(root: Path, listed: bool = True) -> None:
    """Per-class folders, one sub-folder per lesion with ``<id>.png`` and ``<id>mask.png``."""
    for i, (cls, lesions) in enumerate(DERMOFIT.items()):
        for j, lesion in enumerate(lesions):
            folder = root / cls / lesion
            folder.mkdir(parents=True)
            Image.fromarray(np.full((10, 12, 3), 10 * i + j, dtype=np.uint8)).save(folder / f"{lesion}.png")
            Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(folder / f"{lesion}mask.png")
    if listed:
        lines = [f"{lesion} {cls}" for cls, lesions in DERMOFIT.items() for lesion in lesions]
        (root / "lesionlist.txt").write_text("\n".join(lines) + "\n")


def test_dermofit_reads_its_class_folders_and_checks_the_lesion_list(tmp_path):
    write_dermofit(tmp_path / "dermofit")
    rec = load_dermofit(DermofitOptions(), str(tmp_path / "dermofit"))
    assert rec.frame["label"].value_counts().to_dict() == {c: len(v) for c, v in DERMOFIT.items()}
    assert not rec.frame["path"].str.contains("mask").any()  # the masks are not images of the set
    task = make_plugins().registries.tasks.get("dermai13")
    frame, dropped = apply_task(rec, task)
    assert dropped == {}
    counts = pd.Series([task.classes[i] for i in frame["y"]]).value_counts().to_dict()
    assert counts == {"ActKer": 2, "OtMalNeop": 1, "UncNeop": 2, "SebKer": 1, "Nev": 3}


def test_dermofit_disagreements_with_its_lesion_list_name_the_lesion(tmp_path):
    write_dermofit(tmp_path / "d")
    (tmp_path / "d" / "lesionlist.txt").write_text("A1 AK\nA2 SK\n")
    with pytest.raises(DataError, match="lesion 'A2' is listed as SK but lies in AK/"):
        load_dermofit(DermofitOptions(), str(tmp_path / "d"))
    (tmp_path / "d" / "lesionlist.txt").write_text("A1 AK\nZ9 SK\n")
    with pytest.raises(DataError, match="lesion 'Z9' .SK. has no folder"):
        load_dermofit(DermofitOptions(), str(tmp_path / "d"))
    (tmp_path / "d" / "lesionlist.txt").write_text("A1 XX\n")
    with pytest.raises(DataError, match=r"lesionlist.txt: line 1: expected '<lesion id> <class>'"):
        load_dermofit(DermofitOptions(), str(tmp_path / "d"))
    (tmp_path / "d" / "lesionlist.txt").unlink()
    (tmp_path / "d" / "SK" / "S1" / "S1.png").unlink()
    with pytest.raises(DataError, match="lesion folder .*S1 has no image S1.png"):
        load_dermofit(DermofitOptions(), str(tmp_path / "d"))
    with pytest.raises(DataError, match="no class folder"):
        load_dermofit(DermofitOptions(), str(tmp_path / "d" / "AK"))
