"""Every hook is documented and exercised: a registration hook has an implementation among the
built-in and first-party plugins, and every lifecycle hook is called, with the arguments its spec
documents, by a real sweep and a killed and resumed run."""

from __future__ import annotations

import inspect
import json
import types
from pathlib import Path

import pytest

from dermbench import hookspecs
from dermbench.hookspecs import hookimpl
from dermbench.launch.sweep import SweepRequest, run_sweep
from dermbench.plugins.manager import HOOK_NAMES
from dermbench.testing import make_plugins, run_tiny

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE = ("dermbench_run_start", "dermbench_epoch_end", "dermbench_run_finished",
             "dermbench_sweep_start", "dermbench_sweep_finished")  # fmt: skip


class Killed(Exception):
    pass


def recorder(calls: list[tuple[str, dict]], kill_at_step: int | None = None) -> types.SimpleNamespace:
    """A plugin implementing every lifecycle hook with every argument, noting each call."""

    @hookimpl
    def dermbench_run_start(record, run_dir, resumed):
        calls.append(("dermbench_run_start", {"record": record, "run_dir": run_dir, "resumed": resumed}))

    @hookimpl
    def dermbench_epoch_end(record, row, step):
        calls.append(("dermbench_epoch_end", {"record": record, "row": dict(row), "step": step}))
        if step == kill_at_step:
            raise Killed

    @hookimpl
    def dermbench_run_finished(record, run_dir):
        calls.append(("dermbench_run_finished", {"record": record, "run_dir": run_dir}))

    @hookimpl
    def dermbench_sweep_start(sweep):
        calls.append(("dermbench_sweep_start", {"sweep": sweep}))

    @hookimpl
    def dermbench_sweep_finished(sweep, records, failures):
        calls.append(("dermbench_sweep_finished", {"sweep": sweep, "records": records, "failures": failures}))

    return types.SimpleNamespace(**{f.__name__: f for f in (dermbench_run_start, dermbench_epoch_end,
        dermbench_run_finished, dermbench_sweep_start, dermbench_sweep_finished)}, __name__="recorder")  # fmt: skip


def test_every_hook_is_documented_in_the_api_reference_and_the_plugin_guide():
    api = (ROOT / "docs" / "api.md").read_text()
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for name in HOOK_NAMES:
        assert f"`{name}(" in api, name
        assert getattr(hookspecs, name).__doc__, name
        if name in LIFECYCLE:
            assert f"`{name}(" in guide, name
    assert set(LIFECYCLE) <= HOOK_NAMES


def test_every_registration_hook_is_implemented_by_a_plugin_or_a_test():
    pm = make_plugins(autoload=True).pm
    sources = [p.read_text() for p in (*ROOT.glob("tests/*.py"), *ROOT.glob("plugins/*/*/*.py"))]
    for name in sorted(HOOK_NAMES - set(LIFECYCLE)):
        implemented = bool(getattr(pm.hook, name).get_hookimpls())
        assert implemented or any(f"def {name}(" in src for src in sources), f"nothing implements {name}"


def test_a_sweep_calls_every_lifecycle_hook_with_its_documented_arguments(tmp_path):
    calls: list[tuple[str, dict]] = []
    plugins = make_plugins(("recorder", recorder(calls)))
    settings = {"profile": "smoke", "model": "tinycnn", "synthetic_n": 120, "epochs": 2,
                "out": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c")}  # fmt: skip
    request = SweepRequest(tasks=("tiny3",), methods=("erm",), seeds=(0, 1), settings=settings, quiet=True)
    result = run_sweep(request, plugins, log=lambda *a: None)
    names = [n for n, _ in calls]
    assert names[0] == "dermbench_sweep_start" and names[-1] == "dermbench_sweep_finished"
    assert names.count("dermbench_run_start") == 2 and names.count("dermbench_run_finished") == 2
    for name, kwargs in calls:
        assert set(kwargs) == set(inspect.signature(getattr(hookspecs, name)).parameters), name
    sweep = calls[0][1]["sweep"]
    assert (
        sweep["n_runs"] == 2
        and sweep["seeds"] == [0, 1]
        and sweep["out"] == str((tmp_path / "runs").resolve())
    )
    assert (
        calls[-1][1]["sweep"] is sweep
        and len(calls[-1][1]["records"]) == 2
        and calls[-1][1]["failures"] == []
    )
    starts = [k for n, k in calls if n == "dermbench_run_start"]
    assert all(Path(k["run_dir"], "record.json").is_file() and k["resumed"] is False for k in starts)
    for record in result.records:
        steps = [
            k for n, k in calls if n == "dermbench_epoch_end" and k["record"]["run_id"] == record["run_id"]
        ]
        assert [k["step"] for k in steps] == list(range(len(record["history"])))
        assert [k["row"] for k in steps] == record["history"]
    finished = [k for n, k in calls if n == "dermbench_run_finished"]
    assert all(
        json.loads(Path(k["run_dir"], "record.json").read_text())["status"] == "complete" for k in finished
    )
    again: list[tuple[str, dict]] = []  # the same sweep asked for again: the same id, nothing rerun
    run_sweep(request, make_plugins(("recorder", recorder(again))), log=lambda *a: None)
    assert again[0][1]["sweep"]["sweep_id"] == sweep["sweep_id"]
    assert [n for n, _ in again] == ["dermbench_sweep_start", "dermbench_sweep_finished"]


def test_a_resumed_run_says_so_and_its_steps_continue(tmp_path):
    calls: list[tuple[str, dict]] = []
    settings = {"epochs": 3, "synthetic_n": 120}
    with pytest.raises(Killed):
        run_tiny(tmp_path, plugins=[("recorder", recorder(calls, kill_at_step=0))], **settings)
    run_tiny(tmp_path, plugins=[("recorder", recorder(calls))], resume=True, **settings)
    starts = [k["resumed"] for n, k in calls if n == "dermbench_run_start"]
    assert starts == [False, True]
    assert [k["step"] for n, k in calls if n == "dermbench_epoch_end"] == [0, 1, 2]
