"""Concurrent runs into one results folder with MLflow tracking on (its local SQLite store).

Starts N ``dermbench run`` processes at once (the synthetic sample, a small CNN, one seed each),
kills one of them mid-run (SIGKILL, after its first epoch) and resumes it, then starts one more run
after all of them. Reports how many records are complete, how many runs the tracking store holds
and in which state, and every tracking warning the runs printed.

    python benchmarks/tracking_concurrency.py --runs 8 --out /tmp/tracking-concurrency

A store that is safe for concurrent and killed runs gives N + 1 complete records, N + 1 FINISHED
MLflow runs (the killed one continued by its resume) and no warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN = ["-m", "dermbench.cli", "run", "--task", "ham7", "--method", "erm", "--profile", "smoke",
       "--model", "tinycnn", "--synthetic-n", "300", "--epochs", "3", "--device", "cpu", "--quiet"]  # fmt: skip


def start(out: Path, seed: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DERMBENCH_MLFLOW": "1", "DERMBENCH_MLFLOW_PLOTS": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    where = ["--out", str(out), "--cache-dir", str(out / "cache")]
    cmd = [sys.executable, *RUN, "--seed", str(seed), *where, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_first_epoch(proc: subprocess.Popen, out: Path, seed: int, timeout: float = 300) -> bool:
    """SIGKILL ``proc`` once its run has saved a checkpoint; False if it finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if list(out.glob(f"ham7/erm/ham7-erm-s{seed}-*/checkpoints/last.pt")):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.2)
    return False


def store_runs(out: Path) -> dict[str, list[str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlruns' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("ham7")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    by_status: dict[str, list[str]] = {}
    for r in runs:
        by_status.setdefault(r.info.status, []).append(r.data.tags.get("dermbench.run_id", "?"))
    return by_status


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("/tmp/tracking-concurrency"))
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.time()
    procs = {seed: start(args.out, seed) for seed in range(args.runs)}
    killed = kill_after_first_epoch(procs[0], args.out, 0)
    outputs = {seed: proc.communicate()[0] for seed, proc in procs.items() if seed != 0 or not killed}
    codes = {seed: proc.returncode for seed, proc in procs.items()}
    if killed:
        resumed = start(args.out, 0, "--resume")
        outputs[0] = resumed.communicate()[0]
        codes[0] = resumed.returncode
    later = start(args.out, args.runs)
    outputs[args.runs] = later.communicate()[0]
    codes[args.runs] = later.returncode
    records = sorted(args.out.glob("ham7/erm/*/record.json"))
    warnings = [line for text in outputs.values() for line in text.splitlines() if "dermbench-mlflow" in line]
    print(f"{args.runs} concurrent runs (seed 0 killed after its first checkpoint: {killed}, then resumed), "
          f"then 1 more; {time.time() - t0:.0f} s")  # fmt: skip
    print(f"exit codes: {codes}")
    print(f"records: {len(records)}")
    for status, ids in sorted(store_runs(args.out).items()):
        print(f"MLflow runs {status}: {len(ids)}")
    print(f"tracking warnings: {len(warnings)}")
    for line in warnings:
        print(f"  {line.strip()}")
    return 0 if not warnings and all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
