"""``dermbench plugin new``: the generated package installs, is found, and its own test passes."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dermbench.errors import ConfigError
from dermbench.plugins.scaffold import new_plugin


def test_names_are_checked_and_nothing_is_overwritten(tmp_path):
    with pytest.raises(ConfigError, match="use 2-40 lowercase letters"):
        new_plugin("Bad-Name", tmp_path)
    with pytest.raises(ConfigError, match="lmf is already registered"):
        new_plugin("lmf", tmp_path, {"lmf", "ce"})
    root = new_plugin("polyloss", tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", "dermbench_polyloss/__init__.py", "dermbench_polyloss/plugin.py", "pyproject.toml",
        "tests/test_polyloss.py",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="already exists"):
        new_plugin("polyloss", tmp_path)


def test_the_generated_package_installs_and_its_own_test_passes(tmp_path):
    pytest.importorskip("hatchling", reason="the editable install builds with hatchling, offline")
    root = new_plugin("polyloss", tmp_path)
    venv = tmp_path / "venv"  # a fresh environment that sees this one's packages, so nothing is downloaded
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    here = sysconfig.get_paths()["purelib"]
    there = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(there, "parent-env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = [
        str(py),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-build-isolation",
        "--no-deps",
        "-e",
        str(root),
    ]
    subprocess.run(install, check=True, env=env, capture_output=True, timeout=300)
    listed = subprocess.run(
        [str(py), "-m", "dermbench.cli", "plugins"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "polyloss" in listed.stdout
    test = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 passed" in test.stdout
    run = subprocess.run(
        [str(py), "-m", "dermbench.cli", "run", "--task", "ham7", "--method", "polyloss", "--profile", "smoke",
         "--model", "tinycnn", "--synthetic-n", "150", "--out", str(tmp_path / "runs"), "--quiet"],
        env={**env, "DERMBENCH_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert Path(tmp_path / "runs" / "ham7" / "polyloss").is_dir()


def test_list_takes_its_pattern_after_the_flag_and_describes_methods(capsys, dermbench_process_plugins):
    from dermbench.cli.main import main
    from dermbench.testing import make_plugins

    dermbench_process_plugins(make_plugins())
    assert main(["list", "optimizers", "-v", "adam*"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("adam ") and "lr: float" in out and "sgd" not in out
    assert main(["list", "methods", "-v", "erm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("erm ") and out[1].startswith("    stage 1 train: runner supervised, loss ce")
    with pytest.raises(SystemExit):
        main(["list", "losses", "a", "b"])
