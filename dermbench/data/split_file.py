"""Official splits as files: ``dermbench splits export`` writes one, ``--split-file`` uses one.

A split file is a CSV with one row per image: ``image_id``, ``group`` (the lesion), ``label``
(the task's class), ``split`` (train / val / test) and, when asked for, ``fold`` (the
lesion-grouped K-fold cross-validation fold of the training split that ``--ensemble cvK`` uses). Beside
it, ``FILE.json`` holds the task, the data, the split seed and each split's fingerprint (the
sha256 over its sorted image ids and labels, as every run record states it), so anyone can train
on exactly the same split with or without dermbench, and check that they did.

Reading one back, every image of the data must be in the file and every image of the file in the
data, no lesion may be in two splits, and when the JSON is there each split's fingerprint must
still be what it says: any of these is a one-line error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.data.splits import SPLITS, kfold_splits, split_fingerprint
from dermbench.errors import DataError


def split_table(
    frame: pd.DataFrame, idx: dict[str, np.ndarray], classes: list[str], folds: int = 0, seed: int = 0
) -> pd.DataFrame:
    """The split of ``frame`` as a table, in the data's row order."""
    split = np.empty(len(frame), dtype=object)
    for name, pos in idx.items():
        split[pos] = name
    table = pd.DataFrame(
        {
            "image_id": frame["image_id"].astype(str).to_numpy(),
            "group": frame["group"].astype(str).to_numpy(),
            "label": [classes[i] for i in frame["y"]],
            "split": split,
        }
    )
    if folds:
        pool = idx["train"]  # as --ensemble cvK folds it (dermbench.run.fitting)
        fold = np.full(len(frame), -1)
        for i, (_, held_out) in enumerate(kfold_splits(frame.iloc[pool].reset_index(drop=True), folds, seed)):
            fold[pool[held_out]] = i
        table["fold"] = fold
    return table


def fingerprints(frame: pd.DataFrame, idx: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: split_fingerprint(frame, pos) for name, pos in idx.items()}


def export_split(
    frame: pd.DataFrame,
    idx: dict[str, np.ndarray],
    classes: list[str],
    out: Path,
    about: dict[str, Any],
    folds: int = 0,
) -> tuple[Path, Path]:
    """Write ``out`` (CSV) and ``out.json`` (what made it and the fingerprints)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    split_table(frame, idx, classes, folds, int(about.get("split_seed", 0))).to_csv(out, index=False)
    meta = {**about, "n": {k: int(len(v)) for k, v in idx.items()}, "fingerprints": fingerprints(frame, idx)}
    side = out.with_suffix(out.suffix + ".json")
    side.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return out, side


def read_split_file(path: str | Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Positions of ``frame`` per split, as the file assigns them; refused if it does not fit the data."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--split-file {path}: no such file")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in ("image_id", "split") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    bad = ~table["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: line {i + 2}: split {table['split'].iloc[i]!r} is not train, val or test")
    if table["image_id"].duplicated().any():
        raise DataError(
            f"{path}: image {table['image_id'][table['image_id'].duplicated()].iloc[0]!r} is listed twice"
        )
    ids = frame["image_id"].astype(str)
    unknown = sorted(set(table["image_id"]) - set(ids))
    absent = sorted(set(ids) - set(table["image_id"]))
    if unknown or absent:
        raise DataError(
            f"{path}: {len(unknown)} image id(s) not in the data (e.g. {unknown[:2]}) and {len(absent)} image(s) "
            f"of the data not in the file (e.g. {absent[:2]})"
        )
    assigned = table.set_index("image_id")["split"].loc[ids].to_numpy()
    idx = {name: np.flatnonzero(assigned == name) for name in SPLITS}
    _check_lesions(path, frame, assigned)
    _check_fingerprints(path, frame, idx)
    return idx


def _check_lesions(path: Path, frame: pd.DataFrame, assigned: np.ndarray) -> None:
    per_group = pd.Series(assigned).groupby(frame["group"].astype(str).to_numpy()).nunique()
    if (per_group > 1).any():
        group = per_group[per_group > 1].index[0]
        raise DataError(
            f"{path}: lesion {group!r} is in more than one split ({int((per_group > 1).sum())} such)"
        )


def _check_fingerprints(path: Path, frame: pd.DataFrame, idx: dict[str, np.ndarray]) -> None:
    side = path.with_suffix(path.suffix + ".json")
    if not side.is_file():
        return
    try:
        stated = json.loads(side.read_text()).get("fingerprints") or {}
    except json.JSONDecodeError as exc:
        raise DataError(f"{side}: not valid JSON ({exc})") from None
    for name, fp in fingerprints(frame, idx).items():
        if name in stated and stated[name] != fp:
            raise DataError(
                f"{path}: the {name} split's fingerprint is {fp[:12]}, but {side.name} states {stated[name][:12]}: "
                f"the data or the file changed"
            )
