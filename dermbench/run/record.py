"""Run records: one JSON per run, written atomically, the only thing leaderboards read."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from dermbench.errors import DataError

SCHEMA = "dermbench.run/1"
RECORD_NAME = "record.json"
PACKAGES = (
    "dermbench",
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pandas",
    "scikit-learn",
    "fairlearn",
    "pluggy",
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".record-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(_plain(data), fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # as any other file the run writes (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_record(path: str | Path) -> dict:
    """A record from a run dir or a record.json path; a clear DataError for anything else."""
    p = Path(path)
    if p.is_dir():
        p = p / RECORD_NAME
    if not p.is_file():
        raise DataError(f"no run record at {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
    if schema != SCHEMA:
        raise DataError(f"{p}: not a dermbench run record (schema {schema!r}, expected {SCHEMA!r})")
    return data


COPIES_MARKER = ".dermbench-copies"
"""A file that marks a folder of copies of run records (a tracking store's artifacts, an archive):
scanners for results pass over it, so a copy is never counted or verified as a run of its own."""


def find_records(root: Path) -> list[Path]:
    """Every run record under ``root`` in path order, passing over checkpoints and folders marked
    with :data:`COPIES_MARKER`."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if COPIES_MARKER in files:
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if d != "checkpoints"]
        if RECORD_NAME in files:
            out.append(Path(folder) / RECORD_NAME)
    return sorted(out)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def source_revision(folder: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the dermbench checkout that ran (``folder``: the package's own), and
    whether tracked files differed from it; None for an installed package outside a checkout or
    where git is not installed. A version number alone does not say which code made a record."""
    folder = Path(folder or Path(__file__).resolve().parents[1])

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or git("ls-files", "--error-unmatch", "--", str(folder / "run" / "record.py")) is None:
        return None  # not a checkout, or a copy installed inside another repository's ignored folder
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "uncommitted_changes": None if changes is None else bool(changes)}


def environment(device: str, plugin_versions: dict[str, str | None], processes: int = 1) -> dict[str, Any]:
    """Where the run ran; ``processes`` > 1 under torchrun (DistributedDataParallel, docs/cluster.md)."""
    import torch

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),  # a CPU reduction's rounding depends on it
        "packages": package_versions(),
        "plugins": plugin_versions,
        "source": source_revision(),
    }
    if processes > 1:
        out["processes"] = processes
    return out
