"""Adapters for two image atlases in their published layouts: Derm7pt (EDRA) and Dermofit.

- Derm7pt / EDRA, the seven-point checklist dataset: Kawahara, Daneshvar, Argenziano & Hamarneh,
  "Seven-Point Checklist and Skin Lesion Classification using Multi-Task Multi-Modal Neural
  Nets", IEEE JBHI 23(2), 2019 (images from Argenziano et al.'s Interactive Atlas of
  Dermoscopy). Layout: ``meta/meta.csv`` (``case_num``, ``diagnosis``, ``clinic`` and ``derm``
  image paths relative to ``images/``, metadata) and the index files
  ``meta/{train,valid,test}_indexes.csv`` (column ``indexes``: rows of ``meta.csv``).
- Dermofit Image Library (University of Edinburgh): Ballerini, Fisher, Aldridge & Rees, "A
  Color and Texture Based Hierarchical K-NN Approach to the Classification of Non-melanoma Skin
  Lesions", in Color Medical Image Analysis, Springer, 2013. Layout: one folder per class
  (``AK BCC DF IEC MEL ML PYO SCC SK VASC``), one sub-folder per lesion holding ``<id>.png`` and
  its mask ``<id>mask.png``, and the lesion list (``lesionlist.txt``: one ``<id> <class>`` per
  line, commas or whitespace between), which is checked against the folders when present.

Both are close-up clinical photographs (Derm7pt also dermoscopic ones), so a case is one
lesion: its images share a group and never straddle a split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermbench.data.adapters import (
    IMAGE_EXTS,
    _opt,
    existing_path,
    file_records,
    line,
    read_table,
    require_unique,
    require_values,
)
from dermbench.data.records import DatasetRecords
from dermbench.errors import DataError

DERM7PT_IMAGES = ("clinic", "derm", "both")
DERM7PT_SPLITS = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}
DERMOFIT_CLASSES = ("AK", "BCC", "DF", "IEC", "MEL", "ML", "PYO", "SCC", "SK", "VASC")


# --- Derm7pt / EDRA ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Derm7ptOptions:
    image: str = _opt("clinic", "which photograph of each case: clinic | derm | both (two rows per case)")
    official_split: bool = _opt(True, "use meta/{train,valid,test}_indexes.csv when present")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def _derm7pt_split(meta: Path, n: int, csv: Path) -> pd.Series | None:
    files = {s: meta / f for s, f in DERM7PT_SPLITS.items()}
    if not all(f.is_file() for f in files.values()):
        return None
    split = pd.Series([None] * n, dtype=object)
    for name, file in files.items():
        idx = read_table(file, ("indexes",))
        values = pd.to_numeric(idx["indexes"].str.strip(), errors="coerce")
        bad = np.flatnonzero((values.isna() | values.lt(0) | values.ge(n)).to_numpy())
        if len(bad):
            raise DataError(
                f"{file}: {line(bad[0])}: index {idx['indexes'].iloc[bad[0]]!r} is not a row of {csv}"
            )
        rows = values.astype(int).to_numpy()
        twice = [r for r in rows if split.iloc[r] is not None]
        if twice:
            raise DataError(f"{file}: row {twice[0]} of {csv} is already in the {split.iloc[twice[0]]} split")
        split.iloc[rows] = name
    return split


def load_derm7pt(options: Derm7ptOptions, path: str | None) -> DatasetRecords:
    """Derm7pt: ``meta/meta.csv`` + ``images/<clinic or derm path>``; labels ``diagnosis``, one
    group per case, the official split from the index files."""
    if options.image not in DERM7PT_IMAGES:
        raise DataError(
            f"derm7pt: option image must be one of {', '.join(DERM7PT_IMAGES)}, got {options.image!r}"
        )
    root = existing_path(path, "derm7pt")
    csv = root / "meta" / "meta.csv"
    if not csv.is_file():
        raise DataError(
            f"dataset 'derm7pt': no meta/meta.csv under {root} (point PATH at the release folder)"
        )
    df = read_table(csv, ("case_num", "diagnosis", "clinic", "derm"))
    for c in ("case_num", "diagnosis"):
        require_values(df, c, csv)
    df["csv_line"] = [line(i) for i in range(len(df))]
    split = _derm7pt_split(root / "meta", len(df), csv) if options.official_split else None
    if split is not None:
        df["split"] = split.to_numpy()
    kinds = ("clinic", "derm") if options.image == "both" else (options.image,)
    rows = []
    for kind in kinds:
        part = df.copy()
        require_values(part, kind, csv)
        part["modality"] = kind
        part["image_rel"] = part[kind].str.strip()
        rows.append(part)
    df = pd.concat(rows, ignore_index=True)
    df["label"] = df["diagnosis"].str.strip()
    df["group"] = "case" + df["case_num"].str.strip()
    df["image_id"] = [re.sub(r"\.[^./]+$", "", p) for p in df["image_rel"]]
    df["path"] = [str(root / "images" / p) for p in df["image_rel"]]
    require_unique(df, "image_id", csv)
    _check_files(df, csv, "image_rel", options.skip_missing)
    return file_records("derm7pt", root, df, "derm7pt_diagnosis", options.image)


def _check_files(df: pd.DataFrame, csv: Path, column: str, skip_missing: bool) -> None:
    missing = [i for i, p in enumerate(df["path"]) if not Path(p).is_file()]
    if missing and not skip_missing:
        i = missing[0]
        where = df["csv_line"].iloc[i] if "csv_line" in df.columns else line(i)
        raise DataError(
            f"{csv}: {where}: image file {df['path'].iloc[i]} ({column} {df[column].iloc[i]!r}) does not exist "
            f"({len(missing)} missing in all; option skip_missing=true skips them)"
        )


# --- Dermofit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DermofitOptions:
    lesion_list: str = _opt("lesionlist.txt", "the lesion list relative to PATH (checked when present)")


def _dermofit_folders(root: Path) -> pd.DataFrame:
    rows = []
    for cls in DERMOFIT_CLASSES:
        folder = root / cls
        if not folder.is_dir():
            continue
        for lesion in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            image = next(
                (
                    lesion / f"{lesion.name}{ext}"
                    for ext in IMAGE_EXTS
                    if (lesion / f"{lesion.name}{ext}").is_file()
                ),
                None,
            )
            if image is None:
                raise DataError(f"dataset 'dermofit': lesion folder {lesion} has no image {lesion.name}.png")
            rows.append({"image_id": lesion.name, "label": cls, "path": str(image)})
    if not rows:
        raise DataError(
            f"dataset 'dermofit': no class folder ({', '.join(DERMOFIT_CLASSES)}) with lesion sub-folders under {root}"
        )
    return pd.DataFrame(rows)


def _read_lesion_list(file: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, text in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if not parts or parts[0].lower() in ("id", "lesion", "lesion_id"):
            continue
        if len(parts) < 2 or parts[1] not in DERMOFIT_CLASSES:
            raise DataError(
                f"{file}: line {i}: expected '<lesion id> <class>' with a class of {', '.join(DERMOFIT_CLASSES)}"
            )
        if parts[0] in out:
            raise DataError(f"{file}: line {i}: lesion {parts[0]!r} is listed twice")
        out[parts[0]] = parts[1]
    return out


def load_dermofit(options: DermofitOptions, path: str | None) -> DatasetRecords:
    """Dermofit: ``<CLASS>/<id>/<id>.png`` for the ten classes; one image per lesion."""
    root = existing_path(path, "dermofit")
    df = _dermofit_folders(root)
    twice = df["image_id"].duplicated(keep=False)
    if twice.any():
        dup = df.loc[twice]
        raise DataError(
            f"dataset 'dermofit': lesion {dup['image_id'].iloc[0]!r} has folders in {', '.join(dup['label'])}"
        )
    listed_file = root / options.lesion_list
    if listed_file.is_file():
        listed = _read_lesion_list(listed_file)
        found = dict(zip(df["image_id"], df["label"], strict=True))
        for lesion, cls in listed.items():
            if lesion not in found:
                raise DataError(
                    f"{listed_file}: lesion {lesion!r} ({cls}) has no folder {root / cls / lesion}"
                )
            if found[lesion] != cls:
                raise DataError(
                    f"{listed_file}: lesion {lesion!r} is listed as {cls} but lies in {found[lesion]}/"
                )
        extra = sorted(set(found) - set(listed))
        if extra:
            raise DataError(
                f"{listed_file}: lesion folder {extra[0]!r} ({found[extra[0]]}) is not in the lesion list"
            )
    df["group"] = df["image_id"]
    return file_records("dermofit", root, df, "dermofit")
