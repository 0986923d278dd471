"""Registers the tasks shipped in ``tasks/*.toml``."""

from dermbench.hookspecs import hookimpl
from dermbench.tasks import builtin_tasks


@hookimpl
def dermbench_register_tasks(register):
    for task in builtin_tasks():
        register(task)
