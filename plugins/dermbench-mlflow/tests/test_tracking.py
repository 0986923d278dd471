"""Real runs on the synthetic sample, tracked in a temporary MLflow store and read back with
MLflow's own client: parameters, step metrics equal to the record's history, final metrics equal
to the record, artifacts, one MLflow run for a killed and resumed run, nested sweeps, TensorBoard
scalars, and a store that cannot be written."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import dermbench_mlflow.plugin as plugin
import pytest
from dermbench_mlflow.flatten import final_metrics, row_metrics

from dermbench.hookspecs import hookimpl
from dermbench.launch.sweep import SweepRequest, run_sweep
from dermbench.testing import make_plugins, run_tiny

PLUGINS = [("mlflow", plugin)]
SMALL = {"epochs": 2, "synthetic_n": 120}


@pytest.fixture(autouse=True)
def tracking_on(monkeypatch):
    monkeypatch.setenv("DERMBENCH_MLFLOW", "1")
    monkeypatch.setenv("DERMBENCH_MLFLOW_PLOTS", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DERMBENCH_TENSORBOARD", raising=False)
    monkeypatch.setattr(plugin, "_STATE", {"tracker": None, "mlflow": {}, "tensorboard": {}, "warned": set()})


def client_for(out: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlruns' / 'mlflow.db').resolve()}")


def runs_of(client, task: str = "tiny3"):
    exp = client.get_experiment_by_name(task)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("mlflow") == "dermbench_mlflow.plugin"


def test_a_run_is_an_mlflow_run_with_its_config_history_metrics_and_artifacts(tmp_path):
    record = run_tiny(tmp_path, plugins=PLUGINS, **SMALL)
    client = client_for(tmp_path / "runs")
    (run,) = runs_of(client)
    assert run.info.run_name == record["run_id"] and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["dermbench.run_id"] == record["run_id"] and tags["dermbench.method"] == "erm"
    assert tags["dermbench.protocol"] == record["protocol"] and tags["dermbench.version"]
    assert run.data.params["seed"] == "0" and run.data.params["epochs"] == "2"
    assert run.data.params["image_size"] == str(record["config"]["image_size"])
    for name in ("train_loss", "val_macro_f1", "lr"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (i, pytest.approx(row_metrics(row)[name])) for i, row in enumerate(record["history"])
        ]
    assert run.data.metrics["test.macro_f1"] == pytest.approx(record["metrics"]["test"]["macro_f1"])
    finals = final_metrics(record)
    assert "test.selective.max_softmax.aurc" in finals and "val.macro_f1" in finals
    for name, value in finals.items():
        assert run.data.metrics[name] == pytest.approx(value), name
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"record.json", "predictions", "report"} <= files
    report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/learning_curves.png", "report/confusion.png"} <= report
    local = Path(client.download_artifacts(run.info.run_id, "record.json", str(tmp_path)))
    assert json.loads(local.read_text())["run_id"] == record["run_id"]


def test_every_resolved_setting_is_a_parameter_overrides_included(tmp_path):
    record = run_tiny(tmp_path, plugins=PLUGINS, options={"loss.label_smoothing": 0.2}, **SMALL)
    (run,) = runs_of(client_for(tmp_path / "runs"))
    params = run.data.params
    stage = record["resolved"]["stages"][0]
    prefix = f"resolved.0.{stage['stage']}"
    assert params[f"{prefix}.loss.name"] == stage["loss"]["name"]
    assert params[f"{prefix}.loss.options.label_smoothing"] == "0.2"  # the --opt override
    assert params[f"{prefix}.optimizer.name"] == stage["optimizer"]["name"]
    assert float(params[f"{prefix}.lr"]) == pytest.approx(stage["lr"])
    assert params["options.loss.label_smoothing"] == "0.2"  # and the run config's own parameter


def test_an_ensemble_run_is_tracked_to_the_end_with_one_best_epoch_per_model(tmp_path):
    record = run_tiny(tmp_path, plugins=PLUGINS, ensemble="cv2", **SMALL)
    assert isinstance(record["best_epoch"], list) and len(record["best_epoch"]) == 2
    (run,) = runs_of(client_for(tmp_path / "runs"))
    assert run.info.status == "FINISHED"  # the end was tracked (a list of best epochs had failed it)
    assert [run.data.metrics[f"best_epoch.{i}"] for i in range(2)] == [float(b) for b in record["best_epoch"]]
    assert run.data.metrics["test.macro_f1"] == pytest.approx(record["metrics"]["test"]["macro_f1"])


def test_mlflow_is_quiet_by_default_and_speaks_when_asked(tmp_path, capfd, monkeypatch):
    run_tiny(tmp_path / "quiet", plugins=PLUGINS, **SMALL)  # a new store: MLflow creates its tables
    assert "INFO mlflow" not in capfd.readouterr().err
    monkeypatch.setenv("DERMBENCH_MLFLOW_LOG", "info")
    run_tiny(tmp_path / "loud", plugins=PLUGINS, **SMALL)
    assert "INFO mlflow" in capfd.readouterr().err
    monkeypatch.setenv("DERMBENCH_MLFLOW_LOG", "chatty")
    from dermbench_mlflow.settings import read_settings

    from dermbench.errors import ConfigError

    with pytest.raises(ConfigError, match="DERMBENCH_MLFLOW_LOG='chatty'"):
        read_settings()


def test_the_stores_record_copies_are_not_runs_of_the_results_folder(tmp_path):
    from dermbench.leaderboard.records import load_runs
    from dermbench.leaderboard.verify import record_folders

    record = run_tiny(tmp_path, plugins=PLUGINS, **SMALL)
    copies = list((tmp_path / "runs" / "mlruns").rglob("record.json"))
    assert copies, "the store holds a copy of the record"
    assert [p.name for p in record_folders([tmp_path / "runs"])] == [record["run_id"]]
    loaded = load_runs(tmp_path / "runs")
    assert [r.record["run_id"] for r in loaded.runs] == [record["run_id"]] and not loaded.skipped


class Killed(Exception):
    pass


@hookimpl
def dermbench_epoch_end(step):
    if step == 0:
        raise Killed


def test_a_killed_and_resumed_run_is_one_mlflow_run(tmp_path):
    killer = type("killer", (), {"dermbench_epoch_end": staticmethod(dermbench_epoch_end)})
    with pytest.raises(Killed):
        run_tiny(tmp_path, plugins=[*PLUGINS, ("killer", killer)], **{**SMALL, "epochs": 3})
    record = run_tiny(tmp_path, plugins=PLUGINS, resume=True, **{**SMALL, "epochs": 3})
    client = client_for(tmp_path / "runs")
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED" and run.data.tags["dermbench.run_id"] == record["run_id"]
    history = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == [pytest.approx(r["val_loss"]) for r in record["history"]]


def test_a_run_whose_process_died_is_marked_killed_when_the_next_run_starts(tmp_path):
    """After a kill the MLflow run stayed RUNNING for ever."""
    import subprocess

    killer = type("killer", (), {"dermbench_epoch_end": staticmethod(dermbench_epoch_end)})
    with pytest.raises(Killed):
        run_tiny(tmp_path, plugins=[*PLUGINS, ("killer", killer)], **SMALL)
    client = client_for(tmp_path / "runs")
    (dead,) = runs_of(client)
    assert dead.info.status == "RUNNING" and dead.data.tags["dermbench.pid"]
    gone = subprocess.Popen(["true"])
    gone.wait()
    client.set_tag(dead.info.run_id, "dermbench.pid", str(gone.pid))  # as if its process had been killed
    plugin._STATE["mlflow"].clear()  # and the next run came from a new process, which knows nothing of it
    run_tiny(tmp_path, plugins=PLUGINS, seed=1, **SMALL)
    status = {r.info.run_id: r.info.status for r in runs_of(client)}
    assert status[dead.info.run_id] == "KILLED" and sorted(status.values()) == ["FINISHED", "KILLED"]


def test_a_sweep_is_a_parent_run_with_its_runs_nested(tmp_path):
    settings = {"profile": "smoke", "model": "tinycnn", "synthetic_n": 120, "epochs": 1,
                "out": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "c")}  # fmt: skip
    request = SweepRequest(tasks=("tiny3",), methods=("erm",), seeds=(0, 1, 2), settings=settings, quiet=True)
    result = run_sweep(request, make_plugins(*PLUGINS), log=lambda *a: None)
    runs = runs_of(client_for(tmp_path / "runs"))
    (parent,) = [r for r in runs if "dermbench.sweep_id" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(r["run_id"] for r in result.records)
    assert parent.info.status == "FINISHED" and parent.data.metrics["runs_recorded"] == 3


def test_tensorboard_scalars_equal_the_history(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("DERMBENCH_MLFLOW", "0")
    monkeypatch.setenv("DERMBENCH_TENSORBOARD", str(tmp_path / "tb"))
    record = run_tiny(tmp_path, plugins=PLUGINS, **SMALL)
    events = EventAccumulator(str(tmp_path / "tb" / record["run_id"]))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_macro_f1")] == [
        (i, pytest.approx(r["val_macro_f1"], abs=1e-6)) for i, r in enumerate(record["history"])
    ]
    assert events.Scalars("final/test.macro_f1")[0].value == pytest.approx(
        record["metrics"]["test"]["macro_f1"], abs=1e-6
    )
    assert not (tmp_path / "runs" / "mlruns").exists()


def test_an_unwritable_store_warns_once_and_the_run_is_complete(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocked}/sub/mlflow.db")
    with pytest.warns(plugin.TrackingWarning) as caught:
        record = run_tiny(tmp_path, plugins=PLUGINS, **SMALL)
    assert len(caught) == 1 and record["run_id"] in str(caught[0].message)
    saved = json.loads(next((tmp_path / "runs").rglob("record.json")).read_text())
    assert saved["status"] == "complete" and saved["metrics"]["test"] == record["metrics"]["test"]
