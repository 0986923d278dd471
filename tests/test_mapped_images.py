"""Memory-mapped images: the same arrays as the in-memory cache, read from cache files, and a run's
metrics unchanged by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermbench.data import cache
from dermbench.data import mapped as M
from dermbench.data.cache import load_images
from dermbench.data.synthetic import SyntheticOptions, load_synthetic
from dermbench.errors import ConfigError


def mapped_files_of(ptr: int) -> list[str]:
    """The files of this process's memory maps that hold the address ``ptr`` (Linux)."""
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= ptr < hi and len(fields) >= 6:
            out.append(fields[5])
    return out


needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc/self/maps")


def test_write_gather_concatenate_equal_numpy_and_stay_mapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (700, 6, 6, 3), dtype=np.uint8)
    m = M.write_mapped(tmp_path / "a.npy", a.shape, (a[i : i + 100] for i in range(0, 700, 100)))
    assert M.is_mapped(m) and np.array_equal(m, a) and m.flags.writeable  # copy-on-write
    assert not M.is_mapped(m[:10]) and not M.is_mapped(m[[0, 1]]) and not M.is_mapped(a)
    pos = rng.permutation(700)[:333]
    g = M.gather(m, pos)
    assert M.is_mapped(g) and np.array_equal(g, a[pos]) and Path(g.filename).parent == tmp_path
    assert M.gather(m, pos).filename == g.filename  # named by what it holds: reused
    assert M.gather(m, np.arange(700)) is m
    assert not M.is_mapped(M.gather(a, pos)) and np.array_equal(M.gather(a, pos), a[pos])
    c = M.concatenate([m, g])
    assert M.is_mapped(c) and np.array_equal(c, np.concatenate([a, a[pos]]))
    assert np.array_equal(M.concatenate([a, g]), np.concatenate([a, a[pos]]))
    empty = M.gather(m, np.array([], dtype=np.int64))
    assert empty.shape == (0, 6, 6, 3)


def test_a_mapped_file_of_the_wrong_shape_is_an_error_naming_it(tmp_path: Path) -> None:
    a = np.zeros((4, 2, 2, 3), np.uint8)
    M.write_mapped(tmp_path / "a.npy", a.shape, [a])
    with pytest.raises(Exception, match=r"a.npy: holds uint8 \(4, 2, 2, 3\), expected uint8 \(5, 2, 2, 3\)"):
        M.open_mapped(tmp_path / "a.npy", (5, 2, 2, 3))


def test_an_array_pruned_between_the_check_and_the_open_is_written_again(tmp_path, monkeypatch) -> None:
    """`dermbench cache prune` may remove a derived array after a run saw it there and before the
    run maps it; the run writes it again instead of failing."""
    a = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    path = tmp_path / "rows-x.npy"
    M.write_mapped(path, a.shape, [a])
    opened = M.open_mapped

    def pruned_first(p, shape):
        monkeypatch.setattr(M, "open_mapped", opened)  # once: the next open finds the new file
        Path(p).unlink()
        return opened(p, shape)

    monkeypatch.setattr(M, "open_mapped", pruned_first)
    again = M.write_mapped(path, a.shape, [a])
    assert np.array_equal(again, a) and path.is_file()


def test_mapped_cache_returns_the_arrays_of_the_in_memory_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "SHARD", 16)  # rows spread over several shards
    rec = load_synthetic(SyntheticOptions(n=50, image_size=8, priors={"a": 1, "b": 1}))
    rows = np.array([49, 3, 17, 33, 16, 0, 48])
    resident, kept_r, _ = load_images(rec, rows, 8, tmp_path, progress=False)
    mapped, kept_m, _ = load_images(rec, rows, 8, tmp_path, progress=False, memory="mapped")
    assert not M.is_mapped(resident) and M.is_mapped(mapped)
    assert kept_r.tolist() == kept_m.tolist() == rows.tolist()
    assert np.array_equal(resident, mapped)
    again, _, _ = load_images(rec, rows, 8, tmp_path, progress=False, memory="mapped")
    assert again.filename == mapped.filename  # one file per row set, shared by every run that asks


@needs_proc
def test_a_prepared_runs_splits_are_read_from_cache_files(tmp_path: Path) -> None:
    from dermbench.data.prepare import prepare_data
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config

    reg = load_plugins().registries
    task = reg.tasks.get("ham7")
    settings = {"profile": "smoke", "image_size": 16, "synthetic_n": 120, "cache_dir": str(tmp_path)}
    split_images = {}
    for memory in ("mapped", "resident"):
        cfg = resolve_config(task, reg.methods.get("lmf"), {}, {**settings, "image_memory": memory})
        data = prepare_data(cfg, task, reg, progress=False)
        split_images[memory] = {name: s.images.clone() for name, s in data.splits.items()}
        for name, split in data.splits.items():
            files = mapped_files_of(split.images.data_ptr())
            if memory == "mapped":
                assert files and Path(files[0]).is_relative_to(tmp_path), name
            else:
                assert not any(Path(f).is_relative_to(tmp_path) for f in files), name
    for name, images in split_images["mapped"].items():
        assert (images == split_images["resident"][name]).all()


def test_a_runs_metrics_are_unchanged_by_mapped_images(tmp_path: Path) -> None:
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import execute

    plugins = load_plugins()
    reg = plugins.registries
    task = reg.tasks.get("ham7")
    metrics = {}
    for memory in ("mapped", "resident"):
        settings = {"profile": "smoke", "image_size": 16, "synthetic_n": 120, "epochs": 2,
                    "cache_dir": str(tmp_path / "cache"), "out": str(tmp_path / memory), "image_memory": memory}  # fmt: skip
        cfg = resolve_config(task, reg.methods.get("lmf"), {}, settings)
        record, _ = execute(cfg, plugins, resume=False, force=False, progress=False, log=lambda *a: None)
        metrics[memory] = record["metrics"]
        assert record["config"]["image_memory"] == memory
    assert metrics["mapped"] == metrics["resident"]


def test_an_unknown_image_memory_mode_is_refused() -> None:
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config

    reg = load_plugins().registries
    with pytest.raises(ConfigError, match=r"image_memory must be one of mapped, resident, got 'ram'"):
        resolve_config(reg.tasks.get("ham7"), reg.methods.get("lmf"), {}, {"image_memory": "ram"})


def test_subsets_and_unions_of_mapped_splits_stay_mapped(tmp_path: Path) -> None:
    import pandas as pd
    import torch

    from dermbench.data.split_data import concat_splits, subset, with_images

    a = np.random.default_rng(1).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(40)]})
    split = with_images("train", M.write_mapped(tmp_path / "a.npy", a.shape, [a]), np.arange(40) % 3, frame)
    resident = with_images("train", a.copy(), np.arange(40) % 3, frame)
    assert split.mapped is not None and resident.mapped is None
    pos = np.array([5, 1, 30, 2])
    fold, fold_r = subset(split, pos, "fold"), subset(resident, pos, "fold")
    assert fold.mapped is not None and torch.equal(fold.images, fold_r.images)
    assert fold.frame["image_id"].tolist() == ["i5", "i1", "i30", "i2"] and fold.y.tolist() == [2, 1, 0, 2]
    pool, pool_r = concat_splits("pool", split, fold), concat_splits("pool", resident, fold_r)
    assert pool.mapped is not None and pool_r.mapped is None and torch.equal(pool.images, pool_r.images)
    assert concat_splits("mixed", split, fold_r).mapped is None  # one split in memory: the union is too


def _resident_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return 0


@needs_proc
def test_released_pages_leave_resident_memory_and_read_back_the_same(tmp_path: Path) -> None:
    rows = np.random.default_rng(2).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8)
    M.write_mapped(tmp_path / "big.npy", (640, 64, 64, 3), (rows for _ in range(10)))  # 7.5 MiB
    m = np.load(tmp_path / "big.npy", mmap_mode="c")  # not watched by the releasing thread
    M.release_pages(m)
    before = _resident_file_kib()
    total = int(m.sum(dtype=np.int64))  # every page read
    assert _resident_file_kib() - before > 6000
    M.release_pages(m)
    assert _resident_file_kib() - before < 1000
    assert int(m.sum(dtype=np.int64)) == total == 10 * int(rows.sum(dtype=np.int64))


def test_a_resident_run_holds_its_splits_once_not_the_dataset_and_its_splits(tmp_path: Path) -> None:
    """numpy reports its buffers to tracemalloc: the peak while a resident run's data is prepared
    (from a warm cache) is its splits' images, not the dataset's decoded array beside them."""
    import tracemalloc

    from dermbench.data.prepare import prepare_data
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config

    reg = load_plugins().registries
    task = reg.tasks.get("ham7")
    settings = {"profile": "smoke", "image_size": 48, "synthetic_n": 800, "cache_dir": str(tmp_path)}
    cfg = resolve_config(task, reg.methods.get("lmf"), {}, {**settings, "image_memory": "resident"})
    prepare_data(cfg, task, reg, progress=False)  # decodes into the cache
    tracemalloc.start()
    try:
        data = prepare_data(cfg, task, reg, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    held = sum(s.images.numel() for s in data.splits.values())
    assert held == 800 * 48 * 48 * 3
    assert peak < 1.25 * held, (peak, held)  # two copies (2x) before the fix
