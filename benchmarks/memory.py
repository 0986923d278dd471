"""Peak memory of a run: decoded images read through memory maps of the cache, or held in the process.

For each image count it writes a manifest of that many HAM10000 images (the first N by image id,
labels from the metadata), then runs ``dermbench run`` once per ``--image-memory`` mode in a fresh
process (the same cache, decoded before the first timed run) and prints the process's peak resident
memory (``ru_maxrss``: every page it touched, its own and mapped cache pages alike) and the peak of
its anonymous memory (``RssAnon``, sampled every 50 ms: what the process holds that no file backs).
Mapped cache pages are the kernel's page cache: they are shared by every run that maps the same
files, and dropped and read again under memory pressure, so a mapped run's anonymous memory is the
memory it needs of its own.

    python benchmarks/memory.py --ham ../shared/data/ham10000 --images 1000,5000,10000 --size 224
    python benchmarks/memory.py --smoke     # seconds, on generated images (CI)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODES = ("resident", "mapped")


def write_manifest(ham: Path, n: int, folder: Path) -> Path:
    """A manifest of the first ``n`` HAM10000 images by image id, with their lesion groups (absolute
    image paths: a manifest refuses a relative path that leaves its folder)."""
    ham = ham.resolve()
    meta = pd.read_csv(ham / "HAM10000_metadata.csv").sort_values("image_id").head(n)
    images = {p.stem: p for p in (ham / "images").glob("*.jpg")}
    rows = pd.DataFrame({"image": [str(images[i]) for i in meta["image_id"]], "label": meta["dx"],
                         "image_id": meta["image_id"], "lesion_id": meta["lesion_id"]})  # fmt: skip
    out = folder / f"ham{n}"
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "manifest.csv", index=False)
    return out


def _rss_anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_memory(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command``; its peak resident and peak anonymous memory (MiB) and its seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_anon = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak_anon[0] = max(peak_anon[0], _rss_anon_kib(proc.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    if proc.returncode:
        raise SystemExit(
            f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.read().strip()[-2000:]}"
        )
    return {"rss": usage.ru_maxrss / 1024, "anon": peak_anon[0] / 1024, "seconds": time.perf_counter() - t0}


def run_command(data: str, args: argparse.Namespace, mode: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "dermbench.cli", "run", "--task", "ham7", "--method", "erm",
            "--profile", "smoke", "--model", args.model, "--image-size", str(args.size), "--epochs", "1",
            "--batch-size", str(args.batch), "--data", data, "--image-memory", mode, "--device", "cpu",
            "--cache-dir", str(args.cache_dir), "--out", str(out / mode), "--quiet", "--force"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ham", type=Path, help="a HAM10000 folder (HAM10000_metadata.csv, images/)")
    p.add_argument("--images", default="1000,5000,10000", help="comma-separated image counts")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--model", default="tinycnn")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dermbench-memory-cache")
    p.add_argument("--smoke", action="store_true", help="generated images, 200 at 32 px (seconds; for CI)")
    args = p.parse_args(argv)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    work = Path(tempfile.mkdtemp(prefix="dermbench-memory-"))
    if args.smoke:
        args.size, counts = 32, [200]
    else:
        if args.ham is None:
            p.error("--ham PATH is needed (or --smoke)")
        counts = [int(n) for n in args.images.split(",")]
    print(
        f"dermbench run, model {args.model}, {args.size} px, batch {args.batch}, 1 epoch, cache {args.cache_dir}"
    )
    print(
        f"{'images':>7} {'decoded MiB':>12} " + " ".join(f"{m + ' rss':>13} {m + ' anon':>14}" for m in MODES)
    )
    for n in counts:
        data = "synthetic=" if args.smoke else f"manifest={write_manifest(args.ham, n, work)}"
        cmd = run_command(data, args, "mapped", work)
        if args.smoke:
            cmd = [c for c in cmd if c not in ("--data", data)] + ["--synthetic-n", str(n)]
        warm = subprocess.run(cmd, env=env, capture_output=True, text=True)  # decodes into the cache once
        if warm.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({warm.returncode}): {warm.stderr.strip()[-2000:]}")
        row = {m: peak_memory([c if c != "mapped" else m for c in cmd], env) for m in MODES}
        decoded = n * args.size * args.size * 3 / 2**20
        print(
            f"{n:>7} {decoded:>12.0f} "
            + " ".join(f"{row[m]['rss']:>13.0f} {row[m]['anon']:>14.0f}" for m in MODES)
        )
    print("MiB; rss: peak resident (own and mapped cache pages), anon: peak anonymous (own memory only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
