"""``dermbench leaderboard verify``: an honest run folder passes, each kind of tampering is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dermbench.leaderboard.verify import record_folders, verify_run
from dermbench.testing import make_plugins, run_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify")
    run_tiny(out, epochs=1, synthetic_n=200, task="tiny3")
    (folder,) = record_folders([out / "runs"])
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


def _edit(folder: Path, change) -> None:
    path = folder / "record.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_an_honest_run_passes(honest):
    assert verify_run(honest, make_plugins()) == []


def test_a_metric_edited_by_hand_is_refused(honest, tmp_path):
    folder = _copy(honest, tmp_path)
    _edit(folder, lambda r: r["metrics"]["test"].update(macro_f1=r["metrics"]["test"]["macro_f1"] + 0.01))
    (problem,) = verify_run(folder, make_plugins())
    assert problem.startswith("metric test.macro_f1 is ") and "from the predictions" in problem


def test_a_record_made_before_the_selective_metrics_still_verifies_and_an_edited_aurc_does_not(
    honest, tmp_path
):
    older = _copy(honest, tmp_path / "older")
    _edit(older, lambda r: [r["metrics"][s].pop("selective") for s in r["metrics"]])
    assert verify_run(older, make_plugins()) == []
    edited = _copy(honest, tmp_path / "edited")
    _edit(edited, lambda r: r["metrics"]["test"]["selective"]["max_softmax"].update(aurc=0.0))
    (problem,) = verify_run(edited, make_plugins())
    assert problem.startswith("metric test.selective.max_softmax.aurc is 0.0")


def test_a_removed_test_image_is_refused(honest, tmp_path):
    folder = _copy(honest, tmp_path)
    preds = folder / "predictions" / "test.csv"
    pd.read_csv(preds).iloc[1:].to_csv(preds, index=False)
    problems = verify_run(folder, make_plugins())
    assert "the test predictions miss 1 official test image(s) and add 0 other(s)" in problems


def test_another_split_is_refused(honest, tmp_path):
    folder = _copy(honest, tmp_path)
    _edit(folder, lambda r: r["config"].update(split_seed=1))
    problems = verify_run(folder, make_plugins())
    assert any(p.startswith("the test split differs from the official one") for p in problems)


def test_a_changed_label_missing_version_and_unfinished_record_are_refused(honest, tmp_path):
    folder = _copy(honest, tmp_path)
    preds = folder / "predictions" / "test.csv"
    df = pd.read_csv(preds)
    df.loc[0, "label"] = (df.loc[0, "label"] + 1) % 3
    df.to_csv(preds, index=False)
    _edit(folder, lambda r: r["environment"]["packages"].pop("dermbench"))
    problems = verify_run(folder, make_plugins())
    assert "the test predictions' labels differ from the data's labels" in problems
    assert "the benchmark version (environment.packages.dermbench) is not stated" in problems
    _edit(folder, lambda r: r.update(status="running"))
    assert verify_run(folder, make_plugins()) == ["status is 'running', not complete"]
    (folder / "record.json").write_text("{")
    assert "not valid JSON" in verify_run(folder, make_plugins())[0]


def test_the_cli_prints_one_line_per_folder_and_fails_on_any(
    honest, tmp_path, capsys, dermbench_process_plugins
):
    from dermbench.cli.main import main

    dermbench_process_plugins(make_plugins())
    bad = _copy(honest, tmp_path)
    _edit(bad, lambda r: r["metrics"]["val"].update(accuracy=0.0))
    assert main(["leaderboard", "verify", str(honest)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{honest}: ok"
    assert main(["leaderboard", "verify", str(honest), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"{bad}: metric val.accuracy is 0.0") and out[-1].endswith("1 ok, 1 refused")


@pytest.mark.realdata
def test_every_committed_reference_run_verifies(shared_data):
    from dermbench.plugins import load_plugins

    plugins = load_plugins()
    data = {n: str(shared_data / n) for n in ("ham10000", "fitzpatrick17k", "dermamnist")}
    folders = record_folders([REPO / "leaderboards" / "runs"])
    assert len(folders) >= 31
    failures = {str(f): p for f in folders if (p := verify_run(f, plugins, data))}
    assert failures == {}


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r: r["environment"]["packages"].update(dermbench="9.9.9"),
         "environment.packages.dermbench '9.9.9' is no released version"),
        (lambda r: r["method"].update(plugin="imbalance", plugin_version="99.0"),
         "method.plugin_version '99.0' is newer than the installed dermbench-imbalance"),
        (lambda r: r["config"].update(epochs=100), "config.epochs is 100 but stage 'train' ran 1 epochs"),
        (lambda r: [r["config"].update(epochs=3), r["resolved"]["stages"][0].update(epochs=3)],
         "the history of stage 'train' has 1 epochs, the stage claims 3"),
        (lambda r: r["data"]["splits"]["test"].update(n=5000), "data.splits.test.n is 5000, the predictions hold"),
        (lambda r: r.update(best_epoch=7), "best_epoch 7 is no epoch of the history"),
        (lambda r: r["environment"].update(source={"commit": "0" * 40, "dirty": False}),
         "environment.source.commit 000000000000 is not a commit of this checkout"),
    ],
    ids=["version", "plugin-version", "epochs", "history", "test-size", "best-epoch", "commit"],
)  # fmt: skip
def test_a_record_that_claims_more_than_its_files_show_is_refused(honest, tmp_path, change, problem):
    folder = _copy(honest, tmp_path)
    _edit(folder, change)
    problems = verify_run(folder, make_plugins())
    assert any(p.startswith(problem) for p in problems), problems


def test_predictions_pointed_at_another_run_or_swapped_are_refused(honest, tmp_path):
    """Predictions pointed at another run's files, with that run's metrics copied in, were accepted."""
    other = _copy(honest, tmp_path / "other")
    folder = _copy(honest, tmp_path / "mine")
    _edit(folder, lambda r: r["predictions"].update(test=f"../../other/{honest.name}/predictions/test.csv"))
    assert verify_run(folder, make_plugins()) == [
        f"predictions of test (../../other/{honest.name}/predictions/test.csv) lie outside the run folder"
    ]
    swapped = _copy(honest, tmp_path / "swapped")
    (swapped / "predictions" / "test.csv").write_bytes(
        (other / "predictions" / "test.csv").read_bytes() + b"\n"
    )
    problems = verify_run(swapped, make_plugins())
    assert (
        "predictions of test (predictions/test.csv) are not the file the record names (sha256 differs)"
        in problems
    )
