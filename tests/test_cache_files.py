"""The cache's files: what `dermbench cache` reports, and pruning of derived arrays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from dermbench.cli.main import main
from dermbench.data import mapped as M
from dermbench.data.cache_files import cache_folders, prune_derived, usage_text
from dermbench.errors import ConfigError

DAY = 86400


def _prepared(cache: Path):
    from dermbench.data.prepare import prepare_data
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config

    reg = load_plugins().registries
    task = reg.tasks.get("ham7")
    settings = {"profile": "smoke", "image_size": 16, "synthetic_n": 120, "cache_dir": str(cache)}
    cfg = resolve_config(task, reg.methods.get("lmf"), {}, settings)
    return prepare_data(cfg, task, reg, progress=False)


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_the_cache_reports_a_datasets_shards_and_derived_arrays(tmp_path):
    _prepared(tmp_path)
    (folder,) = cache_folders(tmp_path)
    assert (
        folder.shard_bytes
        == sum(p.stat().st_size for p in folder.path.glob("shard-*.npy"))
        > 120 * 16 * 16 * 3
    )
    assert len(folder.derived) == 4  # the decoded rows, then train, val and test
    assert folder.derived_bytes == sum(p.stat().st_size for p in folder.derived)
    assert folder.meta["size"] == 16 and folder.meta["rows"] == 120
    assert usage_text(tmp_path / "empty") == f"{tmp_path / 'empty'}: no decoded images cached"


def test_pruning_removes_only_derived_arrays_unused_for_the_given_days_and_a_run_remakes_them(tmp_path):
    before = {n: s.images.clone() for n, s in _prepared(tmp_path).splits.items()}
    (folder,) = cache_folders(tmp_path)
    old, recent = folder.derived[0], folder.derived[1:]
    _age(old, 10)
    shards = sorted(folder.path.glob("shard-*"))
    assert prune_derived(tmp_path, 7, dry_run=True) == [(old, old.stat().st_size)] and old.is_file()
    assert [p for p, _ in prune_derived(tmp_path, 7)] == [old]
    assert not old.exists() and all(p.is_file() for p in recent)
    assert sorted(folder.path.glob("shard-*")) == shards  # decoded shards are never pruned
    assert len(prune_derived(tmp_path, 0)) == 3
    after = _prepared(tmp_path).splits
    assert all(bool((after[n].images == before[n]).all()) for n in before)
    with pytest.raises(ConfigError, match="--older-than must be >= 0 days, got -1"):
        prune_derived(tmp_path, -1)


def test_mapping_an_array_marks_it_used(tmp_path):
    path = tmp_path / "rows-x.npy"
    M.write_mapped(path, (3, 2, 2, 3), [np.zeros((3, 2, 2, 3), np.uint8)])
    _age(path, 30)
    M.open_mapped(path, (3, 2, 2, 3))
    assert time.time() - path.stat().st_mtime < 60


def test_the_cache_command_reports_and_prunes(tmp_path, capsys):
    _prepared(tmp_path)
    assert main(["cache", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic 16 px" in out and "derived arrays" in out.splitlines()[-1]
    assert main(["cache", "prune", "--older-than", "0", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 4 derived arrays" in capsys.readouterr().out
    assert not cache_folders(tmp_path)[0].derived
    assert main(["cache", "prune", "--older-than", "-1", "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "dermbench: error: --older-than must be >= 0 days, got -1"


def test_an_unreadable_meta_file_is_named_in_the_report(tmp_path):
    """A folder whose meta.json is corrupt is reported as such, not as a dataset called '?'."""
    _prepared(tmp_path)
    (folder,) = cache_folders(tmp_path)
    (folder.path / "meta.json").write_text("{not json")
    (broken,) = cache_folders(tmp_path)
    assert broken.meta == {} and broken.meta_error.startswith("meta.json unreadable (JSONDecodeError")
    assert "unknown dataset: meta.json unreadable (JSONDecodeError" in usage_text(tmp_path)
    (folder.path / "meta.json").write_text("[1, 2]")
    assert cache_folders(tmp_path)[0].meta_error == "meta.json holds list, not an object"
