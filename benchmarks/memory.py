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

``--baseline DIR`` adds the same run of another version, a checkout of it (for the version before
the memory maps: ``git worktree add ../dermbench-425707b 425707b``), run from its own folder with
its own first-party plugins on the path and without ``--image-memory`` where its CLI has none.
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


def peak_memory(command: list[str], env: dict[str, str], cwd: Path | None = None) -> dict[str, float]:
    """Run ``command``; its peak resident and peak anonymous memory (MiB) and its seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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


def run_command(data: str, args: argparse.Namespace, mode: str, out: Path, n: int) -> list[str]:
    """The measured ``dermbench run`` over ``data`` (generated images in smoke mode)."""
    source = ["--synthetic-n", str(n)] if args.smoke else ["--data", data]
    return [sys.executable, "-m", "dermbench.cli", "run", "--task", "ham7", "--method", "erm",
            "--profile", "smoke", "--model", args.model, "--image-size", str(args.size), "--epochs", "1",
            "--batch-size", str(args.batch), *source, "--image-memory", mode, "--device", "cpu",
            "--cache-dir", str(args.cache_dir), "--out", str(out / mode), "--quiet", "--force"]  # fmt: skip


def checked_run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    """``cmd`` run to the end (a warm run: it decodes into the cache); its error if it fails."""
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def baseline_env(checkout: Path) -> dict[str, str]:
    """The environment that imports ``checkout``'s dermbench and first-party plugins, not these."""
    paths = [str(checkout), *sorted(str(d) for d in (checkout / "plugins").glob("*") if d.is_dir())]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def baseline_command(cmd: list[str], checkout: Path, env: dict[str, str]) -> list[str]:
    """``cmd`` as ``checkout``'s CLI takes it: without ``--image-memory`` where it has no such option."""
    usage = subprocess.run(
        [sys.executable, "-m", "dermbench.cli", "run", "--help"],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if usage.returncode:
        raise SystemExit(
            f"--baseline {checkout}: its `dermbench run --help` failed: {usage.stderr.strip()[-500:]}"
        )
    if "--image-memory" in usage.stdout:
        return cmd
    at = cmd.index("--image-memory")
    return cmd[:at] + cmd[at + 2 :]


def measure_baseline(cmd: list[str], checkout: Path) -> dict[str, float]:
    """The peaks of ``cmd`` run by ``checkout``'s dermbench, after a warm run that fills its cache."""
    checkout = checkout.resolve()
    env = baseline_env(checkout)
    cmd = baseline_command(cmd, checkout, env)
    checked_run(cmd, env, checkout)
    return peak_memory(cmd, env, checkout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ham", type=Path, help="a HAM10000 folder (HAM10000_metadata.csv, images/)")
    p.add_argument("--images", default="1000,5000,10000", help="comma-separated image counts")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--model", default="tinycnn")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dermbench-memory-cache")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dermbench-memory-work",
        help="manifests and run folders; the same folder each time keeps the cache keys of its manifests",
    )
    p.add_argument("--smoke", action="store_true", help="generated images, 200 at 32 px (seconds; for CI)")
    p.add_argument("--baseline", type=Path, help="a checkout of another dermbench version, measured alike")
    args = p.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "dermbench" / "cli").is_dir():
        p.error(f"--baseline {args.baseline}: not a dermbench checkout (no dermbench/cli folder)")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    work = args.work_dir
    if args.smoke:
        args.size, counts = 32, [200]
    else:
        if args.ham is None:
            p.error("--ham PATH is needed (or --smoke)")
        counts = [int(n) for n in args.images.split(",")]
    print(
        f"dermbench run, model {args.model}, {args.size} px, batch {args.batch}, 1 epoch, cache {args.cache_dir}"
    )
    columns = (*MODES, "baseline") if args.baseline else MODES
    print(
        f"{'images':>7} {'decoded MiB':>12} "
        + " ".join(f"{m + ' rss':>13} {m + ' anon':>14}" for m in columns)
    )
    for n in counts:
        data = "synthetic=" if args.smoke else f"manifest={write_manifest(args.ham, n, work)}"
        cmd = run_command(data, args, "mapped", work, n)
        checked_run(cmd, env)  # decodes into the cache once
        row = {m: peak_memory([c if c != "mapped" else m for c in cmd], env) for m in MODES}
        if args.baseline:
            row["baseline"] = measure_baseline(
                run_command(data, args, "resident", work / "baseline", n), args.baseline
            )
        decoded = n * args.size * args.size * 3 / 2**20
        print(
            f"{n:>7} {decoded:>12.0f} "
            + " ".join(f"{row[m]['rss']:>13.0f} {row[m]['anon']:>14.0f}" for m in columns)
        )
    print("MiB; rss: peak resident (own and mapped cache pages), anon: peak anonymous (own memory only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
