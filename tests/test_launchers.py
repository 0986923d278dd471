"""Launchers: the same 4-run sweep through the local launcher, a local Ray (2 CPUs) and submitit's
local executor gives the same records and skips; a worker killed mid-run is retried from its
checkpoint and recorded once; records land on the driver when the worker's folder is elsewhere;
bad launcher settings are one-line errors before any run."""

from __future__ import annotations

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
    out = tmp_path_factory.mktemp("local")
    result, _ = sweep(out)
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
def test_a_launcher_gives_the_local_launchers_records_and_skips(tmp_path, local, launcher, options):
    pytest.importorskip(launcher)
    result, lines = sweep(tmp_path, launcher, **options)
    assert result.failures == []
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
