"""The throughput benchmark runs (smoke mode) and prints its three loops and their ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def test_the_throughput_benchmark_runs_in_smoke_mode(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split() == [
        "size",
        "images",
        "dermbench",
        "imagefolder",
        "in-memory",
        "vs",
        "folder",
        "of",
        "ceiling",
    ]
    size, images, ours, folder, ceiling, ratio, share = lines[2].split()
    assert (size, images) == ("32", "64")
    assert min(float(ours), float(folder), float(ceiling)) > 0
    assert abs(float(ratio.rstrip("x")) - float(ours) / float(folder)) < 0.01  # printed to 2 decimals
    assert re.fullmatch(r"\d+%", share)
    assert "peak resident memory" in lines[3]
