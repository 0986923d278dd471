"""A sweep's runs as jobs: built on the driver, run on a worker, landed back in the results folder.

The driver resolves every run's config (a bad option fails there, before anything is sent), skips
the runs whose complete record is already in the results folder (a run is identified by the hash
of its resolved config, as in ``dermbench run``), and hands the rest to a launcher as
:class:`RunJob` objects. A worker calls :func:`run_job`: it rebuilds the driver's plugins, runs the
job with ``resume`` on (so a retried job continues from its last checkpoint when the worker shares
the checkpoint folder) and returns a :class:`JobOutcome` carrying the record and the run folder's
files, checkpoints left out. :func:`land` writes those into the driver's results folder unless
they are already there (a shared filesystem).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dermbench.errors import DermbenchError
from dermbench.plugins.contract import JobOutcome, RunJob

NOT_SHIPPED = ("checkpoints",)  # model weights stay where they were trained
MAX_SHIPPED_BYTES = 256 * 1024 * 1024


def run_job(job: RunJob, plugins: Any = None) -> JobOutcome:
    """Run one job (on a worker, or in the driver's process with its ``plugins``)."""
    from dermbench.plugins import load_plugins
    from dermbench.run.pipeline import execute

    if plugins is None:
        plugins = load_plugins(list(job.plugin_extra), autoload=job.plugin_autoload)
    log = (lambda *a: None) if job.quiet else print
    try:
        record, run_dir = execute(job.cfg, plugins, resume=True, force=False, progress=not job.quiet, log=log)
    except DermbenchError as exc:
        return JobOutcome(job.index, job.label, None, str(exc))
    return JobOutcome(job.index, job.label, record, None, run_files(run_dir))


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The run folder's files as they travel back (relative path -> bytes), checkpoints left out."""
    out: dict[str, bytes] = {}
    total = 0
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in NOT_SHIPPED or path.name.endswith(".lock"):
            continue
        total += path.stat().st_size
        if total > MAX_SHIPPED_BYTES:
            raise DermbenchError(
                f"run folder {run_dir}: more than {MAX_SHIPPED_BYTES >> 20} MiB to send back"
            )
        out[str(rel)] = path.read_bytes()
    return out


def land(outcome: JobOutcome, run_dir: Path) -> bool:
    """Write a finished job's files into ``run_dir`` on the driver unless its complete record is
    already there; True when something was written."""
    from dermbench.run.record import RECORD_NAME

    if outcome.record is None:
        return False
    here = run_dir / RECORD_NAME
    if here.is_file():
        try:
            existing = json.loads(here.read_text())
        except (OSError, ValueError):  # a broken record is replaced by the one that came back
            existing = {}
        if existing.get("status") == "complete" and existing.get("run_id") == outcome.record.get("run_id"):
            return False
    for rel, data in sorted(outcome.files.items(), key=lambda kv: kv[0] == RECORD_NAME):  # the record last
        target = run_dir / rel
        if not target.resolve().is_relative_to(run_dir.resolve()):
            raise DermbenchError(f"job {outcome.label}: refusing to write {rel} outside {run_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return True


def clear_for_force(run_dir: Path) -> None:
    """``--force`` on a sweep: the run starts over, so its folder goes before the job is sent
    (a retried job must resume, never wipe what its first attempt saved)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
