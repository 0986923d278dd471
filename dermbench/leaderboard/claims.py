"""What a run record claims beside its metrics, checked against what its files and code show.

``leaderboard verify`` recomputes every metric from the saved predictions
(:mod:`dermbench.leaderboard.verify`); these checks cover the rest of what a board shows:

- versions: the benchmark version must be a released one (or the one installed), a plugin's
  version no newer than the installed plugin's, a recorded commit one the checkout has;
- split sizes: ``data.splits.<split>.n`` and class counts are those of the saved predictions;
- training budget: each stage's history has one row per epoch, 1..k, with k the stage's epochs
  unless early stopping was on, and a stage whose epochs no option or recipe sets has the run's
  ``epochs``; the scored epoch is one the history has;
- predictions: every prediction file lies inside the run folder and has the sha256 the record
  names (records made before hashes were recorded have none to compare).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from packaging.version import InvalidVersion, Version

RELEASED = ("0.1.0",)  # benchmark versions a record may name (with the installed one)
REPO = Path(__file__).resolve().parents[2]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def version_problems(record: dict) -> Iterator[str]:
    import dermbench

    env = record.get("environment") or {}
    stated = (env.get("packages") or {}).get("dermbench")
    if stated and stated not in {*RELEASED, dermbench.__version__}:
        yield f"environment.packages.dermbench {stated!r} is no released version ({', '.join(RELEASED)})"
    method = record.get("method") or {}
    version = method.get("plugin_version")
    plugin = _plugin_dist(method.get("plugin")) if version else None
    if plugin:
        try:
            if Version(str(version)) > Version(metadata.version(plugin)):
                yield f"method.plugin_version {version!r} is newer than the installed {plugin} {metadata.version(plugin)}"
        except InvalidVersion:
            yield f"method.plugin_version {version!r} is not a version"
    commit = (env.get("source") or {}).get("commit")
    if commit and not _commit_known(str(commit)):
        yield f"environment.source.commit {str(commit)[:12]} is not a commit of this checkout"


def _plugin_dist(plugin: Any) -> str | None:
    """The installed distribution of a plugin named as its entry point (``dermbench-zoo``)."""
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "dermbench" and ep.name == plugin:
                return dist.metadata["Name"]
    return None


def _commit_known(commit: str) -> bool:
    """Whether this checkout has ``commit`` (True when there is no git to ask: nothing to compare)."""
    if not (REPO / ".git").exists():
        return True
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return True
    return done.returncode == 0


def split_size_problems(record: dict, frames: dict[str, pd.DataFrame], classes: list[str]) -> Iterator[str]:
    splits = (record.get("data") or {}).get("splits") or {}
    for name, frame in frames.items():
        stated = splits.get(name)
        if not isinstance(stated, dict):
            continue
        if stated.get("n") != len(frame):
            yield f"data.splits.{name}.n is {stated.get('n')!r}, the predictions hold {len(frame)} images"
        counts = stated.get("class_counts")
        if isinstance(counts, dict):
            found = frame["label"].astype(int).value_counts().to_dict()
            real = {c: int(found.get(i, 0)) for i, c in enumerate(classes)}
            if {c: counts.get(c, 0) for c in classes} != real:
                yield f"data.splits.{name}.class_counts differ from the predictions' labels"


def budget_problems(record: dict) -> Iterator[str]:
    cfg = record.get("config") or {}
    history = record.get("history") or []
    recipe = {s.get("name"): s for s in (record.get("method") or {}).get("recipe", {}).get("stages", [])}
    options = cfg.get("options") or {}
    for stage in (record.get("resolved") or {}).get("stages") or []:
        name, epochs = stage.get("stage"), stage.get("epochs")
        own = recipe.get(str(name).split(":")[0], {}).get("epochs")
        if own is None and f"stage.{name}.epochs" not in options and epochs != cfg.get("epochs"):
            yield f"config.epochs is {cfg.get('epochs')!r} but stage {name!r} ran {epochs!r} epochs"
        by_fold: dict[Any, list[int]] = {}
        for row in history:
            if row.get("stage") == name:
                by_fold.setdefault(row.get("fold"), []).append(row.get("epoch"))
        for fold, seen in by_fold.items():
            where = f"stage {name!r}" + ("" if fold is None else f" fold {fold}")
            if seen != list(range(1, len(seen) + 1)):
                yield f"the history of {where} is not one row per epoch from 1"
            elif isinstance(epochs, int) and (
                len(seen) > epochs or (len(seen) < epochs and not cfg.get("early_stopping"))
            ):
                yield f"the history of {where} has {len(seen)} epochs, the stage claims {epochs}"
    best = record.get("best_epoch")
    epochs_seen = {r.get("epoch") for r in history}
    for b in best if isinstance(best, list) else [best]:  # one per fold of a CV ensemble
        if b is not None and history and b not in epochs_seen:
            yield f"best_epoch {b!r} is no epoch of the history"


def outside_run_folder(record: dict, run_dir: Path) -> list[str]:
    """Prediction files named outside the run folder: never read (another run's files)."""
    root = run_dir.resolve()
    return [
        f"predictions of {split} ({rel}) lie outside the run folder"
        for split, rel in (record.get("predictions") or {}).items()
        if root not in (run_dir / str(rel)).resolve().parents
    ]


def prediction_problems(record: dict, run_dir: Path) -> Iterator[str]:
    """Each prediction file must be the one whose sha256 the record names."""
    hashes = record.get("predictions_sha256") or {}
    for split, rel in (record.get("predictions") or {}).items():
        path = run_dir / str(rel)
        if split in hashes and path.is_file() and file_sha256(path) != hashes[split]:
            yield f"predictions of {split} ({rel}) are not the file the record names (sha256 differs)"
