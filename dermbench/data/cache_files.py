"""What the decode-once cache holds on disk, and pruning of the arrays it can make again.

Under ``<cache_dir>/images/<key>/`` (``dermbench.data.cache``) a dataset's decoded images are
``shard-*.npy`` files: costly to make again (every image decoded anew). Beside them, runs write
derived arrays read through memory maps (``dermbench.data.mapped``): ``rows-*.npy`` (a run's rows
in its order, one split's rows) and ``concat-*.npy`` (several datasets one after the other). Each
distinct split of a dataset is another copy of its images on disk, so derived arrays accumulate
over seeds and splits; any of them is written again from the shards in seconds when a run needs it.

A derived array's modification time is when a run last mapped it (:func:`mark_used`), so
:func:`prune_derived` removes those no run has used for a while. Shards are never pruned here:
delete a dataset's folder to decode it again. Removing a file a running process has mapped is safe
on POSIX systems: the process keeps its pages until it unmaps them, and a run that finds an array
gone between seeing it and mapping it writes it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dermbench.errors import ConfigError

DERIVED_PATTERNS = ("rows-*.npy", "concat-*.npy")
SHARD_PATTERN = "shard-*.npy"


@dataclass(frozen=True)
class CacheFolder:
    """One dataset at one size in the cache: its decoded shards and the derived arrays beside them."""

    path: Path
    meta: dict  # meta.json: the dataset, its path, rows, size and resize policy ({} when absent)
    shard_bytes: int
    derived: tuple[Path, ...]
    derived_bytes: int
    last_used: float  # the newest modification time of its files (seconds since the epoch)
    meta_error: str = ""  # why meta.json could not be read ("" when it was, or is absent)

    def describe(self) -> str:
        if self.meta_error:
            return f"unknown dataset: {self.meta_error}"
        what = f"{self.meta.get('dataset', '?')} {self.meta.get('size', '?')} px"
        return f"{what} ({self.meta.get('path') or 'generated'})"


def mark_used(path: Path) -> None:
    """Record that a run maps ``path`` now (its modification time); a read-only cache is left as is."""
    with contextlib.suppress(OSError):  # a cache on a read-only disk: nothing there is pruned either
        os.utime(path)


def _derived_files(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for pattern in DERIVED_PATTERNS for p in folder.glob(pattern)))


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def _meta(folder: Path) -> tuple[dict, str]:
    """``meta.json`` of ``folder`` and, when it is there but cannot be read, why."""
    path = folder / "meta.json"
    if not path.is_file():
        return {}, ""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, f"{path.name} unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(meta, dict):
        return {}, f"{path.name} holds {type(meta).__name__}, not an object"
    return meta, ""


def cache_folders(cache_dir: Path) -> list[CacheFolder]:
    """Every dataset folder of the image cache under ``cache_dir``, the most recently used first."""
    root = Path(cache_dir) / "images"
    out = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        files = [p for p in folder.iterdir() if p.is_file()]
        derived = _derived_files(folder)
        meta, meta_error = _meta(folder)
        out.append(
            CacheFolder(
                path=folder, meta=meta, shard_bytes=_size(folder.glob(SHARD_PATTERN)),
                derived=derived, derived_bytes=_size(derived),
                last_used=max((p.stat().st_mtime for p in files), default=0.0), meta_error=meta_error,
            )
        )  # fmt: skip
    return sorted(out, key=lambda f: -f.last_used)


def prune_derived(cache_dir: Path, older_than_days: float, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove (or with ``dry_run`` only list) the derived arrays no run has mapped for
    ``older_than_days`` days; each as ``(path, bytes)``."""
    if older_than_days < 0:
        raise ConfigError(f"--older-than must be >= 0 days, got {older_than_days:g}")
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for folder in cache_folders(cache_dir):
        for path in folder.derived:
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed since it was listed (another prune)
                continue
            if stat.st_mtime <= cutoff:
                if not dry_run:
                    path.unlink(missing_ok=True)
                removed.append((path, stat.st_size))
    return removed


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def usage_text(cache_dir: Path) -> str:
    """The cache's folders as a table: decoded shards, derived arrays, when last used."""
    folders = cache_folders(cache_dir)
    if not folders:
        return f"{cache_dir}: no decoded images cached"
    lines = [
        f"{cache_dir}/images",
        f"{'folder':<34} {'shards':>10} {'derived':>10} {'files':>5}  last used  dataset",
    ]
    for f in folders:
        used = time.strftime("%Y-%m-%d", time.localtime(f.last_used))
        lines.append(
            f"{f.path.name:<34} {gib(f.shard_bytes):>10} {gib(f.derived_bytes):>10} {len(f.derived):>5}  "
            f"{used} {f.describe()}"
        )
    shards, derived = sum(f.shard_bytes for f in folders), sum(f.derived_bytes for f in folders)
    lines.append(f"total: {gib(shards)} of decoded shards, {gib(derived)} of derived arrays "
                 "(made again when needed: `dermbench cache prune` removes unused ones)")  # fmt: skip
    return "\n".join(lines)
