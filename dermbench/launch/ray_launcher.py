"""The ``ray`` launcher: each run a Ray task on a cluster, or on a local Ray started for the sweep.

``--address`` names a running cluster (``host:port``, ``ray://host:port`` or ``auto``); without it
a local Ray of its own is started for the sweep (``address="local"``: never a cluster that happens
to run on the machine) and stopped after it. The driver's ``DERMBENCH_*`` and ``MLFLOW_*``
environment reaches every task (Ray's runtime environment), as it would a local run. ``--cpus-per-run`` and
``--gpus-per-run`` are the task's resources; fractional GPUs (``0.25``) pack four small runs on one
card. A task whose worker dies (killed, pre-empted, out of memory) is retried up to ``--retries``
times by Ray; the retry resumes from the run's last checkpoint (on a shared filesystem) and then,
if it still cannot finish, the run is reported failed without stopping the others. An error of the
run itself (a bad image, a diverging loss) is not retried. Needs ``pip install 'dermbench[ray]'``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError
from dermbench.launch.jobs import run_job
from dermbench.plugins.contract import JobOutcome, LaunchContext, RunJob
from dermbench.plugins.options import option


@dataclass(frozen=True)
class RayOptions:
    address: str = option("", "a running cluster: host:port, ray://host:port or auto ('': start a local Ray)")
    cpus_per_run: float = option(1.0, "CPUs each run asks for")
    gpus_per_run: float = option(0.0, "GPUs each run asks for; fractions pack several runs on one GPU")
    retries: int = option(2, "times a run whose worker died is tried again (from its last checkpoint)")
    local_cpus: int = option(0, "CPUs of the local Ray started without --address (0: all)")


def _check_reachable(address: str) -> None:
    """A host:port that nobody answers on is an error now, not a long wait inside ray.init."""
    target = address.removeprefix("ray://")
    if address == "auto" or ":" not in target:
        return
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({exc})") from None


PASSED_ENV = ("DERMBENCH_", "MLFLOW_")


def driver_env() -> dict[str, Any] | None:
    """The driver's dermbench and tracking settings as the tasks' environment (a worker of a cluster
    started by ``ray start`` has the environment of that shell, not the driver's)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    return {"env_vars": env} if env else None


def token_hint(address: str) -> str:
    """Why a connection to a running cluster failed when the cause is Ray's token authentication,
    which Ray reports only in its logs: a token on this machine that the cluster does not use."""
    if not address or os.environ.get("RAY_AUTH_MODE"):
        return ""
    token = Path.home() / ".ray" / "auth_token"
    if not (token.is_file() or os.environ.get("RAY_AUTH_TOKEN")):
        return ""
    return (
        f"; if Ray's logs say the token is missing or wrong: this machine has a Ray token ({token}, "
        f"written by any earlier local Ray) and sends it, which a cluster started without tokens "
        f"refuses (set RAY_AUTH_MODE=disabled); a cluster with another token needs that one (ray "
        f"get-auth-token on the head node, into {token})"
    )


class RayLauncher:
    def __init__(self, options: RayOptions, ctx: LaunchContext) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--launcher ray needs Ray: pip install 'dermbench[ray]'") from None
        if options.retries < 0 or options.cpus_per_run < 0 or options.gpus_per_run < 0:
            raise ConfigError("launcher ray: retries, cpus_per_run and gpus_per_run must not be negative")
        if options.address:
            _check_reachable(options.address)
        self.options, self.ctx = options, ctx

    def _init(self) -> bool:
        """Connect (or start a local Ray); True when this sweep started it."""
        import ray

        if ray.is_initialized():
            return False
        o = self.options
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not self.ctx.quiet,
                                  "address": o.address or "local"}  # fmt: skip
        if not o.address and o.local_cpus:
            kwargs["num_cpus"] = o.local_cpus
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, its own AuthenticationError...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"--address {o.address or '(local)'}: Ray did not start ({first}){token_hint(o.address)}"
            ) from None
        return True

    def launch(self, jobs: list[RunJob], progress: Any) -> list[JobOutcome]:
        import ray

        started = self._init()
        try:
            o = self.options
            remote = ray.remote(num_cpus=o.cpus_per_run, num_gpus=o.gpus_per_run, max_retries=o.retries,
                                retry_exceptions=False, runtime_env=driver_env())(run_job)  # fmt: skip
            pending = {remote.remote(job): job for job in jobs}
            progress.started(len(pending))
            outcomes = []
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    outcomes.append(self._collect(ref, pending.pop(ref)))
                    progress.finished(outcomes[-1])
            return outcomes
        finally:
            if started:
                ray.shutdown()

    def _collect(self, ref: Any, job: RunJob) -> JobOutcome:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return JobOutcome(job.index, job.label, None,
                              f"its worker failed {self.options.retries + 1} time(s): {type(exc).__name__}: {first}")  # fmt: skip
