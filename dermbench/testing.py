"""pytest fixtures for plugin authors (loaded automatically through the ``pytest11`` entry point).

A third-party plugin is tested in a few lines::

    def test_my_loss_trains(dermbench_run):
        record = dermbench_run(method="my_method", plugins=[("mine", my_plugin_module)])
        assert record["status"] == "complete"

- ``dermbench_plugins(*extra)``: a fresh plugin manager with the built-ins and your inline
  plugins only (no entry points), so tests never depend on what else is installed;
- ``tiny_task``: a three-class task with a synthetic sample;
- ``dermbench_run(**settings)``: a one-epoch CPU run of a method on the tiny task, returning the
  run record.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dermbench.hookspecs import hookimpl
from dermbench.plugins import Plugins, load_plugins
from dermbench.run.config import resolve_config
from dermbench.tasks import Task

TINY_TASK = Task(
    name="tiny3",
    classes=("common", "rare", "rarest"),
    title="Three synthetic classes, for plugin tests",
    synthetic_source="task",
    synthetic_priors={"common": 60, "rare": 30, "rarest": 10},
)


def tiny_task_plugin(task: Task = TINY_TASK) -> types.SimpleNamespace:
    @hookimpl
    def dermbench_register_tasks(register: Any) -> None:
        register(task)

    return types.SimpleNamespace(
        dermbench_register_tasks=dermbench_register_tasks, __name__="tiny_task_plugin"
    )


def make_plugins(*extra: tuple[str, Any], autoload: bool = False) -> Plugins:
    return load_plugins(
        extra=[("dermbench.testing.tiny_task", tiny_task_plugin()), *extra], autoload=autoload
    )


@pytest.fixture
def dermbench_plugins() -> Callable[..., Plugins]:
    """``dermbench_plugins(("name", module), ...)``: a fresh plugin set with the built-ins and these
    inline plugins only (no entry point is loaded), to check what they register."""
    return make_plugins


@pytest.fixture
def tiny_task() -> Task:
    """``tiny3``: three synthetic classes (common, rare, rarest), what ``dermbench_run`` trains on."""
    return TINY_TASK


def run_tiny(
    out: Path,
    method: str | None = None,
    plugins: list[tuple[str, Any]] | None = None,
    task: str = "tiny3",
    resume: bool = False,
    **settings: Any,
) -> dict:
    """One epoch of ``method`` (default: the plugins' default method) on the tiny synthetic task,
    on the CPU, in a few seconds."""
    from dermbench.run.pipeline import execute

    pl = make_plugins(*(plugins or []))
    reg = pl.registries
    defaults = {
        "profile": "smoke",
        "model": "tinycnn",
        "epochs": 1,
        "image_size": 32,
        "synthetic_n": 200,
        "device": "cpu",
        "out": str(out / "runs"),
        "cache_dir": str(out / "cache"),
    }
    cfg = resolve_config(
        reg.tasks.get(task), reg.methods.get(method or pl.default("methods")), {}, {**defaults, **settings}
    )
    record, _ = execute(cfg, pl, resume=resume, progress=False, log=lambda *a: None)
    return record


@pytest.fixture
def dermbench_run(tmp_path: Path) -> Callable[..., dict]:
    """``dermbench_run(method=..., plugins=[("name", module)], **settings) -> record``: one CPU run
    of the tiny task in this test's temporary folder (see ``run_tiny`` for the defaults)."""
    return lambda **kw: run_tiny(tmp_path, **kw)


@pytest.fixture
def dermbench_process_plugins(monkeypatch: pytest.MonkeyPatch) -> Callable[[Plugins | None], None]:
    """Set the plugins the ``dermbench`` command uses in this test (``None``: load them afresh).

    ``dermbench_process_plugins(dermbench_plugins(("mine", plugin)))`` then ``main([...])`` runs
    the real CLI with your plugin and the built-ins only; the previous set is back after the test.
    """
    from dermbench.plugins import manager

    return lambda plugins: monkeypatch.setattr(manager, "_cached", plugins)
