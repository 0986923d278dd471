"""End-to-end runs: records, metrics recomputed from saved predictions, resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from dermbench.hookspecs import hookimpl
from dermbench.run.record import read_record
from dermbench.testing import run_tiny

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"synthetic_n": 200, "image_size": 32, "model": "tinycnn"}


def _probs(run_dir: Path, record: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(run_dir / record["predictions"][split])
    cols = [f"p_{c}" for c in record["task"]["classes"]]
    return df["label"].to_numpy(), df[cols].to_numpy()


def _run_dir(tmp_path: Path, record: dict) -> Path:
    (path,) = list((tmp_path / "runs").rglob(f"{record['run_id']}/record.json"))
    return path.parent


def test_record_metrics_equal_sklearn_recomputed_from_saved_probabilities(tmp_path):
    record = run_tiny(tmp_path, epochs=2)
    assert record["status"] == "complete" and record["data"]["synthetic"] is True
    run_dir = _run_dir(tmp_path, record)
    assert read_record(run_dir) == json.loads((run_dir / "record.json").read_text())
    for split in ("val", "test"):
        y, p = _probs(run_dir, record, split)
        pred = p.argmax(1)
        m = record["metrics"][split]
        assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert [r["epoch"] for r in record["history"]] == [1, 2]
    gap = record["overfitting"]["gap"]
    last = record["history"][-1]
    assert gap["train_minus_val_accuracy"]["final"] == pytest.approx(
        last["train_accuracy"] - last["val_accuracy"]
    )
    assert gap["val_minus_train_loss"]["final"] == pytest.approx(last["val_loss"] - last["train_loss"])
    fp = record["data"]["splits"]
    assert len({fp[s]["fingerprint"] for s in ("train", "val", "test")}) == 3
    assert record["environment"]["packages"]["torch"]
    assert record["environment"]["host_heap"]["set_by"]  # what fixed the allocator's threshold, if anything
    layout, planned = record["environment"]["memory_layout"], record["environment"]["precision"]
    if planned.get("channels_last") is None:  # no layout timed: the size rule, with its threshold
        assert layout["cpu_channels_last_from_px"] == 128
    else:  # --precision auto timed the layouts on this CPU (native bf16): the record names the winner
        assert layout["layout"] == ("channels_last" if planned["channels_last"] else "contiguous NCHW")
    import torch

    assert record["environment"]["cpu_threads"] == torch.get_num_threads()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if head.returncode == 0:  # run from this checkout: the record names its commit
        assert record["environment"]["source"]["commit"] == head.stdout.strip()
    assert record["config"]["seed"] == 0 and record["config"]["model"] == "tinycnn"


def test_same_seed_same_result_and_a_complete_run_is_not_repeated(tmp_path):
    a = run_tiny(tmp_path / "a", epochs=1)
    b = run_tiny(tmp_path / "b", epochs=1)
    assert a["metrics"]["test"] == b["metrics"]["test"]
    again = run_tiny(tmp_path / "a", epochs=1)
    assert again["created"] == a["created"]


class Killed(Exception):
    pass


def _killer(after_epoch: int) -> types.SimpleNamespace:
    @hookimpl
    def dermbench_epoch_end(record, row):
        if row["epoch"] == after_epoch:
            raise Killed

    return types.SimpleNamespace(dermbench_epoch_end=dermbench_epoch_end, __name__="killer")


@pytest.mark.parametrize(
    "extra", [{}, {"options": {"stage.batch_transform": "mixup"}}], ids=["plain", "mixup"]
)
def test_resume_after_a_kill_in_the_second_epoch_equals_an_uninterrupted_run(tmp_path, extra):
    settings = {**SMALL, "epochs": 3, "select": "val_macro_f1", **extra}
    whole = run_tiny(tmp_path / "whole", **settings)
    with pytest.raises(Killed):  # dies after epoch 1's checkpoint: epoch 2 never finishes
        run_tiny(tmp_path / "cut", plugins=[("killer", _killer(1))], **settings)
    partial = json.loads(next((tmp_path / "cut").rglob("record.json")).read_text())
    assert partial["status"] == "running" and len(partial["history"]) == 1
    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import execute
    from dermbench.testing import make_plugins

    pl = make_plugins()
    cfg = resolve_config(
        pl.registries.tasks.get("tiny3"),
        pl.registries.methods.get("erm"),
        {},
        {
            **settings,
            "profile": "smoke",
            "device": "cpu",
            "out": str(tmp_path / "cut" / "runs"),
            "cache_dir": str(tmp_path / "cut" / "cache"),
        },
    )
    resumed, _ = execute(cfg, pl, resume=True, progress=False, log=lambda *a: None)
    assert resumed["metrics"]["test"] == whole["metrics"]["test"]
    assert [r["val_loss"] for r in resumed["history"]] == [r["val_loss"] for r in whole["history"]]


def test_cv_ensemble_and_tta(tmp_path):
    record = run_tiny(tmp_path, ensemble="cv3", tta="flips", **SMALL)
    assert sorted({r["fold"] for r in record["history"]}) == [0, 1, 2]
    # the validation split is in no fold: the threshold is fitted on ensemble means, as on test
    assert "out_of_fold" not in record["data"]["splits"]["val"]
    assert record["data"]["ensemble"]["threshold_fitted_on"].startswith("val")
    assert record["metrics"]["val"]["n"] == record["data"]["splits"]["val"]["n"]
    fold_rows = [sum(r["fold"] == f for r in record["history"]) for f in (0, 1, 2)]
    assert all(n >= 1 for n in fold_rows)


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dermbench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--task", "ham8"], "unknown task 'ham8'"),
        (["run", "--method", "nope"], "unknown method 'nope'"),
        (["run", "--model", "resnet_nope", "--profile", "smoke"], "unknown model 'resnet_nope'"),
        (["run", "--epochs", "x"], "invalid int value"),
        (["run", "--opt", "loss.gama=2", "--profile", "smoke"], "unknown option(s) gama"),
        (["run", "--data", "ham10000=/no/such/dir"], "/no/such/dir"),
        (["run", "--data", "nosuchadapter=/tmp"], "unknown dataset 'nosuchadapter'"),
        (["show", "/no/run"], "no run record"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, capsys, args, message):
    from dermbench.cli.main import main

    extra = (
        ["--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")] if args[0] == "run" else []
    )
    try:
        code = main([*args, *extra])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_a_real_process_prints_no_traceback(tmp_path):
    out = _cli("run", "--task", "ham8", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("dermbench: error: unknown task 'ham8'")
    assert "Traceback" not in out.stderr


def test_bad_image_is_named_and_skipped_on_request(tmp_path):
    from PIL import Image

    rows = []
    rng = np.random.default_rng(0)
    for i in range(60):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        rows.append({"image": path.name, "label": ["common", "rare", "rarest"][i % 3], "group": f"L{i}"})
    (tmp_path / "img7.png").write_bytes(b"")  # a 0-byte image
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    from dermbench.errors import DataError

    with pytest.raises(DataError, match="img7.png"):
        run_tiny(tmp_path, data={"manifest": str(tmp_path / "manifest.csv")})
    record = run_tiny(tmp_path, data={"manifest": str(tmp_path / "manifest.csv")}, skip_bad_images=True)
    (skipped,) = record["data"]["datasets"][0]["skipped_images"]
    assert "img7.png" in skipped["path"]
    assert record["data"]["synthetic"] is False


def test_cli_run_prints_the_table_and_record_path_and_survives_sigkill(tmp_path):
    args = ["run", "--task", "ham7", "--profile", "smoke", "--model", "tinycnn", "--epochs", "4"]
    args += ["--synthetic-n", "600", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermbench.cli", *args, "--quiet"],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    record_path = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").rglob("record.json"))
        if found and json.loads(found[0].read_text() or "{}").get("history"):
            record_path = found[0]
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if record_path is None or read_record(record_path)["status"] == "complete":
        pytest.skip("the run finished before it could be killed")
    again = _cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "macro_f1" in resumed.stdout and "record.json" in resumed.stdout
    assert "SYNTHETIC" in resumed.stdout
    assert read_record(record_path)["status"] == "complete"


def test_manifest_with_an_unknown_label_names_the_row(tmp_path):
    from PIL import Image

    from dermbench.errors import DataError

    rows = []
    for i in range(12):
        Image.new("RGB", (16, 16), (i * 10, 80, 90)).save(tmp_path / f"i{i}.png")
        rows.append({"image": f"i{i}.png", "label": "common" if i != 5 else "comon"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"m.csv: .*unknown label 'comon' for task 'tiny3'"):
        run_tiny(tmp_path, data={"manifest": str(tmp_path / "m.csv")})


def test_a_plugins_metric_is_computed_on_every_split_and_a_failing_one_is_undefined(tmp_path):
    from dermbench.components import Component

    @hookimpl
    def dermbench_register_metrics(register):
        register(
            Component("mean_p0", lambda o, task: lambda y, p, frame: float(p[:, 0].mean()), "mean p(first)")
        )
        register(Component("broken", lambda o, task: lambda y, p, frame: 1 / 0, "always fails"))

    plugin = types.SimpleNamespace(dermbench_register_metrics=dermbench_register_metrics, __name__="m")
    record = run_tiny(tmp_path, plugins=[("metrics-plugin", plugin)], **SMALL, epochs=1)
    run_dir = _run_dir(tmp_path, record)
    _, p = _probs(run_dir, record, "test")
    assert record["metrics"]["test"]["extra"]["mean_p0"] == pytest.approx(p[:, 0].mean(), abs=1e-6)
    assert record["metrics"]["test"]["extra"]["broken"] is None
    assert "ZeroDivisionError" in record["metrics"]["test"]["undefined"]["extra.broken"]


def test_a_diverging_loss_stops_the_run_with_a_clear_error(tmp_path):
    import torch

    from dermbench.components import Component, Method, Ref, StageRecipe
    from dermbench.errors import TrainingError

    class NaNLoss(torch.nn.Module):
        def forward(self, logits, targets):
            return logits.sum() * float("nan")

    @hookimpl
    def dermbench_register_losses(register):
        register(Component("nanloss", lambda o, ctx: NaNLoss(), "always NaN"))

    @hookimpl
    def dermbench_register_methods(register):
        register(Method("diverges", "NaN loss", stages=(StageRecipe(loss=Ref("nanloss")),)))

    plugin = types.SimpleNamespace(
        dermbench_register_losses=dermbench_register_losses,
        dermbench_register_methods=dermbench_register_methods,
        __name__="nan",
    )
    with pytest.raises(TrainingError, match="training loss is nan in epoch 1"):
        run_tiny(tmp_path, method="diverges", plugins=[("nan", plugin)], **SMALL)
    (path,) = list((tmp_path / "runs").rglob("record.json"))
    assert json.loads(path.read_text())["status"] == "running"


def test_a_method_predictor_with_tta_fails_before_any_training(tmp_path):
    from dermbench.components import Method, Ref, StageRecipe
    from dermbench.errors import ConfigError
    from dermbench.hookspecs import hookimpl

    @hookimpl
    def dermbench_register_methods(register):
        register(Method("with_tta", "own predictor", stages=(StageRecipe(),), predictor=Ref("tta")))

    plugin = types.SimpleNamespace(dermbench_register_methods=dermbench_register_methods, __name__="p")
    with pytest.raises(ConfigError, match="predicts with 'tta'; --tta does not apply"):
        run_tiny(tmp_path, method="with_tta", plugins=[("p", plugin)], tta="flips")
    record = json.loads(next(tmp_path.rglob("record.json")).read_text())
    assert record["history"] == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_source_revision_is_the_checkouts_commit_and_says_when_files_differ(tmp_path):
    from dermbench.run.record import source_revision

    assert source_revision(tmp_path) is None  # not a checkout
    pkg = tmp_path / "repo" / "dermbench"
    (pkg / "run").mkdir(parents=True)
    (pkg / "run" / "record.py").write_text("x = 1\n")
    git = ["git", "-C", str(pkg), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(pkg.parent)], check=True)
    assert source_revision(pkg) is None  # in a repository, but not a tracked copy of dermbench
    subprocess.run([*git, "add", "run/record.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert source_revision(pkg) == {"commit": commit, "uncommitted_changes": False}
    (pkg / "run" / "record.py").write_text("x = 2\n")
    assert source_revision(pkg) == {"commit": commit, "uncommitted_changes": True}
