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
