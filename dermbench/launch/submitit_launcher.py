"""The ``submitit`` launcher: a sweep as one SLURM job array (or submitit's local executor).

``--partition``, ``--timeout-min`` and ``--array-parallelism`` are SLURM's; ``--runs-per-task N``
puts N runs in each array task, one after another, where runs are short (a task that starts its
Python and imports torch costs more than a small run). A task is ``Checkpointable``: when SLURM
pre-empts it or its time runs out, submitit requeues it, and its runs continue (a finished run is
found complete and not run again; the interrupted one resumes from its last checkpoint). A task
that dies otherwise is submitted again, at most ``--retries`` times, then its unfinished runs are
reported failed. Without SLURM (no ``sbatch``), or with ``--cluster local``, the jobs run in local
subprocesses, which is what the tests and a laptop use; a SLURM option (``--partition``,
``--slurm``) there is an error, not a setting silently dropped. ``--slurm KEY=VALUE`` (repeated)
puts ``#SBATCH --KEY=VALUE`` in the job script: ``mem``, ``account``, ``qos``, ``constraint`` or any
other option a cluster requires. Needs ``pip install 'dermbench[slurm]'``.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError
from dermbench.launch.jobs import run_job
from dermbench.plugins.contract import JobOutcome, LaunchContext, RunJob
from dermbench.plugins.options import option

CLUSTERS = ("", "slurm", "local", "debug")
POLL_S = 1.0


@dataclass(frozen=True)
class SubmititOptions:
    partition: str = option("", "SLURM partition ('': the cluster's default)")
    timeout_min: int = option(60, "time limit of each array task, in minutes")
    array_parallelism: int = option(16, "array tasks running at once")
    runs_per_task: int = option(1, "runs in each array task, one after another")
    cpus_per_run: int = option(2, "CPUs of each array task")
    gpus_per_run: int = option(0, "GPUs of each array task")
    retries: int = option(2, "times a task that died is submitted again")
    cluster: str = option("", "'' (SLURM when sbatch is there, else local), slurm, local or debug")
    folder: str = option("", "submitit's logs and pickles ('': <results>/.submitit)")
    slurm: tuple[str, ...] = option(
        (), "other sbatch options, KEY=VALUE each: mem=64G, account=..., qos=..., constraint=..."
    )


SLURM_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
SLURM_ONLY = ("partition", "slurm")  # options that mean nothing to submitit's local executor


def sbatch_options(items: tuple[str, ...]) -> dict[str, str]:
    """``--slurm KEY=VALUE`` items as sbatch options (``mem_per_gpu`` and ``mem-per-gpu`` alike)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or not SLURM_KEY.fullmatch(key) or not value.strip():
            raise ConfigError(
                f"--slurm {item!r}: expected KEY=VALUE, an sbatch option and its value (mem=64G)"
            )
        if key in out:
            raise ConfigError(f"--slurm {key}: given twice")
        out[key] = value.strip()
    return out


def _chunk_task_class() -> type:
    import submitit

    class ChunkTask(submitit.helpers.Checkpointable):
        """An array task: its runs one after another; requeued as it is on pre-emption."""

        def __call__(self, jobs: list[RunJob]) -> list[JobOutcome]:
            return [run_job(job) for job in jobs]

    return ChunkTask


class SubmititLauncher:
    def __init__(self, options: SubmititOptions, ctx: LaunchContext) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError("--launcher submitit needs submitit: pip install 'dermbench[slurm]'") from None
        if options.cluster not in CLUSTERS:
            known = ", ".join(repr(c) for c in CLUSTERS)
            raise ConfigError(f"launcher submitit: cluster must be one of {known}, got {options.cluster!r}")
        if (
            min(options.runs_per_task, options.array_parallelism, options.timeout_min) < 1
            or options.retries < 0
        ):
            raise ConfigError(
                "launcher submitit: runs_per_task, array_parallelism and timeout_min must be at least 1, retries at least 0"
            )
        self.sbatch = sbatch_options(options.slurm)
        self.cluster = options.cluster or ("slurm" if shutil.which("sbatch") else "local")
        given = [k for k in SLURM_ONLY if getattr(options, k)]
        if given and self.cluster != "slurm":
            flags = ", ".join("--" + k for k in given)
            why = "no sbatch on this machine" if not options.cluster else f"--cluster {options.cluster}"
            raise ConfigError(
                f"{flags}: SLURM options, but the jobs would run locally ({why}): drop them, or submit "
                f"from a machine with SLURM (--cluster slurm)"
            )
        self.options, self.ctx = options, ctx

    def executor(self) -> Any:
        import submitit

        o = self.options
        folder = Path(o.folder or Path(self.ctx.out) / ".submitit") / "%j"
        ex = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": o.timeout_min, "cpus_per_task": o.cpus_per_run,
                                  "slurm_array_parallelism": o.array_parallelism, "name": "dermbench-sweep"}  # fmt: skip
        if o.gpus_per_run:
            params["gpus_per_node"] = o.gpus_per_run
        if o.partition:
            params["slurm_partition"] = o.partition
        if self.sbatch and self.cluster == "slurm":
            params["slurm_additional_parameters"] = dict(self.sbatch)
        ex.update_parameters(**params)
        return ex

    def launch(self, jobs: list[RunJob], progress: Any) -> list[JobOutcome]:
        k = self.options.runs_per_task
        chunks = [list(jobs[i : i + k]) for i in range(0, len(jobs), k)]
        ex, task = self.executor(), _chunk_task_class()()
        submitted = dict(zip(ex.map_array(task, chunks), [(c, 0) for c in chunks], strict=True))
        progress.started(len(jobs))
        outcomes: list[JobOutcome] = []
        while submitted:
            for job in [j for j in submitted if j.done()]:
                chunk, attempt = submitted.pop(job)
                try:
                    results = job.result()
                except Exception as exc:  # the task died: submit it again, or give its runs up
                    if attempt < self.options.retries:
                        self.ctx.log(
                            f"array task {job.job_id} died ({type(exc).__name__}); submitting its runs again"
                        )
                        submitted[ex.submit(task, chunk)] = (chunk, attempt + 1)
                        continue
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    results = [
                        JobOutcome(j.index, j.label, None, f"its task failed {attempt + 1} time(s): {first}")
                        for j in chunk
                    ]
                for r in results:
                    outcomes.append(r)
                    progress.finished(r)
            if submitted:
                time.sleep(POLL_S)
        return outcomes
