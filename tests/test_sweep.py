"""Sweeps: the grid, skipping recorded runs, the summary table."""

from __future__ import annotations

import statistics

import pytest

from dermbench.cli.main import main
from dermbench.cli.sweep_args import parse_grid
from dermbench.errors import ConfigError
from dermbench.launch.sweep import grid_points


def test_grid_keys_and_points():
    grid = parse_grid(["beta=0.5,1.0", "lr=1e-3", "loss.gamma=2"])
    assert grid == {"loss.beta": ["0.5", "1.0"], "lr": ["1e-3"], "loss.gamma": ["2"]}
    assert len(grid_points(grid)) == 2
    assert grid_points({}) == [{}]
    tied = parse_grid(["alpha+beta=0.5,2.0"])
    assert tied == {"loss.alpha+loss.beta": ["0.5", "2.0"]}
    from dermbench.launch.sweep import point_settings

    assert [point_settings(p) for p in grid_points(tied)][1] == {
        "options": {"loss.alpha": "2.0", "loss.beta": "2.0"}
    }
    with pytest.raises(ConfigError, match="no values"):
        parse_grid(["beta="])


def _builtins_only(monkeypatch, use_plugins):
    """The CLI's process-wide plugins, reloaded with the built-ins alone."""
    monkeypatch.setenv("DERMBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    use_plugins(None)


def test_sweep_runs_the_grid_skips_recorded_runs_and_summarises(
    tmp_path, capsys, monkeypatch, dermbench_process_plugins
):
    _builtins_only(monkeypatch, dermbench_process_plugins)
    args = [
        "sweep",
        "--tasks",
        "ham7",
        "--methods",
        "erm",
        "--seeds",
        "0,1",
        "--grid",
        "label_smoothing=0.0,0.2",
    ]
    args += ["--profile", "smoke", "--model", "tinycnn", "--synthetic-n", "200", "--quiet"]
    args += ["--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    args += ["--summary-csv", str(tmp_path / "summary.csv")]
    assert main(args) == 0
    first = capsys.readouterr().out
    records = sorted((tmp_path / "runs").rglob("record.json"))
    assert len(records) == 4
    import json

    by_cell: dict[str, list[float]] = {}
    for path in records:
        r = json.loads(path.read_text())
        ls = r["config"]["options"]["loss.label_smoothing"]
        by_cell.setdefault(ls, []).append(r["metrics"]["test"]["macro_f1"])
    for ls, values in by_cell.items():
        expected = f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"
        assert any(f"loss.label_smoothing={ls}" in line and expected in line for line in first.splitlines())
    mtimes = [p.stat().st_mtime for p in records]
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out
    assert [p.stat().st_mtime for p in records] == mtimes
    assert (tmp_path / "summary.csv").read_text().count("\n") == 3


def test_a_failing_cell_does_not_stop_the_sweep(tmp_path, capsys, monkeypatch, dermbench_process_plugins):
    _builtins_only(monkeypatch, dermbench_process_plugins)
    args = [
        "sweep",
        "--tasks",
        "ham7,nosuchtask",
        "--methods",
        "erm",
        "--profile",
        "smoke",
        "--model",
        "tinycnn",
    ]
    args += [
        "--synthetic-n",
        "200",
        "--quiet",
        "--out",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "unknown task 'nosuchtask'" in captured.out
    assert "1 of 2 sweep runs failed" in captured.err
    assert len(list((tmp_path / "runs").rglob("record.json"))) == 1


def test_a_stage_option_another_method_lacks_is_left_out_of_its_runs_and_said(tmp_path):
    import types

    from dermbench.components import Method, StageRecipe
    from dermbench.hookspecs import hookimpl
    from dermbench.launch.sweep import SweepRequest, run_sweep
    from dermbench.testing import make_plugins

    @hookimpl
    def dermbench_register_methods(register):
        register(Method("twostage", "warm-up then train", stages=(StageRecipe(name="warm"), StageRecipe())))

    plugins = make_plugins(
        ("two", types.SimpleNamespace(dermbench_register_methods=dermbench_register_methods))
    )
    settings = {"profile": "smoke", "model": "tinycnn", "synthetic_n": 150, "out": str(tmp_path / "runs"),
                "cache_dir": str(tmp_path / "c"), "options": {"stage.warm.epochs": "2"}}  # fmt: skip
    lines: list[str] = []
    request = SweepRequest(
        tasks=("tiny3",), methods=("twostage", "erm"), seeds=(0, 1), settings=settings, quiet=True
    )
    result = run_sweep(request, plugins, log=lines.append)
    assert result.failures == [] and len(result.records) == 4
    said = [line for line in lines if "does not apply" in line]
    assert said == ["option stage.warm.epochs does not apply to erm (no stage 'warm'): left out of its runs"]
    two = [r for r in result.records if r["method"]["name"] == "twostage"]
    assert all([s["epochs"] for s in r["resolved"]["stages"]] == [2, 1] for r in two)
    with pytest.raises(ConfigError, match="has no stage 'warm'"):  # a single run stays strict
        from dermbench.testing import run_tiny

        run_tiny(tmp_path, options={"stage.warm.epochs": 2})


@pytest.mark.parametrize(
    "flags, culprit",
    [
        (["--seeds", "0,0"], "--seeds: 0 is given twice"),
        (["--seeds", "1,2,1"], "--seeds: 1 is given twice"),
        (["--methods", "erm,erm"], "--methods: 'erm' is given twice"),
        (["--grid", "lr=1e-3,0.001"], "--grid lr: '0.001' is given twice"),
        (["--seeds", ","], "--seeds: no seed given"),
    ],
)
def test_a_value_given_twice_is_refused_before_anything_runs(tmp_path, capsys, flags, culprit):
    """`--seeds 0,0` trained once and reported "2 seeds, +- 0.0000"."""
    assert main(["sweep", "--profile", "smoke", "--out", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()
