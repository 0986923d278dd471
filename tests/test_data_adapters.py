"""Dataset adapters on files written here, and on the real datasets in ../shared/data."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.data import adapters as A
from dermbench.data import isic_adapter as I
from dermbench.errors import ConfigError, DataError
from dermbench.plugins import load_plugins

HAM_COUNTS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def ham_row(lesion: str, image: str, dx: str, age: str = "50.0") -> dict:
    return {"lesion_id": lesion, "image_id": image, "dx": dx, "dx_type": "histo", "age": age, "sex": "male",
            "localization": "back"}  # fmt: skip


@pytest.fixture
def ham_dir(tmp_path: Path) -> Path:
    rows = [
        ham_row("HAM_1", "ISIC_1", "mel"),
        ham_row("HAM_1", "ISIC_2", "mel"),
        ham_row("HAM_2", "ISIC_3", "nv", ""),
    ]
    write_csv(tmp_path / "HAM10000_metadata.csv", rows)
    write_image(tmp_path / "HAM10000_images_part_1" / "ISIC_1.jpg", (200, 10, 10))
    write_image(tmp_path / "HAM10000_images_part_1" / "ISIC_2.jpg", (10, 200, 10))
    write_image(tmp_path / "HAM10000_images_part_2" / "ISIC_3.jpg", (10, 10, 200))
    return tmp_path


def test_every_adapter_is_registered_with_default_options() -> None:
    reg = load_plugins(autoload=False).registries.datasets
    assert set(reg.names()) >= {"ham10000", "isic2018", "medmnist", "dermamnist", "fitzpatrick17k", "manifest",
                                "synthetic"}  # fmt: skip
    for comp in reg:
        comp.make_options({})  # every option has a default
    with pytest.raises(ConfigError, match="label_colum"):
        reg.get("fitzpatrick17k").make_options({"label_colum": "label"})


# --- HAM10000 ---------------------------------------------------------------------------------


def test_ham10000_reads_metadata_and_images_in_official_part_folders(ham_dir: Path) -> None:
    rec = A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    f = rec.frame
    assert rec.label_source == "ham10000_dx" and not rec.synthetic
    assert f["image_id"].tolist() == ["ISIC_1", "ISIC_2", "ISIC_3"]
    assert f["label"].tolist() == ["mel", "mel", "nv"]
    assert f["group"].tolist() == ["HAM_1", "HAM_1", "HAM_2"]
    assert np.isnan(f["age"].iloc[2]) and f["age"].iloc[0] == 50.0
    assert Path(f["path"].iloc[2]).parent.name == "HAM10000_images_part_2"
    assert rec.read_image(2).getpixel((0, 0))[2] > 150  # the blue one
    # PATH may also name the CSV itself
    assert len(A.load_ham10000(A.Ham10000Options(), str(ham_dir / "HAM10000_metadata.csv"))) == 3


@pytest.mark.parametrize("other", ["aug/ISIC_2.jpg", "HAM10000_images_part_1/ISIC_2.png"])
def test_an_image_found_twice_is_an_error_naming_both_files(ham_dir: Path, other: str) -> None:
    """With an ``aug/`` folder of same-named files beside the images, the run trained on ``aug/``."""
    write_image(ham_dir / other, (0, 0, 0))
    with pytest.raises(DataError) as exc:
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    text = str(exc.value)
    assert "line 3: image 'ISIC_2' is found twice" in text and other in text and "\n" not in text
    assert "HAM10000_images_part_1/ISIC_2.jpg" in text


def test_ham10000_errors_name_file_row_and_column(ham_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        A.load_ham10000(A.Ham10000Options(), str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="needs a path"):
        A.load_ham10000(A.Ham10000Options(), None)
    meta = ham_dir / "HAM10000_metadata.csv"
    df = pd.read_csv(meta)
    df.drop(columns=["lesion_id"]).to_csv(meta, index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: missing column\(s\) lesion_id"):
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    df.assign(dx=["mel", "melanoma", "nv"]).to_csv(meta, index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: line 3: unknown dx 'melanoma'"):
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    df.assign(age=["50", "old", ""]).to_csv(meta, index=False)
    with pytest.raises(DataError, match=r"line 3: column 'age' has invalid value 'old'"):
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    df.assign(image_id=["ISIC_1", "ISIC_2", "ISIC_1"]).to_csv(meta, index=False)
    with pytest.raises(DataError, match=r"image_id 'ISIC_1' appears more than once \(line 2, line 4\)"):
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))


def test_ham10000_missing_image_is_named_unless_skipped(ham_dir: Path) -> None:
    os.remove(ham_dir / "HAM10000_images_part_1" / "ISIC_2.jpg")
    with pytest.raises(DataError, match=r"line 3: image file ISIC_2.jpg .* not found"):
        A.load_ham10000(A.Ham10000Options(), str(ham_dir))
    rec = A.load_ham10000(A.Ham10000Options(skip_missing=True), str(ham_dir))
    assert len(rec) == 3
    with pytest.raises(DataError, match="ISIC_2.jpg: image file does not exist"):
        rec.read_image(1)


def test_identity_changes_when_an_image_changes(ham_dir: Path) -> None:
    first = A.load_ham10000(A.Ham10000Options(), str(ham_dir)).identity
    assert A.load_ham10000(A.Ham10000Options(), str(ham_dir)).identity == first
    write_image(ham_dir / "HAM10000_images_part_1" / "ISIC_1.jpg", (0, 0, 0), size=(30, 30))
    assert A.load_ham10000(A.Ham10000Options(), str(ham_dir)).identity != first


@pytest.mark.realdata
def test_ham10000_real(shared_data: Path) -> None:
    rec = A.load_ham10000(A.Ham10000Options(), str(shared_data / "ham10000"))
    f = rec.frame
    assert len(f) == 10015 and f["group"].nunique() == 7470
    assert f["label"].value_counts().to_dict() == HAM_COUNTS
    assert f["path"].map(os.path.isfile).all()
    img = rec.read_image(0)
    assert img.mode == "RGB" and img.size == (200, 150)


# --- ISIC 2018 Task 3 -------------------------------------------------------------------------


def isic_row(image: str, cls: str) -> dict:
    return {"image": image, **{c: float(c == cls) for c in I.ISIC_CLASSES}}


def test_isic2018_one_hot_and_lesion_groupings(tmp_path: Path) -> None:
    gt = write_csv(tmp_path / "gt" / "ISIC2018_Task3_Training_GroundTruth.csv",
                   [isic_row("ISIC_1", "MEL"), isic_row("ISIC_2", "DF"), isic_row("ISIC_3", "MEL")])  # fmt: skip
    for i in (1, 2, 3):
        write_image(tmp_path / "ISIC2018_Task3_Training_Input" / f"ISIC_{i}.jpg", (i * 50, 0, 0))
    rec = I.load_isic2018(I.Isic2018Options(), str(tmp_path))
    assert rec.label_source == "isic2018"
    assert rec.frame["label"].tolist() == ["MEL", "DF", "MEL"]
    assert rec.frame["group"].tolist() == ["ISIC_1", "ISIC_2", "ISIC_3"]
    write_csv(tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv",
              [{"image": "ISIC_1", "lesion_id": "L1"}, {"image": "ISIC_3", "lesion_id": "L1"}])  # fmt: skip
    rec = I.load_isic2018(I.Isic2018Options(), str(tmp_path))
    assert rec.frame["group"].tolist() == ["L1", "ISIC_2", "L1"]
    assert len(I.load_isic2018(I.Isic2018Options(), str(gt))) == 3  # PATH naming the CSV


def test_isic2018_rejects_rows_without_exactly_one_class(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "ISIC_1.jpg", (1, 2, 3))
    rows = [isic_row("ISIC_1", "NV"), {**isic_row("ISIC_2", "NV"), "MEL": 1.0}]
    gt = write_csv(tmp_path / "gt.csv", rows)
    with pytest.raises(DataError, match=r"gt.csv: line 3: image 'ISIC_2' needs exactly one 1"):
        I.load_isic2018(I.Isic2018Options(), str(gt))
    write_csv(gt, [isic_row("ISIC_1", "NV"), {**isic_row("ISIC_2", "NV"), "NV": 0.5}])
    with pytest.raises(DataError, match=r"gt.csv: line 3: column 'NV' is '0.5'"):
        I.load_isic2018(I.Isic2018Options(), str(gt))
    pd.DataFrame([isic_row("ISIC_1", "NV")]).drop(columns="VASC").to_csv(gt, index=False)
    with pytest.raises(DataError, match=r"gt.csv: missing column\(s\) VASC"):
        I.load_isic2018(I.Isic2018Options(), str(gt))


@pytest.mark.realdata
def test_isic2018_on_real_ham_images_agrees_with_ham10000(shared_data: Path, tmp_path: Path) -> None:
    """The HAM10000 images are the ISIC 2018 Task 3 training set: one-hot the real metadata."""
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").iloc[::50]
    write_csv(tmp_path / "gt.csv", [isic_row(r.image_id, r.dx.upper()) for r in meta.itertuples()])
    (tmp_path / "images").symlink_to(shared_data / "ham10000" / "images")
    rec = I.load_isic2018(I.Isic2018Options(), str(tmp_path))
    assert rec.frame["label"].str.lower().tolist() == meta["dx"].tolist()
    assert rec.read_image(0).size == (200, 150)


# --- MedMNIST and DermaMNIST ------------------------------------------------------------------


def write_npz(
    path: Path, n: dict[str, int], grey: bool = False, labels_2d: bool = True
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in n.items():
        shape = (k, 6, 6) if grey else (k, 6, 6, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = rng.integers(0, 7, k)
        arrays[f"{split}_labels"] = labels[:, None] if labels_2d else labels
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("grey", [False, True])
def test_medmnist_npz_official_split_and_label_names(tmp_path: Path, grey: bool) -> None:
    arrays = write_npz(tmp_path / "dermamnist.npz", {"train": 5, "val": 2, "test": 3}, grey=grey)
    rec = A.load_medmnist(A.MedmnistOptions(), str(tmp_path))
    f = rec.frame
    assert f["split"].value_counts().to_dict() == {"train": 5, "test": 3, "val": 2}
    assert f["image_id"].iloc[5] == "DermaMNIST_val_00000"
    assert f["label"].tolist() == [
        A.DERMAMNIST_DX[i] for s in ("train", "val", "test") for i in arrays[f"{s}_labels"][:, 0]
    ]
    img = np.asarray(rec.read_image(6))
    expected = arrays["val_images"][1]
    assert img.shape == (6, 6, 3)
    assert (img == (expected[..., None] if grey else expected)).all()
    assert rec.label_source == "ham10000_dx"


def test_medmnist_errors(tmp_path: Path) -> None:
    arrays = write_npz(tmp_path / "x.npz", {"train": 3, "val": 1, "test": 1}, labels_2d=False)
    np.savez(tmp_path / "x.npz", **{k: v for k, v in arrays.items() if k != "val_labels"})
    with pytest.raises(DataError, match=r"x.npz: missing array 'val_labels'"):
        A.load_medmnist(A.MedmnistOptions(), str(tmp_path / "x.npz"))
    arrays["test_labels"] = np.array([9])
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(DataError, match=r"x.npz: test_labels row 0: index 9 has no name"):
        A.load_medmnist(A.MedmnistOptions(), str(tmp_path / "x.npz"))
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"x.npz: cannot read as .npz"):
        A.load_medmnist(A.MedmnistOptions(), str(tmp_path))


@pytest.mark.realdata
def test_dermamnist_label_order_matches_the_jpeg_layout(shared_data: Path) -> None:
    """MedMNIST v2 publishes DermaMNIST with integer labels; per-index counts of the official
    dermamnist.npz (train 228/359/769/80/779/4693/99, val 33/52/110/12/111/671/14) must equal the
    per-dx counts of the same split in the JPEG layout, under DERMAMNIST_DX."""
    npz_counts = {"train": [228, 359, 769, 80, 779, 4693, 99], "val": [33, 52, 110, 12, 111, 671, 14]}
    labels = pd.read_csv(shared_data / "dermamnist" / "labels.csv")
    for split, counts in npz_counts.items():
        jpeg = labels.loc[labels["split"] == split, "dx"].value_counts().to_dict()
        assert {A.DERMAMNIST_DX[i]: c for i, c in enumerate(counts)} == jpeg


@pytest.mark.realdata
def test_dermamnist_jpeg_layout_real(shared_data: Path) -> None:
    rec = A.load_dermamnist(A.DermamnistOptions(), str(shared_data / "dermamnist"))
    f = rec.frame
    assert f["split"].value_counts().to_dict() == {"train": 7007, "test": 2005, "val": 1003}
    assert f["label"].value_counts().to_dict() == HAM_COUNTS
    assert rec.read_image(0).size == (28, 28)


@pytest.mark.realdata
def test_medmnist_npz_round_trip_of_real_dermamnist(shared_data: Path, tmp_path: Path) -> None:
    jpeg = A.load_dermamnist(A.DermamnistOptions(), str(shared_data / "dermamnist"))
    arrays, picked = {}, {}
    for split in A.SPLITS:
        rows = np.flatnonzero(jpeg.frame["split"].to_numpy() == split)[:20]
        picked[split] = rows
        arrays[f"{split}_images"] = np.stack([np.asarray(jpeg.read_image(int(r))) for r in rows])
        arrays[f"{split}_labels"] = np.array(
            [[A.DERMAMNIST_DX.index(jpeg.frame["label"].iloc[r])] for r in rows]
        )
    np.savez(tmp_path / "dermamnist.npz", **arrays)
    rec = A.load_medmnist(A.MedmnistOptions(), str(tmp_path))
    rows = np.concatenate([picked[s] for s in A.SPLITS])
    assert rec.frame["label"].tolist() == jpeg.frame["label"].iloc[rows].tolist()
    assert rec.frame["image_id"].tolist() == jpeg.frame["image_id"].iloc[rows].tolist()
    assert (np.asarray(rec.read_image(25)) == np.asarray(jpeg.read_image(int(rows[25])))).all()


# --- Fitzpatrick17k ---------------------------------------------------------------------------


def fitz_row(md5: str, scale: int, label: str, three: str) -> dict:
    return {"md5hash": md5, "fitzpatrick_scale": scale, "fitzpatrick_centaur": scale, "label": label,
            "nine_partition_label": "x", "three_partition_label": three, "qc": "", "ddi_scale": 12}  # fmt: skip


@pytest.fixture
def fitz_dir(tmp_path: Path) -> Path:
    rows = [fitz_row("aa11", 2, "melanoma", "malignant"), fitz_row("bb22", -1, "acne", "non-neoplastic"),
            fitz_row("cc33", 6, "dermatofibroma", "benign")]  # fmt: skip
    write_csv(tmp_path / "fitzpatrick17k.csv", rows)
    for r in rows:
        write_image(tmp_path / "images" / f"{r['md5hash']}.jpg", (120, 80, 60))
    return tmp_path


def test_fitzpatrick17k_labels_and_skin_types(fitz_dir: Path) -> None:
    rec = A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(), str(fitz_dir))
    assert rec.label_source == "fitzpatrick17k_label"
    assert rec.frame["label"].tolist() == ["melanoma", "acne", "dermatofibroma"]
    st = rec.frame["skin_type"].tolist()
    assert st[0] == 2 and np.isnan(st[1]) and st[2] == 6
    three = A.load_fitzpatrick17k(
        A.Fitzpatrick17kOptions(label_column="three_partition_label"), str(fitz_dir)
    )
    assert three.label_source == "fitzpatrick17k_three"
    assert three.frame["label"].tolist() == ["malignant", "non-neoplastic", "benign"]
    with pytest.raises(DataError, match="label_column must be one of"):
        A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(label_column="nine"), str(fitz_dir))


def test_fitzpatrick17k_errors(fitz_dir: Path) -> None:
    os.remove(fitz_dir / "images" / "bb22.jpg")
    with pytest.raises(DataError, match=r"fitzpatrick17k.csv: line 3: image file bb22.jpg"):
        A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(), str(fitz_dir))
    assert len(A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(skip_missing=True), str(fitz_dir))) == 3
    csv_path = fitz_dir / "fitzpatrick17k.csv"
    pd.read_csv(csv_path).assign(fitzpatrick_scale=[1, 7, 2]).to_csv(csv_path, index=False)
    with pytest.raises(DataError, match=r"line 3: fitzpatrick_scale '7' is not 1-6 or -1"):
        A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(skip_missing=True), str(fitz_dir))


@pytest.mark.realdata
def test_fitzpatrick17k_subset_real(shared_data: Path) -> None:
    folder = shared_data / "fitzpatrick17k"
    rec = A.load_fitzpatrick17k(A.Fitzpatrick17kOptions(), str(folder))
    with open(folder / "fitzpatrick17k_subset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rec) == len(rows) == 1430
    scales = Counter(int(r["fitzpatrick_scale"]) for r in rows)
    assert rec.frame["skin_type"].isna().sum() == scales[-1]
    assert rec.frame["skin_type"].value_counts().to_dict() == {
        float(k): v for k, v in scales.items() if k > 0
    }
    assert rec.frame["label"].value_counts().to_dict() == Counter(r["label"] for r in rows)
    assert max(rec.read_image(0).size) <= 256


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_paths_groups_splits_and_metadata(tmp_path: Path) -> None:
    absolute = write_image(tmp_path / "elsewhere" / "c.png", (5, 5, 5))
    write_image(tmp_path / "set" / "img" / "a.jpg", (1, 1, 1))
    write_image(tmp_path / "set" / "img" / "b.jpg", (2, 2, 2))
    rows = [{"image": "img/a.jpg", "label": "Nev", "split": "train", "lesion_id": "L1", "skin_type": 3, "site": "arm"},
            {"image": "img/b.jpg", "label": "MM", "split": "", "lesion_id": "", "skin_type": "", "site": "leg"},
            {"image": str(absolute), "label": "Nev", "split": "Test", "lesion_id": "L1", "skin_type": 5, "site": ""}]  # fmt: skip
    write_csv(tmp_path / "set" / "manifest.csv", rows)
    rec = A.load_manifest(A.ManifestOptions(), str(tmp_path / "set"))
    f = rec.frame
    assert rec.label_source == "task"
    assert f["group"].tolist() == ["L1", "img/b.jpg", "L1"]
    assert f["split"].tolist()[0] == "train" and f["split"].isna().tolist() == [False, True, False]
    assert f["split"].iloc[2] == "test"
    assert f["skin_type"].iloc[0] == 3 and np.isnan(f["skin_type"].iloc[1])
    assert f["site"].tolist() == ["arm", "leg", ""]
    assert rec.read_image(2).getpixel((0, 0)) == (5, 5, 5)
    long = A.load_manifest(
        A.ManifestOptions(label_source="dermai13_long"), str(tmp_path / "set" / "manifest.csv")
    )
    assert long.label_source == "dermai13_long"


def test_manifest_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", (1, 1, 1))
    m = write_csv(tmp_path / "m.csv", [{"image": "a.jpg", "label": "x"}, {"image": "gone.jpg", "label": "y"}])
    with pytest.raises(DataError, match=r"m.csv: line 3: image file .*gone.jpg does not exist"):
        A.load_manifest(A.ManifestOptions(), str(m))
    write_csv(m, [{"image": "a.jpg", "label": "x", "split": "holdout"}])
    with pytest.raises(DataError, match=r"m.csv: line 2: split 'holdout'"):
        A.load_manifest(A.ManifestOptions(), str(m))
    write_csv(m, [{"image": "a.jpg", "label": ""}])
    with pytest.raises(DataError, match=r"m.csv: line 2: empty 'label'"):
        A.load_manifest(A.ManifestOptions(), str(m))
    write_csv(m, [{"path": "a.jpg", "label": "x"}])
    with pytest.raises(DataError, match=r"m.csv: missing column\(s\) image"):
        A.load_manifest(A.ManifestOptions(), str(m))
    with pytest.raises(DataError, match=r"manifest.csv: no such file"):
        A.load_manifest(A.ManifestOptions(), str(tmp_path))
