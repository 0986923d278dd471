"""The dermbench-mlflow plugin: the lifecycle hooks, each guarded so tracking never stops a run.

Settings come from the environment (``dermbench_mlflow.settings``). A failure of the tracking
store or server (unwritable folder, server down) warns once for the run it hit, naming the run and
the error, and that run goes on untracked; the benchmark's own record is never touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from dermbench.hookspecs import hookimpl
from dermbench_mlflow.settings import read_settings

_STATE: dict[str, Any] = {"tracker": None, "mlflow": {}, "tensorboard": {}, "warned": set()}


class TrackingWarning(UserWarning):
    """Tracking failed; the benchmark run goes on."""


def _tracker() -> Any:
    from dermbench_mlflow.tracker import MlflowTracker

    if _STATE["tracker"] is None or _STATE["tracker"].settings != read_settings():
        _STATE["tracker"] = MlflowTracker(read_settings())
    return _STATE["tracker"]


def _guarded(what: str, run_id: str, kind: str, action: Callable[[], Any]) -> Any:
    """``action()``; on any error, warn once for this run and stop tracking it with ``kind``."""
    try:
        return action()
    except Exception as exc:  # a tracker must never fail the benchmark run
        _STATE[kind].pop(run_id, None)
        if (kind, run_id) not in _STATE["warned"]:
            _STATE["warned"].add((kind, run_id))
            warnings.warn(
                f"dermbench-mlflow: {kind} tracking of run {run_id} failed at {what} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the run goes on untracked",
                TrackingWarning,
                stacklevel=2,
            )
        return None


@hookimpl
def dermbench_sweep_start(sweep: dict) -> None:
    if read_settings().mlflow:
        _tracker().sweep = dict(sweep)


@hookimpl
def dermbench_run_start(record: dict, run_dir: str, resumed: bool) -> None:
    run_id, settings = str(record["run_id"]), read_settings()
    for earlier in list(_STATE["mlflow"]):  # a run of this process that never finished failed
        tracked = _STATE["mlflow"].pop(earlier)
        _guarded("marking it failed", earlier, "mlflow", lambda t=tracked: _tracker().fail(t))
    if settings.mlflow:
        tracked = _guarded("the start", run_id, "mlflow", lambda: _tracker().start(record, resumed))
        if tracked is not None:
            _STATE["mlflow"][run_id] = tracked
    folder = settings.tensorboard_dir(str((record.get("config") or {}).get("out") or "runs"), run_id)
    if folder is not None:
        from dermbench_mlflow.tensorboard import TensorBoardRun

        tb = _guarded("the start", run_id, "tensorboard", lambda: TensorBoardRun(folder))
        if tb is not None:
            _STATE["tensorboard"][run_id] = tb


@hookimpl
def dermbench_epoch_end(record: dict, row: dict, step: int) -> None:
    run_id = str(record["run_id"])
    if (tracked := _STATE["mlflow"].get(run_id)) is not None:
        _guarded(f"step {step}", run_id, "mlflow", lambda: _tracker().log_row(tracked, row, step))
    if (tb := _STATE["tensorboard"].get(run_id)) is not None:
        _guarded(f"step {step}", run_id, "tensorboard", lambda: tb.log_row(row, step))


@hookimpl
def dermbench_run_finished(record: dict, run_dir: str) -> None:
    run_id = str(record["run_id"])
    if (tracked := _STATE["mlflow"].pop(run_id, None)) is not None:
        _guarded("the end", run_id, "mlflow", lambda: _tracker().finish(tracked, record, run_dir))
    if (tb := _STATE["tensorboard"].pop(run_id, None)) is not None:
        _guarded("the end", run_id, "tensorboard", lambda: tb.finish(record))


@hookimpl
def dermbench_sweep_finished(sweep: dict, records: list[dict], failures: list[dict]) -> None:
    if read_settings().mlflow:
        sid = str(sweep.get("sweep_id"))
        _guarded(
            "the end of the sweep", f"sweep {sid}", "mlflow", lambda: _tracker().end_sweep(records, failures)
        )
