"""The CLI's one error boundary, as properties: for every numeric or named option of `run` and
`sweep`, and every key of a config file, a generated bad value gives exit code 2, one line on
stderr, no traceback, and nothing written; for every option and positional of every other command,
a bad value is accepted or refused in one line, with nothing written before the refusal."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dermbench.cli.main import main

# values no numeric option takes: not numbers, not finite, far out of any range
NOT_A_SETTING = st.sampled_from(
    [
        "nan",
        "inf",
        "-inf",
        "abc",
        "∞",
        "1e400",
        "-99999999999",
        "99999999999999999999999",
        "1,2",
        "0x10",
        "١٢",
    ]
)
NUMERIC = ["--epochs", "--image-size", "--batch-size", "--lr", "--weight-decay", "--seed", "--split-seed",
           "--early-stopping", "--synthetic-n", "--max-per-class"]  # fmt: skip
NAMED = ["--select", "--augment", "--tta", "--resize", "--ensemble", "--image-memory", "--near-duplicates",
         "--method", "--task", "--model", "--profile", "--sampler", "--device"]  # fmt: skip
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _exit_code(argv: list[str]) -> int:
    """``main``'s exit code, argparse's refusals (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_line_exit_2(argv: list[str], tmp_path, capsys) -> str:
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "out"  # one per example: hypothesis reuses tmp_path
    code = _exit_code([*argv, "--out", str(out), "--cache-dir", str(out.parent / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert not out.exists(), f"{argv} wrote {sorted(os.listdir(out))}"
    return err


@PROPERTY
@given(option=st.sampled_from(NUMERIC), value=NOT_A_SETTING, command=st.sampled_from(["run", "sweep"]))
def test_a_bad_number_for_any_option_is_one_line_and_writes_nothing(tmp_path, capsys, option, value, command):
    err = _one_line_exit_2([command, "--profile", "smoke", f"{option}={value}"], tmp_path, capsys)
    assert option.strip("-").replace("-", "_") in err or option in err, err


@PROPERTY
@given(
    option=st.sampled_from(NAMED),
    value=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12).map(
        lambda s: "zz" + s.strip()
    ),
)
def test_an_unknown_name_for_any_named_option_is_one_line(tmp_path, capsys, option, value):
    _one_line_exit_2(["run", "--profile", "smoke", f"{option}={value}"], tmp_path, capsys)


@PROPERTY
@given(
    key=st.sampled_from(["epochs", "image_size", "batch_size", "lr", "seed", "weight_decay", "select"]),
    value=st.sampled_from(["nan", "inf", "-1", '"abc"', "1e300", "[1, 2]", "{a = 1}", "true"]),
)
def test_a_bad_value_in_a_config_file_is_one_line_naming_the_key(tmp_path, capsys, key, value):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"{key} = {value}\n")
    err = _one_line_exit_2(["run", "--profile", "smoke", "--config", str(cfg)], tmp_path, capsys)
    assert key in err, err


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["run", "--config", "{tmp}"], "config file"),
        (["run", "--split-file", "{tmp}"], "--split-file"),
        (["run", "--data", "ham10000={tmp}/none"], "--data ham10000="),
        (["run", "--out", "{tmp}/file"], "--out"),
        (["run", "--cache-dir", "{tmp}/file/x"], "--cache-dir"),
        (["run", "--opt", "loss.a=1", "--opt", "loss.a=2"], "given twice"),
        (["run", "--data", "ham10000={tmp}", "--test-data", "isic2018={tmp}"], "the same data"),
        (["leaderboard", "build", "--results", "{tmp}/empty", "--out", "{tmp}/site"], "no run record"),
        (["leaderboard", "verify", "{tmp}/empty"], "nothing to verify"),
        (["show", "{tmp}/empty"], "no run record"),
    ],
)
def test_paths_and_repeats_are_checked_before_any_work(tmp_path, capsys, argv, culprit):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = _exit_code([*argv, *(["--profile", "smoke"] if argv[0] == "run" else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and culprit in err, err


def test_debug_shows_the_traceback_and_a_bug_asks_for_a_report(tmp_path, capsys, monkeypatch):
    from dermbench.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["run", "--profile", "smoke", "--seed=-1", "--debug"])
    monkeypatch.setattr(sys.modules["dermbench.cli.main"], "cmd_show", lambda args: {}["a bug"])
    assert main(["show", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "please report it" in err


def test_a_library_refusing_a_value_is_one_line_naming_the_library(tmp_path, capsys, monkeypatch):
    """torch's optimiser checks ended in a traceback from deep inside torch."""
    import torch

    monkeypatch.setattr(
        sys.modules["dermbench.cli.main"],
        "cmd_show",
        lambda args: torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=-1.0),
    )
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("dermbench: error: torch refused a value: ValueError: Invalid learning rate")
        and "\n" not in err
    )


def _commands() -> list[tuple[list[str], list[argparse.Action]]]:
    """Every leaf command of the CLI with its options and positionals that take a value."""
    from dermbench.cli.main import build_parser

    out: list[tuple[list[str], list[argparse.Action]]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, sub in subs[0].choices.items():
                walk(sub, [*prefix, name])
            return
        takes_value = [a for a in parser._actions if a.nargs != 0 and not isinstance(a, argparse._HelpAction)]
        out.append((prefix, takes_value))

    walk(build_parser(), [])
    return out


# the smallest valid-looking line of each command that needs one; run, sweep and splits export are
# covered above (their valid values start work)
MINIMAL = {
    "show": ["afolder"], "explain": ["afolder"], "report": ["afolder"], "list": ["tasks"],
    "plugin new": ["okname", "--out", "po"], "leaderboard verify": ["afolder"],
    "leaderboard build": ["--results", "afolder", "--out", "site"], "cache": ["list"],
}  # fmt: skip
OTHER_COMMANDS = [
    (prefix, action)
    for prefix, actions in _commands()
    if " ".join(prefix) not in ("run", "sweep", "splits export")
    for action in actions
]
BAD_VALUES = st.sampled_from(
    ["nan", "", "zz-missing/none", "∞", "-1", "1e400", "afolder", "afile.txt", "é" * 300]
)


@settings(PROPERTY, max_examples=80)
@given(target=st.sampled_from(OTHER_COMMANDS), value=BAD_VALUES)
def test_every_other_command_and_option_refuses_a_bad_value_in_one_line(
    tmp_path, capsys, monkeypatch, target, value
):
    prefix, action = target
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "afile.txt").write_text("x\n")
    (work / "afolder").mkdir()
    monkeypatch.chdir(work)
    base = list(MINIMAL.get(" ".join(prefix), []))
    if action.option_strings:
        argv = [*prefix, *base, action.option_strings[0], value]
    elif base and not base[0].startswith("--"):
        argv = [*prefix, value, *base[1:]]  # the value in the positional's place
    else:
        argv = [*prefix, value, *base]
    before = sorted(p.name for p in work.iterdir())
    code = _exit_code(argv)
    err = capsys.readouterr().err.strip()
    assert code in (0, 1, 2), (argv, code, err)
    if code:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert sorted(p.name for p in work.iterdir()) == before, f"{argv} wrote files before refusing"
