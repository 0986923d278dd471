"""The shared SQLite store: made once however many runs start together, a killed creator's
temporary file cleared, an existing store left as it is, and calls tried again only while SQLite
reports the database locked."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from dermbench_mlflow.store import RetryingClient, ready_sqlite_store, sqlite_path


class FlakyClient:
    """Raises ``errors`` in turn, then returns how many calls it took."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls, self.tracking_uri = list(errors), 0, "sqlite:///x.db"

    def log_metric(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def locked() -> Exception:
    return sqlite3.OperationalError("database is locked")


def test_a_locked_database_is_tried_again_and_the_call_succeeds():
    flaky = FlakyClient([locked(), locked()])
    assert RetryingClient(flaky, tries=4, pause_s=0).log_metric("run", "loss", 1.0) == 3
    assert flaky.calls == 3


def test_other_errors_are_raised_at_once_and_a_lock_that_outlasts_the_tries_is_raised():
    flaky = FlakyClient([ValueError("bad metric name")])
    with pytest.raises(ValueError, match="bad metric name"):
        RetryingClient(flaky, tries=4, pause_s=0).log_metric("run", "x", 1.0)
    assert flaky.calls == 1
    stuck = FlakyClient([locked() for _ in range(5)])
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        RetryingClient(stuck, tries=3, pause_s=0).log_metric("run", "x", 1.0)
    assert stuck.calls == 3
    assert RetryingClient(stuck).tracking_uri == "sqlite:///x.db"  # attributes pass through


def test_sqlite_path_names_the_database_file_only_for_sqlite_stores(tmp_path):
    assert sqlite_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db"
    assert sqlite_path("http://tracking:5000") is None and sqlite_path("file:///x/mlruns") is None


def _start_a_run(db: str, index: int, ready: bool) -> None:
    from mlflow.tracking import MlflowClient

    if ready:
        ready_sqlite_store(Path(db), None)
    client = RetryingClient(MlflowClient(tracking_uri=f"sqlite:///{db}"))
    exp = client.get_experiment_by_name("race")
    exp_id = exp.experiment_id if exp else _create_experiment(client)
    run = client.create_run(exp_id, run_name=f"run-{index}")
    client.log_metric(run.info.run_id, "loss", float(index))
    client.set_terminated(run.info.run_id)


def _create_experiment(client) -> str:
    try:
        return client.create_experiment("race")
    except Exception:  # another run created it between the lookup and the creation
        return client.get_experiment_by_name("race").experiment_id


def _race(db: Path, runs: int, ready: bool) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_start_a_run, args=(str(db), i, ready)) for i in range(runs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    return [p.exitcode for p in procs]


def test_runs_that_start_together_all_land_in_one_store(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    assert _race(db, 4, ready=True) == [0, 0, 0, 0]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run-{i}" for i in range(4)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not list(db.parent.glob(".mlflow.db.*.tmp"))


def test_a_killed_creators_temporary_file_is_cleared_and_a_made_store_is_left_alone(tmp_path):
    db = tmp_path / "mlflow.db"
    stale = tmp_path / ".mlflow.db.99999.tmp"
    stale.write_bytes(b"half a migration")
    ready_sqlite_store(db, None)
    assert not stale.exists() and db.is_file()
    tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
    made = db.stat().st_mtime_ns, db.read_bytes()
    ready_sqlite_store(db, None)
    assert (db.stat().st_mtime_ns, db.read_bytes()) == made
