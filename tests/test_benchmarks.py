"""The benchmarks run in smoke mode: throughput (its loops and their ratios) and peak memory."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def run_smoke(script: Path, tmp_path: Path, *extra: str) -> list[str]:
    """The script's output lines in smoke mode, with a fresh cache."""
    out = subprocess.run(
        [sys.executable, str(script), "--smoke", "--cache-dir", str(tmp_path / "cache"), *extra],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def memory_benchmark():
    """``benchmarks/memory.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("memory_benchmark", SCRIPT.with_name("memory.py"))
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    return memory


def test_the_throughput_benchmark_runs_in_smoke_mode(tmp_path):
    lines = run_smoke(SCRIPT, tmp_path)
    assert lines[1].split() == [
        "model", "size", "images", "plan", "dermbench", "resident", "imagefolder", "fp32", "ceil",
        "bf16", "ceil", "vs", "folder", "of", "ceiling", "vs", "resident",
    ]  # fmt: skip
    model, size, images, plan, ours, resident, folder, ceiling, bf16, ratio, share, vs_resident = lines[
        2
    ].split()
    assert model == "tinycnn" and re.fullmatch(r"(fp32|bf16)/(NCHW|NHWC|rule)", plan), plan
    assert bf16 == "-" or float(bf16) > 0  # timed only where the device has native bf16
    assert (size, images) == ("32", "64")
    assert min(float(ours), float(resident), float(folder), float(ceiling)) > 0
    # the ratio of the unrounded rates, printed to 2 decimals; the rates are printed to 1 decimal
    lo, hi = (float(ours) - 0.05) / (float(folder) + 0.05), (float(ours) + 0.05) / (float(folder) - 0.05)
    assert lo - 0.005 <= float(ratio.rstrip("x")) <= hi + 0.005, (ratio, ours, folder)
    assert re.fullmatch(r"\d+%", share) and re.fullmatch(r"\d+%", vs_resident)
    medmnist = next(line for line in lines if line.startswith("medmnist protocol epoch"))
    m = re.search(
        r"ResNet-18 @28 px, batch (\d+)\): training ([\d.]+) s on (\d+) images.*validation ([\d.]+) s",
        medmnist,
    )
    assert m, medmnist  # the protocol's model at its 28 px, timed over a whole training split
    assert int(m[1]) == 32 and float(m[2]) > 0 and int(m[3]) > 0 and float(m[4]) > 0
    assert "peak resident memory" in lines[-1]


def test_the_memory_benchmark_runs_in_smoke_mode(tmp_path):
    """With this checkout as its own ``--baseline``: the baseline's run is measured beside the two modes."""
    lines = run_smoke(
        SCRIPT.with_name("memory.py"), tmp_path, "--baseline", str(SCRIPT.parents[1]),
        "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    columns = [f"{m} {k}" for m in ("resident", "mapped", "baseline") for k in ("rss", "anon")]
    assert lines[1].split() == ["images", "decoded", "MiB", *" ".join(columns).split()]
    n, decoded, *peaks = lines[2].split()
    assert n == "200" and len(peaks) == 6 and all(float(p) > 0 for p in peaks)
    assert list((tmp_path / "cache" / "images").glob("*/rows-*.npy"))  # the mapped run read cache files
    assert (tmp_path / "work" / "mapped").is_dir()  # its run folders are under --work-dir


def test_the_memory_benchmarks_manifest_reads_from_a_relative_ham_folder(tmp_path, monkeypatch):
    """``--ham ../shared/data/ham10000`` (the README's command) once wrote relative image paths
    that the manifest adapter refuses as leaving the manifest's folder."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from dermbench.plugins import load_plugins

    ham = tmp_path / "ham"
    (ham / "images").mkdir(parents=True)
    ids = [f"ISIC_{i:07d}" for i in range(4)]
    for i in ids:
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(ham / "images" / f"{i}.jpg")
    pd.DataFrame(
        {"image_id": ids, "lesion_id": ["a", "a", "b", "c"], "dx": ["nv", "nv", "mel", "bkl"]}
    ).to_csv(ham / "HAM10000_metadata.csv", index=False)
    memory = memory_benchmark()
    monkeypatch.chdir(tmp_path)
    folder = memory.write_manifest(Path("ham"), 3, tmp_path / "work")
    records = load_plugins().registries.datasets.build("manifest", {}, str(folder))
    assert len(records) == 3 and list(records.frame["label"]) == ["nv", "nv", "mel"]


def test_a_baseline_without_the_image_memory_option_runs_without_it(tmp_path):
    memory = memory_benchmark()
    old = tmp_path / "old"
    (old / "dermbench" / "cli").mkdir(parents=True)
    (old / "dermbench" / "__init__.py").write_text("")
    (old / "dermbench" / "cli" / "__init__.py").write_text("")
    (old / "dermbench" / "cli" / "__main__.py").write_text("print('usage: dermbench run [--task TASK]')\n")
    cmd = ["python", "-m", "dermbench.cli", "run", "--image-memory", "resident", "--quiet"]
    env = memory.baseline_env(old)
    assert env["PYTHONPATH"].split(":")[0] == str(old)
    assert memory.baseline_command(cmd, old, env) == ["python", "-m", "dermbench.cli", "run", "--quiet"]
    assert memory.baseline_command(cmd, SCRIPT.parents[1], memory.baseline_env(SCRIPT.parents[1])) == cmd
