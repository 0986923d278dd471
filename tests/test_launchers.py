"""Launchers: the same 4-run sweep through the local launcher, a local Ray (2 CPUs) and submitit's
local executor gives the same records and skips; a worker killed mid-run is retried from its
checkpoint and recorded once; records land on the driver when the worker's folder is elsewhere;
bad launcher settings are one-line errors before any run."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import pytest

from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.launch.jobs import land, run_files
from dermbench.launch.sweep import SweepRequest, run_sweep
from dermbench.plugins.contract import JobOutcome
from dermbench.testing import make_plugins


def settings(out: Path, **extra) -> dict:
    return {"profile": "smoke", "model": "tinycnn", "synthetic_n": 120, "epochs": 1, "device": "cpu",
            "out": str(out / "runs"), "cache_dir": str(out / "cache"), **extra}  # fmt: skip


def sweep(out: Path, launcher: str | None = None, plugins=None, seeds=(0, 1), **options):
    request = SweepRequest(tasks=("tiny3",), methods=("erm", "wce") if len(seeds) == 2 else ("erm",),
                           seeds=tuple(seeds), settings=settings(out), quiet=True, launcher=launcher,
                           launcher_options=options)  # fmt: skip
    lines: list[str] = []
    result = run_sweep(request, plugins or make_plugins(*IMBALANCE), log=lines.append)
    return result, lines


def _imbalance():
    import dermbench_imbalance.plugin as plugin

    return [("imbalance", plugin)]


IMBALANCE = _imbalance()


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["run_id"]: r["metrics"]["test"] for r in records}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local launcher's records, on one CPU thread: a CPU reduction's rounding depends on the
    thread count (the record's environment.cpu_threads), and each launcher below runs on one."""
    import torch

    out, threads = tmp_path_factory.mktemp("local"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result, _ = sweep(out)
    finally:
        torch.set_num_threads(threads)
    assert result.failures == [] and len(result.records) == 4
    return by_id(result.records)


def _same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(got) == set(expected)  # the same runs, by the hash of their resolved config
    for run_id, metrics in expected.items():
        for name in ("macro_f1", "accuracy", "balanced_accuracy", "macro_auc"):
            assert got[run_id][name] == pytest.approx(metrics[name], abs=1e-4), (run_id, name)


@pytest.mark.parametrize(
    ("launcher", "options"),
    [
        ("ray", {"local_cpus": "2", "cpus_per_run": "1"}),
        ("submitit", {"cluster": "local", "runs_per_task": "2"}),
    ],
)
def test_a_launcher_gives_the_local_launchers_records_and_skips(
    tmp_path, local, launcher, options, monkeypatch
):
    pytest.importorskip(launcher)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # submitit's local jobs; Ray sets it from cpus_per_run
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a sweep without --address starts a Ray of its own
    result, lines = sweep(tmp_path, launcher, **options)
    assert result.failures == []
    assert {r["environment"]["cpu_threads"] for r in result.records} == {1}
    _same(by_id(result.records), local)
    records = list((tmp_path / "runs").rglob("record.json"))
    assert len(records) == 4 and all(json.loads(p.read_text())["status"] == "complete" for p in records)
    assert lines[-1] == "sweep: 4 done, 0 running, 0 failed, 0 skipped (of 4)"
    again, lines = sweep(tmp_path, launcher, **options)  # relaunched: nothing is run again
    assert by_id(again.records) == by_id(result.records)
    assert sum("already complete" in line for line in lines) == 4


def killer(marker: Path) -> types.SimpleNamespace:
    """Kills its worker process after the first epoch of the first attempt (a pre-emption)."""

    @hookimpl
    def dermbench_epoch_end(step):
        if step == 0 and not marker.exists():
            marker.write_text("killed once")
            os._exit(1)

    return types.SimpleNamespace(dermbench_epoch_end=dermbench_epoch_end, __name__="killer")


@pytest.mark.parametrize(
    ("launcher", "options"),
    [("ray", {"local_cpus": "2", "retries": "1"}), ("submitit", {"cluster": "local", "retries": "1"})],
)
def test_a_worker_killed_mid_run_is_retried_and_its_run_recorded_once(tmp_path, launcher, options):
    pytest.importorskip(launcher)
    marker = tmp_path / "killed"
    plugins = make_plugins(("killer", killer(marker)))
    request = SweepRequest(tasks=("tiny3",), methods=("erm",), seeds=(0,), quiet=True, launcher=launcher,
                           settings=settings(tmp_path, epochs=2), launcher_options=options)  # fmt: skip
    result = run_sweep(request, plugins, log=lambda *a: None)
    assert marker.exists() and result.failures == []
    (record,) = result.records
    assert record["status"] == "complete" and len(record["history"]) == 2
    assert len(list((tmp_path / "runs").rglob("record.json"))) == 1


def test_a_record_travels_back_to_a_driver_that_does_not_share_the_workers_folder(tmp_path):
    worker = tmp_path / "worker" / "run"
    (worker / "predictions").mkdir(parents=True)
    (worker / "checkpoints").mkdir()
    record = {"run_id": "r1", "status": "complete"}
    (worker / "record.json").write_text(json.dumps(record))
    (worker / "predictions" / "test.csv").write_text("image_id,label\na,0\n")
    (worker / "checkpoints" / "final.pt").write_bytes(b"weights")
    files = run_files(worker)
    assert set(files) == {"record.json", "predictions/test.csv"}  # weights stay on the worker
    driver = tmp_path / "driver" / "run"
    assert land(JobOutcome(1, "run 1", record, None, files), driver) is True
    assert json.loads((driver / "record.json").read_text()) == record
    assert (driver / "predictions" / "test.csv").read_text() == "image_id,label\na,0\n"
    assert land(JobOutcome(1, "run 1", record, None, files), driver) is False  # already there
    with pytest.raises(Exception, match="outside"):
        land(JobOutcome(2, "run 2", {"run_id": "r2"}, None, {"../escape.txt": b"x"}), tmp_path / "d2" / "run")


@pytest.mark.parametrize(
    ("launcher", "options", "message"),
    [
        ("ray", {"address": "127.0.0.1:1"}, "--address 127.0.0.1:1: no Ray cluster answers there"),
        ("ray", {"partition": "gpu"}, "--partition: not an option of launcher ray"),
        (None, {"partition": "gpu"}, "--partition: not an option of launcher local"),
        ("nosuch", {}, "--launcher 'nosuch': no such launcher"),
        ("submitit", {"cluster": "mars"}, "cluster must be one of"),
    ],
)
def test_bad_launcher_settings_are_one_line_errors_and_run_nothing(tmp_path, launcher, options, message):
    if launcher in ("ray", "submitit"):
        pytest.importorskip(launcher)
    with pytest.raises(ConfigError, match=message) as caught:
        sweep(tmp_path, launcher, **options)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("launcher", "extra"), [("ray", "ray"), ("submitit", "slurm")])
def test_a_launcher_whose_package_is_missing_says_what_to_install(tmp_path, monkeypatch, launcher, extra):
    monkeypatch.setitem(sys.modules, launcher, None)  # import fails as if it were not installed
    with pytest.raises(
        ConfigError, match=rf"--launcher {launcher} needs .*pip install 'dermbench\[{extra}\]'"
    ):
        sweep(tmp_path, launcher)
    assert not (tmp_path / "runs").exists()


def test_a_broken_record_in_the_results_folder_does_not_stop_the_sweep(tmp_path):
    first, _ = sweep(tmp_path, seeds=(0,))
    (record_path,) = list((tmp_path / "runs").rglob("record.json"))
    record_path.write_text("{ not json")
    result, lines = sweep(tmp_path, seeds=(0,))  # not skipped as complete: the run is tried again
    assert not any("already complete" in line for line in lines)
    if result.failures:  # refused, naming the broken file, and the sweep went on to its summary
        assert str(record_path) in result.failures[0][1]
    else:
        assert result.records[0]["run_id"] == first.records[0]["run_id"]


def env_spy(seen: Path) -> types.SimpleNamespace:
    """Writes, where the run runs, the driver setting it was given through the environment."""

    @hookimpl
    def dermbench_run_start(record):
        seen.write_text(os.environ.get("DERMBENCH_SPY", "unset"))

    return types.SimpleNamespace(dermbench_run_start=dermbench_run_start, __name__="env_spy")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray cluster started by `ray start` in a folder of its own, as on a head node."""
    pytest.importorskip("ray")
    import subprocess

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = _free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    # no token authentication, on the cluster and (below) on the driver, whatever ~/.ray holds
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DERMBENCH_")},
        "RAY_AUTH_MODE": "disabled",
    }
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], cwd=elsewhere, env=env, check=True, capture_output=True)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}", elsewhere
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True)


def test_a_ray_sweep_lands_where_the_driver_asked_and_force_deletes_nothing_before_it_connects(
    tmp_path, ray_cluster, monkeypatch
):
    address, elsewhere = ray_cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # a complete record of the same run in the folder where the cluster was started: never reused
    monkeypatch.chdir(elsewhere)
    request = dict(tasks=("tiny3",), methods=("erm",), seeds=(0,), quiet=True)
    relative = {**settings(Path(".")), "out": "runs", "cache_dir": str(tmp_path / "cache")}
    stale = run_sweep(
        SweepRequest(**request, settings=relative), make_plugins(*IMBALANCE), log=lambda *a: None
    )
    (stale_path,) = list((elsewhere / "runs").rglob("record.json"))
    driver = tmp_path / "driver"
    driver.mkdir()
    monkeypatch.chdir(driver)
    monkeypatch.setenv("DERMBENCH_SPY", "from the driver")
    seen = tmp_path / "seen"
    plugins = make_plugins(*IMBALANCE, ("env_spy", env_spy(seen)))
    ray_request = SweepRequest(
        **request, settings=relative, launcher="ray", launcher_options={"address": address}
    )
    result = run_sweep(ray_request, plugins, log=lambda *a: None)
    assert result.failures == []
    (record_path,) = list((driver / "runs").rglob("record.json"))
    record = json.loads(record_path.read_text())
    assert record["run_id"] == stale.records[0]["run_id"] and record["created"] != stale.records[0]["created"]
    assert seen.read_text() == "from the driver"  # the driver's environment reached the worker
    assert list((elsewhere / "runs").rglob("record.json")) == [stale_path]
    assert not (driver / "runs" / ".dermbench-sweeps").exists()  # the sweep's marker went with it
    # --force through an address nobody answers on: an error, and the record is still there
    refused = SweepRequest(**request, settings=relative, force=True, launcher="ray",
                           launcher_options={"address": f"127.0.0.1:{_free_port()}"})  # fmt: skip
    with pytest.raises(ConfigError, match="no Ray cluster answers there"):
        run_sweep(refused, plugins, log=lambda *a: None)
    assert json.loads(record_path.read_text()) == record
    # --force through the cluster: trained again, in the driver's folder
    forced = run_sweep(dataclasses.replace(ray_request, force=True), plugins, log=lambda *a: None)
    assert forced.failures == [] and forced.records[0]["created"] != record["created"]
    assert json.loads(record_path.read_text())["created"] == forced.records[0]["created"]


def test_a_worker_that_does_not_see_the_drivers_results_folder_refuses_the_job(tmp_path):
    from dermbench.launch.jobs import run_job
    from dermbench.plugins.contract import RunJob
    from dermbench.run.config import resolve_run

    plugins = make_plugins(*IMBALANCE)
    cfg = resolve_run(plugins, "tiny3", "erm", {}, settings(tmp_path))
    job = RunJob(1, "run 1", cfg, workdir=str(tmp_path), sweep_token="0123abcd")
    outcome = run_job(job, plugins)
    assert outcome.record is None and "is not the driver's" in outcome.error and "\n" not in outcome.error
    assert not (tmp_path / "runs").exists()  # nothing trained into a folder nobody reads
    missing = run_job(RunJob(1, "run 1", cfg, workdir=str(tmp_path / "gone")), plugins)
    assert "the driver's folder" in missing.error and "is not here" in missing.error


def test_a_ray_connection_refused_for_its_token_says_so(tmp_path, monkeypatch):
    from dermbench.launch.ray_launcher import token_hint

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert token_hint("head:6379") == ""  # no token here: not the cause
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 64)
    hint = token_hint("head:6379")
    assert "RAY_AUTH_MODE=disabled" in hint and str(tmp_path / ".ray" / "auth_token") in hint
    assert token_hint("") == ""  # a local Ray of the sweep's own makes its own token
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert token_hint("head:6379") == ""  # the mode was chosen: nothing to guess


def _submitit_launcher(tmp_path, **options):
    from dermbench.launch.submitit_launcher import SubmititLauncher, SubmititOptions
    from dermbench.plugins.contract import LaunchContext
    from dermbench.plugins.options import build_options

    opts = build_options(SubmititOptions, options, "launcher submitit")
    return SubmititLauncher(opts, LaunchContext(out=str(tmp_path / "runs"), quiet=True))


def test_the_slurm_script_carries_the_options_given(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    tools = tmp_path / "bin"  # SLURM's commands as submitit looks for them (never called here)
    tools.mkdir()
    for name in ("srun", "sbatch"):
        (tools / name).write_text("#!/bin/sh\nexit 1\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    launcher = _submitit_launcher(tmp_path, cluster="slurm", partition="gpu", gpus_per_run="1", cpus_per_run="8",
                                  timeout_min="240", slurm=("mem=64G", "account=derm-lab", "qos=high", "constraint=a100"))  # fmt: skip
    script = launcher.executor()._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--partition=gpu", "--mem=64G", "--account=derm-lab", "--qos=high", "--constraint=a100",
                 "--gpus-per-node=1", "--cpus-per-task=8", "--time=240"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    assert "--mem=64G" not in _submitit_launcher(
        tmp_path, cluster="slurm"
    ).executor()._executor._make_submission_file_text("x", "u")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"cluster": "local", "partition": "gpu"},
            r"--partition: SLURM options, but the jobs would run locally \(--cluster local\)",
        ),
        (
            {"cluster": "local", "slurm": ("mem=4G",)},
            "--slurm: SLURM options, but the jobs would run locally",
        ),
        ({"cluster": "slurm", "slurm": ("mem",)}, "--slurm 'mem': expected KEY=VALUE"),
        ({"cluster": "slurm", "slurm": ("mem=4G", "mem=8G")}, "--slurm mem: given twice"),
        ({"cluster": "slurm", "slurm": ("--mem=4G",)}, "expected KEY=VALUE"),
    ],
)
def test_slurm_options_that_cannot_apply_are_errors(tmp_path, options, message):
    pytest.importorskip("submitit")
    with pytest.raises(ConfigError, match=message) as caught:
        _submitit_launcher(tmp_path, **options)
    assert "\n" not in str(caught.value)


def test_slurm_options_without_sbatch_are_an_error_not_a_local_run(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match=r"--partition: .*no sbatch on this machine"):
        sweep(tmp_path, "submitit", partition="gpu", gpus_per_run="1")
    assert not (tmp_path / "runs").exists()


def test_a_job_whose_run_an_orphaned_job_holds_waits_for_it_then_reuses_its_record(tmp_path, capsys):
    import threading

    from dermbench.launch.jobs import run_job
    from dermbench.plugins.contract import RunJob
    from dermbench.run.config import resolve_run
    from dermbench.run.pipeline import execute, run_lock

    plugins = make_plugins(*IMBALANCE)
    cfg = resolve_run(plugins, "tiny3", "erm", {}, settings(tmp_path))
    outcomes = []
    with run_lock(cfg):  # the job of a killed driver, still running
        waiting = threading.Thread(
            target=lambda: outcomes.append(run_job(RunJob(1, "run 1", cfg, quiet=False), plugins))
        )
        waiting.start()
        waiting.join(timeout=3)
        assert waiting.is_alive() and outcomes == []  # not refused, not run beside it
        assert "waiting for it" in capsys.readouterr().out
    waiting.join()
    (outcome,) = outcomes
    assert outcome.error is None and outcome.record["status"] == "complete"
    again, _ = execute(cfg, plugins, resume=True, log=lambda *a: None)
    assert again["created"] == outcome.record["created"]  # one run, recorded once
