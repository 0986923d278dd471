"""One dermbench run as one MLflow run; one sweep as a parent run per task, its runs nested.

- Experiment: the task's name. Run name: the dermbench run id, also tag ``dermbench.run_id``.
- At the start: the resolved config as parameters, tags for method, plugin, protocol, seed, data
  fingerprint and benchmark version. A *resumed* dermbench run finds its unfinished MLflow run by
  that tag and continues it: one MLflow run per dermbench run, whatever the kills.
- Each epoch: the history row's numbers as metrics at the row's step (its index in the record's
  history); at the end every row not yet logged is logged (a run killed between its checkpoint and
  the hook), so the metric history equals the record's.
- At the end: the record's final numbers (``test.macro_f1``, ``gate.test.coverage``...), the record,
  the prediction files and the run report (its HTML page and plots) as artifacts; status FINISHED.
- A sweep: a parent run per task, named ``sweep <sweep_id>`` (found again when the same sweep is
  relaunched), each run of the sweep nested under it (``mlflow.parentRunId``).
- A process killed mid-run cannot end its MLflow run. Each run and sweep parent is tagged with its
  host and process id (``dermbench.host``, ``dermbench.pid``); when the next run starts in the same
  store, every RUNNING run of this host whose process is gone is marked KILLED.

- The local SQLite store is made once, under a file lock, however many runs start together, and a
  call that finds it locked is tried again (``store.py``).

mlflow is imported when the first run starts, never when dermbench starts.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.run.record import COPIES_MARKER
from dermbench_mlflow.flatten import final_metrics, params_of, resolved_params, row_metrics, run_tags
from dermbench_mlflow.settings import Settings
from dermbench_mlflow.store import RetryingClient, ready_sqlite_store, sqlite_path

BATCH = 100  # MLflow takes at most 100 parameters or tags, 1,000 metrics, per batch


@dataclass
class Tracked:
    """A dermbench run being tracked: its MLflow client and run, and the steps logged so far."""

    client: Any
    mlflow_run_id: str
    steps: set[int] = field(default_factory=set)


def _chunks(items: list, n: int = BATCH) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class MlflowTracker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients: dict[str, Any] = {}
        self.sweep: dict | None = None
        self.parents: dict[str, str] = {}  # experiment id -> the sweep's parent run

    # --- the store ---
    def client(self, out: str) -> Any:
        from mlflow.tracking import MlflowClient

        uri = self.settings.store_uri(out)
        if uri not in self.clients:
            logging.getLogger("mlflow").setLevel(self.settings.log_level)  # its INFO lines: off by default
            logging.getLogger("alembic").setLevel(self.settings.log_level)
            db = sqlite_path(uri)
            if db is not None:  # made once, under a lock, whatever runs start with it (store.py)
                ready_sqlite_store(db, self.settings.artifact_root(out))
                (db.parent / COPIES_MARKER).touch()  # its record copies are not runs of the results folder
            self.clients[uri] = RetryingClient(MlflowClient(tracking_uri=uri))
        return self.clients[uri]

    def experiment(self, client: Any, name: str, out: str) -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        root = self.settings.artifact_root(out)
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)

    def find_run(self, client: Any, experiment_id: str, tag: str, value: str, unfinished: bool) -> str | None:
        query = f"tags.`{tag}` = '{value}'" + (" and attributes.status != 'FINISHED'" if unfinished else "")
        runs = client.search_runs(
            [experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
        )
        return runs[0].info.run_id if runs else None

    # --- a run ---
    def start(self, record: dict, resumed: bool) -> Tracked:
        out = str((record.get("config") or {}).get("out") or "runs")
        client = self.client(out)
        mark_killed(client)
        exp = self.experiment(client, str(record["task"]["name"]), out)
        run_id = str(record["run_id"])
        existing = (
            self.find_run(client, exp, "dermbench.run_id", run_id, unfinished=True) if resumed else None
        )
        if existing is not None:
            client.update_run(existing, status="RUNNING")
            for k, v in process_tags().items():
                client.set_tag(existing, k, v)
            logged = client.get_metric_history(existing, "train_loss")
            return Tracked(client, existing, {m.step for m in logged})
        tags = {**run_tags(record), **process_tags()}
        parent = self.parent_for(client, exp, out)
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(exp, run_name=run_id, tags=tags)
        self.log_params(client, run.info.run_id, params_of(record.get("config") or {}))
        return Tracked(client, run.info.run_id)

    def log_params(self, client: Any, mlflow_run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        for chunk in _chunks([Param(k, v) for k, v in params.items()]):
            client.log_batch(mlflow_run_id, params=chunk)

    def log_row(self, tracked: Tracked, row: dict, step: int) -> None:
        from mlflow.entities import Metric

        if step in tracked.steps:
            return
        stamp = _now_ms()
        metrics = [Metric(k, v, stamp, step) for k, v in row_metrics(row).items()]
        for chunk in _chunks(metrics, 1000):
            tracked.client.log_batch(tracked.mlflow_run_id, metrics=chunk)
        tracked.steps.add(step)

    def finish(self, tracked: Tracked, record: dict, run_dir: str) -> None:
        from mlflow.entities import Metric

        for step, row in enumerate(record.get("history") or []):
            self.log_row(tracked, row, step)
        stamp = _now_ms()
        finals = [Metric(k, v, stamp, 0) for k, v in final_metrics(record).items()]
        for chunk in _chunks(finals, 1000):
            tracked.client.log_batch(tracked.mlflow_run_id, metrics=chunk)
        self.log_params(tracked.client, tracked.mlflow_run_id, resolved_params(record))
        self.log_files(tracked, record, Path(run_dir))
        tracked.client.set_terminated(tracked.mlflow_run_id, status="FINISHED")

    def log_files(self, tracked: Tracked, record: dict, run_dir: Path) -> None:
        client, rid = tracked.client, tracked.mlflow_run_id
        client.log_artifact(rid, str(run_dir / "record.json"))
        files = {
            *(record.get("predictions") or {}).values(),
            *((record.get("gate") or {}).get("scores") or {}).values(),
        }
        for rel in sorted(map(str, files)):
            path = run_dir / rel
            if path.is_file():
                client.log_artifact(rid, str(path), artifact_path=str(Path(rel).parent))
        if self.settings.plots:
            from dermbench.leaderboard import build_report

            with tempfile.TemporaryDirectory() as tmp:
                build_report(run_dir, Path(tmp) / "report")
                client.log_artifacts(rid, str(Path(tmp) / "report"), artifact_path="report")

    def fail(self, tracked: Tracked) -> None:
        tracked.client.set_terminated(tracked.mlflow_run_id, status="FAILED")

    # --- a sweep ---
    def parent_for(self, client: Any, experiment_id: str, out: str) -> str | None:
        """The sweep's parent run in this experiment (created, or found from an earlier launch)."""
        if self.sweep is None:
            return None
        if experiment_id not in self.parents:
            sid = str(self.sweep["sweep_id"])
            found = self.find_run(client, experiment_id, "dermbench.sweep_id", sid, unfinished=False)
            if found is None:
                found = client.create_run(experiment_id, run_name=f"sweep {sid}",
                                          tags={"dermbench.sweep_id": sid, **process_tags()}).info.run_id  # fmt: skip
                self.log_params(client, found, params_of({k: v for k, v in self.sweep.items() if k != "out"}))
            else:
                client.update_run(found, status="RUNNING")
                for k, v in process_tags().items():
                    client.set_tag(found, k, v)
            self.parents[experiment_id] = found
        return self.parents[experiment_id]

    def end_sweep(self, records: list[dict], failures: list[dict]) -> None:
        if self.sweep is None:
            return
        client = self.client(str(self.sweep["out"]))
        for parent in self.parents.values():
            client.log_metric(parent, "runs_recorded", float(len(records)))
            client.log_metric(parent, "runs_failed", float(len(failures)))
            client.set_terminated(parent, status="FAILED" if failures else "FINISHED")
        self.sweep, self.parents = None, {}


def process_tags() -> dict[str, str]:
    """Which process runs a tracked run, so that a later process can tell that it died."""
    return {"dermbench.host": socket.gethostname(), "dermbench.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def mark_killed(client: Any) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose process is gone; their MLflow ids."""
    host, killed = socket.gethostname(), []
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return killed
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get("dermbench.pid", "")
        if (
            tags.get("dermbench.host") == host
            and pid.isdigit()
            and int(pid) != os.getpid()
            and not _alive(int(pid))
        ):
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    return killed


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
