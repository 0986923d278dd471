"""Official splits as files: exported, re-imported with the same fingerprints and metrics, refused when wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermbench.data.splits import kfold_splits
from dermbench.errors import DataError
from dermbench.testing import make_plugins, run_tiny

FAST = {"epochs": 1, "synthetic_n": 200}


def _export(tmp_path: Path, capsys, dermbench_process_plugins, folds: int = 0) -> Path:
    from dermbench.cli.main import main

    dermbench_process_plugins(make_plugins())
    out = tmp_path / "split.csv"
    args = [
        "splits",
        "export",
        "--task",
        "tiny3",
        "--profile",
        "smoke",
        "--synthetic-n",
        "200",
        "--to",
        str(out),
    ]
    assert main([*args, "--folds", str(folds)]) == 0
    assert "split written" in capsys.readouterr().out
    return out


def test_an_exported_split_reimported_gives_the_same_fingerprints_and_metrics(
    tmp_path, capsys, dermbench_process_plugins
):
    path = _export(tmp_path, capsys, dermbench_process_plugins, folds=3)
    table = pd.read_csv(path)
    assert list(table.columns) == ["image_id", "group", "label", "split", "fold"]
    assert set(table.loc[table["split"] != "train", "fold"]) == {-1} and set(table["fold"]) == {-1, 0, 1, 2}
    # the folds are those --ensemble cv3 trains: kfold_splits of the training split, by the split seed
    classes = make_plugins().registries.tasks.get("tiny3").classes
    train = table[table["split"] == "train"].reset_index(drop=True)
    train["y"] = [list(classes).index(c) for c in train["label"]]
    expected = np.full(len(train), -1)
    for i, (_, held_out) in enumerate(kfold_splits(train, 3, seed=0)):
        expected[held_out] = i
    assert train["fold"].tolist() == expected.tolist()
    seeded = run_tiny(tmp_path / "a", **FAST)
    from_file = run_tiny(tmp_path / "b", split_file=str(path), **FAST)
    meta = json.loads(path.with_suffix(".csv.json").read_text())
    for name in ("train", "val", "test"):
        fp = seeded["data"]["splits"][name]["fingerprint"]
        assert from_file["data"]["splits"][name]["fingerprint"] == fp == meta["fingerprints"][name]
    assert from_file["metrics"]["test"]["macro_f1"] == seeded["metrics"]["test"]["macro_f1"]
    assert from_file["data"]["split_protocol"] == f"split file {path}"


def test_a_wrong_split_file_is_refused_naming_it(tmp_path, capsys, dermbench_process_plugins):
    path = _export(tmp_path, capsys, dermbench_process_plugins)
    table = pd.read_csv(path)
    group = table["group"].value_counts().index[0]  # a lesion with more than one image
    moved = table.copy()
    rows = moved.index[moved["group"] == group]
    moved.loc[rows[0], "split"] = "test" if moved.loc[rows[1], "split"] != "test" else "train"
    bad = tmp_path / "lesion.csv"
    moved.to_csv(bad, index=False)
    with pytest.raises(DataError, match=rf"lesion.csv: lesion '{group}' is in more than one split"):
        run_tiny(tmp_path, split_file=str(bad), **FAST)
    extra = pd.concat([table, table.iloc[[0]].assign(image_id="nope")])
    extra.to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"1 image id\(s\) not in the data \(e.g. \['nope'\]\)"):
        run_tiny(tmp_path, split_file=str(bad), **FAST)
    meta = json.loads(path.with_suffix(".csv.json").read_text())
    meta["fingerprints"]["val"] = "0" * 64
    path.with_suffix(".csv.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="the val split's fingerprint is .* the data or the file changed"):
        run_tiny(tmp_path, split_file=str(path), **FAST)
    with pytest.raises(DataError, match="no such file"):
        run_tiny(tmp_path, split_file=str(tmp_path / "none.csv"), **FAST)
