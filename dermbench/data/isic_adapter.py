"""ISIC 2018 Task 3 (Codella et al., arXiv:1902.03368, 2019; its training set is HAM10000) as the
challenge distributes it, with the challenge's score weights.

The ground truth is a CSV ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` of one-hot floats, the images
beside it, and optionally the lesion groupings CSV ``image,lesion_id``. The official scorer
(``isic-challenge-scoring``) weighs each ground-truth row by an optional ``score_weight`` column
(1 when absent) and gives ISIC_0035068 a weight of 0 in any ground truth. dermbench does the same:
a row of score weight 0 is left out of the data altogether (listed in the run record's
``data.sources[].excluded``), so every split, metric, interval and leaderboard number counts
exactly the rows the challenge scores. A weight other than 0 or 1 is refused: no ISIC release
uses one, and weighted cases would need every metric of the record to carry the weights.
``validation_weight`` (the challenge's live-leaderboard subset) is checked the same way and kept
as a column; dermbench does not score by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermbench.data.adapters import (
    _opt,
    csv_has,
    existing_path,
    file_records,
    index_images,
    line,
    locate,
    pick_file,
    read_table,
    require_unique,
    require_values,
)
from dermbench.data.records import DatasetRecords
from dermbench.errors import DataError

ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
WEIGHT_COLUMNS = ("score_weight", "validation_weight")
# The official scorer's load_csv.parse_truth_csv sets both weights of this image to 0.
ZERO_WEIGHT_IMAGES = ("ISIC_0035068",)
CHALLENGE = "isic"  # the challenge metric set the scoring adds (dermbench.evaluation.challenge)


@dataclass(frozen=True)
class Isic2018Options:
    ground_truth: str = _opt(
        "", "ground-truth CSV relative to PATH; empty: the one CSV with image,MEL,... columns"
    )
    groupings: str = _opt("", "lesion-groupings CSV (image,lesion_id); empty: found if present")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def _one_hot_labels(df: pd.DataFrame, csv: Path) -> np.ndarray:
    """Each row's category, refusing a column that is not 0/1 or a row without exactly one 1."""
    onehot = np.empty((len(df), len(ISIC_CLASSES)))
    for j, c in enumerate(ISIC_CLASSES):
        values = pd.to_numeric(df[c].str.strip(), errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if len(bad):
            raise DataError(f"{csv}: {line(bad[0])}: column {c!r} is {df[c].iloc[bad[0]]!r}, expected 0 or 1")
        onehot[:, j] = values
    bad = np.flatnonzero(onehot.sum(axis=1) != 1)
    if len(bad):
        i = bad[0]
        raise DataError(
            f"{csv}: {line(i)}: image {df['image'].iloc[i]!r} needs exactly one 1 among {','.join(ISIC_CLASSES)}"
        )
    return np.asarray(ISIC_CLASSES)[onehot.argmax(axis=1)]


def score_weights(df: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """``score_weight`` and ``validation_weight`` as floats (1 where the column is absent), 0 for
    the images the official scorer zeroes; any value but 0 or 1 is an error naming its row."""
    out = pd.DataFrame(index=df.index)
    for col in WEIGHT_COLUMNS:
        raw = df[col].str.strip() if col in df.columns else pd.Series("1", index=df.index)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if len(bad):
            raise DataError(
                f"{csv}: {line(bad[0])}: {col} is {raw.iloc[bad[0]]!r}; dermbench scores weights 0 "
                "(left out) and 1 only"
            )
        values[df["image"].isin(ZERO_WEIGHT_IMAGES).to_numpy()] = 0.0
        out[col] = values
    return out


def _lesion_groups(df: pd.DataFrame, root: Path, csv: Path, option: str) -> tuple[pd.DataFrame, Path | None]:
    """``group`` (and ``lesion_id``) from the groupings CSV when there is one, else the image."""
    df["group"] = df["image_id"]
    gcsv = None
    if option:
        gcsv = root / option
    elif root.is_dir():
        found = sorted(p for p in root.rglob("*.csv") if p != csv and csv_has("image", "lesion_id")(p))
        gcsv = found[0] if found else None
    if gcsv is not None:
        groups = read_table(gcsv, ("image", "lesion_id"))
        lesion = dict(zip(groups["image"], groups["lesion_id"], strict=True))
        df["group"] = [lesion.get(i) or i for i in df["image_id"]]
        df["lesion_id"] = df["group"]
    return df, gcsv


def load_isic2018(options: Isic2018Options, path: str | None) -> DatasetRecords:
    """ISIC 2018 Task 3: one-hot ground truth ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` plus images;
    rows the challenge does not score (score weight 0) are left out and listed in ``excluded``."""
    root = existing_path(path, "isic2018")
    csv = pick_file(root, options.ground_truth, "*.csv", "isic2018", csv_has("image", *ISIC_CLASSES))
    if root.is_file():  # officially the CSV sits in its own folder beside the image folder
        root = csv.parent if index_images(csv.parent) else csv.parent.parent
    df = read_table(csv, ("image", *ISIC_CLASSES))
    require_values(df, "image", csv)
    require_unique(df, "image", csv)
    df["label"] = _one_hot_labels(df, csv)
    weights = score_weights(df, csv)
    unscored = weights["score_weight"].to_numpy() == 0
    excluded = {
        "n": int(unscored.sum()),
        "images": df["image"][unscored].tolist(),
        "why": "score_weight 0 in the ground truth or zeroed by the official scorer (ISIC_0035068)",
    }
    df = df.assign(validation_weight=weights["validation_weight"])[~unscored]
    df = df.drop(columns=[*ISIC_CLASSES, "score_weight"], errors="ignore").rename(
        columns={"image": "image_id"}
    )
    df, gcsv = _lesion_groups(df, root, csv, options.groupings)
    df["challenge"] = CHALLENGE
    rows = np.flatnonzero(~unscored).tolist()
    df["path"] = locate(df["image_id"], index_images(root), root, csv, "image", options.skip_missing, rows)
    records = file_records("isic2018", root, df, "isic2018", (str(csv), str(gcsv)))
    records.excluded = excluded
    return records
