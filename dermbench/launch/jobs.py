"""A sweep's runs as jobs: built on the driver, run on a worker, landed back in the results folder.

The driver resolves every run's config (a bad option fails there, before anything is sent), skips
the runs whose complete record is already in the results folder (a run is identified by the hash
of its resolved config, as in ``dermbench run``), and hands the rest to a launcher as
:class:`RunJob` objects. A worker calls :func:`run_job`: it moves to the driver's working folder (so
a relative ``--out`` or ``--data`` names the driver's folder, not one where ``ray start`` ran),
checks that it sees the marker the driver left in the results folder (a worker that does not share
that folder refuses the job in one line instead of training into a folder nobody reads), rebuilds
the driver's plugins, runs the job with ``resume`` on (a retried job continues from its last
checkpoint) and returns a :class:`JobOutcome` carrying the record and the run folder's files,
checkpoints left out. :func:`land` writes those into the driver's results folder unless they are
already there.

``--force`` clears a run's folder on the worker, at the start of the job's first attempt, under the
run's lock: nothing is deleted while the launcher may still fail to connect, and a retry resumes
what the first attempt saved. A job whose run another process holds (the job of an earlier driver
that was killed) waits for it, then reuses its record or resumes its checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dermbench.errors import DermbenchError
from dermbench.plugins.contract import JobOutcome, RunJob

NOT_SHIPPED = ("checkpoints",)  # model weights stay where they were trained
MAX_SHIPPED_BYTES = 256 * 1024 * 1024
SWEEPS_FOLDER = ".dermbench-sweeps"  # in a results folder: one marker folder per sweep in flight


def run_job(job: RunJob, plugins: Any = None) -> JobOutcome:
    """Run one job (on a worker, or in the driver's process with its ``plugins``)."""
    from dermbench.plugins import load_plugins
    from dermbench.run.pipeline import execute

    log = (lambda *a: None) if job.quiet else print
    try:
        force = enter_driver_folder(job)
        if plugins is None:
            plugins = load_plugins(list(job.plugin_extra), autoload=job.plugin_autoload)
        record, run_dir = execute(job.cfg, plugins, resume=not force, force=force, progress=not job.quiet,
                                  log=log, wait_for_lock=True)  # fmt: skip
    except DermbenchError as exc:
        return JobOutcome(job.index, job.label, None, str(exc))
    return JobOutcome(job.index, job.label, record, None, run_files(run_dir))


def enter_driver_folder(job: RunJob) -> bool:
    """Move to the driver's working folder and check that its results folder is this one; True when
    this attempt must start the run over (``--force``, first attempt)."""
    host = socket.gethostname()
    if job.workdir:
        if not Path(job.workdir).is_dir():
            raise DermbenchError(
                f"worker {host}: the driver's folder {job.workdir} is not here; a cluster sweep needs its "
                f"folders on a filesystem every node shares"
            )
        os.chdir(job.workdir)
    if not job.sweep_token:
        return job.force
    marker = sweep_marker(job.cfg.out, job.sweep_token)
    if not marker.is_dir():
        raise DermbenchError(
            f"worker {host}: the results folder {Path(job.cfg.out).resolve()} is not the driver's (its "
            f"sweep marker is not there): put --out on a filesystem every node shares"
        )
    started = marker / f"{job.cfg.run_id}.started"
    if not job.force or started.exists():  # not forced, or a retry: resume what was saved
        return False
    started.touch()
    return True


def sweep_marker(out: str, token: str) -> Path:
    return Path(out).resolve() / SWEEPS_FOLDER / token


@contextlib.contextmanager
def driver_markers(outs: set[str]) -> Iterator[str]:
    """The marker a sweep's workers look for in each results folder, there while the sweep runs;
    a results folder the sweep made and left empty goes with it."""
    token = uuid.uuid4().hex
    made = {out for out in outs if not Path(out).resolve().exists()}
    for out in outs:
        sweep_marker(out, token).mkdir(parents=True)
    try:
        yield token
    finally:
        for out in outs:
            marker = sweep_marker(out, token)
            shutil.rmtree(marker, ignore_errors=True)
            for folder in (marker.parent, *([marker.parent.parent] if out in made else [])):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()


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
