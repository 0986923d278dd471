"""The built-in launchers: ``local`` (the default: the runs one after another in this process),
``ray`` and ``submitit`` (each needs its extra: ``dermbench[ray]``, ``dermbench[slurm]``)."""

from __future__ import annotations

from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.launch.ray_launcher import RayOptions
from dermbench.launch.submitit_launcher import SubmititOptions
from dermbench.plugins.contract import JobOutcome, LaunchContext, RunJob


class LocalLauncher:
    """Every run in the driver's own process, one after another, with the driver's plugins."""

    def __init__(self, ctx: LaunchContext) -> None:
        self.ctx = ctx

    def launch(self, jobs: list[RunJob], progress: Any) -> list[JobOutcome]:
        from dermbench.launch.jobs import run_job

        outcomes = []
        for job in jobs:
            progress.started(1)
            self.ctx.log(job.label)
            outcomes.append(run_job(job, self.ctx.plugins))
            progress.finished(outcomes[-1])
        return outcomes


def make_local(options: Any, ctx: LaunchContext) -> LocalLauncher:
    return LocalLauncher(ctx)


def make_ray(options: RayOptions, ctx: LaunchContext) -> Any:
    from dermbench.launch.ray_launcher import RayLauncher

    return RayLauncher(options, ctx)


def make_submitit(options: SubmititOptions, ctx: LaunchContext) -> Any:
    from dermbench.launch.submitit_launcher import SubmititLauncher

    return SubmititLauncher(options, ctx)


@hookimpl
def dermbench_register_launchers(register):
    register(Component("local", make_local, "the runs one after another in this process (no extra needed)"))
    register(Component("ray", make_ray, "each run a Ray task on a cluster or a local Ray", options=RayOptions,
                       paper="Moritz et al., Ray: A Distributed Framework for Emerging AI Applications, OSDI 2018"))  # fmt: skip
    register(Component("submitit", make_submitit, "the sweep as a SLURM job array through submitit (or local subprocesses)",
                       options=SubmititOptions))  # fmt: skip
