"""Where and what to track, from environment variables (MLflow's own and five of the plugin's).

- ``MLFLOW_TRACKING_URI`` (MLflow's): the store. Unset, the plugin uses a local SQLite store in
  ``mlruns/`` beside the run's results folder (``<out>/mlruns/mlflow.db``, artifacts under
  ``<out>/mlruns/artifacts``): no server. (MLflow 3 has put its plain-folder store in maintenance
  mode and refuses it by default, so the local default is its SQLite store.)
- ``DERMBENCH_MLFLOW``: ``0``/``off``/``false`` turns MLflow tracking off (TensorBoard may stay on).
- ``DERMBENCH_MLFLOW_PLOTS``: ``0`` leaves out the run report (the HTML page and its plots) from the
  artifacts; rendering it takes a few seconds a run.
- ``DERMBENCH_TENSORBOARD``: ``1`` writes TensorBoard scalars to ``<out>/tensorboard/<run id>``,
  a path writes them under that path; unset or ``0``: none.
- ``DERMBENCH_MLFLOW_LOG``: the level of MLflow's own log lines (default ``WARNING``: its INFO
  lines, such as "Creating initial MLflow database tables...", are left out of a run's output;
  ``INFO`` or ``DEBUG`` shows them).
- ``DERMBENCH_MLFLOW_RETRIES``: HTTP retries of a remote tracking server (default 2, not MLflow's
  7 with backoff, so that a server that is down costs seconds, not minutes, per call); it sets
  ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` unless that is set already.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OFF = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class Settings:
    mlflow: bool
    tracking_uri: str | None  # None: the local store beside the results
    plots: bool
    tensorboard: str | None  # None: off; "" : <out>/tensorboard; else a folder
    log_level: str = "WARNING"  # of MLflow's own loggers

    def store_uri(self, out: str) -> str:
        return self.tracking_uri or f"sqlite:///{local_store(out) / 'mlflow.db'}"

    def artifact_root(self, out: str) -> str | None:
        """Where a new experiment keeps its artifacts: beside the local store; the server's choice else."""
        return None if self.tracking_uri else str(local_store(out) / "artifacts")

    def tensorboard_dir(self, out: str, run_id: str) -> Path | None:
        if self.tensorboard is None:
            return None
        base = Path(self.tensorboard) if self.tensorboard else Path(out) / "tensorboard"
        return base / run_id


def local_store(out: str) -> Path:
    return Path(out).resolve() / "mlruns"


def read_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    tb = env.get("DERMBENCH_TENSORBOARD", "").strip()
    if "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = env.get("DERMBENCH_MLFLOW_RETRIES", "2")
    return Settings(
        mlflow=env.get("DERMBENCH_MLFLOW", "1").strip().lower() not in OFF,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        plots=env.get("DERMBENCH_MLFLOW_PLOTS", "1").strip().lower() not in OFF,
        tensorboard=None if tb.lower() in OFF | {""} else ("" if tb == "1" else tb),
        log_level=log_level(env.get("DERMBENCH_MLFLOW_LOG", "WARNING")),
    )


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(raw: str) -> str:
    level = raw.strip().upper() or "WARNING"
    if level not in LEVELS:
        from dermbench.errors import ConfigError

        raise ConfigError(f"DERMBENCH_MLFLOW_LOG={raw!r}: expected one of {', '.join(LEVELS)}")
    return level
