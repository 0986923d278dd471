"""Listing and showing import no deep-learning library: `dermbench --help`, `list`, `plugins`, `show`."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from dermbench.plugins import load_plugins
plugins = load_plugins()
assert not plugins.failures, plugins.failures
from dermbench.cli.main import build_parser
build_parser()
heavy = sorted(m for m in ("torch", "timm", "torchvision", "matplotlib") if m in sys.modules)
print(",".join(heavy))
"""


def test_loading_every_plugin_imports_no_torch_or_timm():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


HELP = """
import sys
from dermbench.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print("imported:", ",".join(sorted(m for m in ("torch", "numpy", "pandas", "timm", "matplotlib") if m in sys.modules)))
"""


def test_help_imports_no_numerical_library():
    """`dermbench --help` stays fast (under 0.5 s idle): it imports neither torch nor numpy nor pandas."""
    out = subprocess.run([sys.executable, "-c", HELP], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "imported:"
