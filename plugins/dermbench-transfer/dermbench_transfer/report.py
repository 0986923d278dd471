"""The study's report, as the paper lays it out: Tables III-IV (accuracy, weighted and macro F1
per strategy), Tables V-VIII (sensitivity, precision and F1 per class) and the gain of each
step of a chain over the step before it (``seqft`` with chain A, B over chain A; chain A over
``target_only``). Every figure is the mean +- standard deviation over the seeds on the test split,
with the number of seeds. A class with no test image is left blank; a class never predicted has
precision (and F1) 0, as in the paper's tables.

    python -m dermbench_transfer.report RESULTS [--task dermai13] [--out report.md]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermbench.errors import DataError
from dermbench.leaderboard.records import Run, get_path, load_runs

STRATEGIES = ("scratch", "merged", "target_only", "seqft")
OVERALL = ("accuracy", "weighted_f1", "macro_f1")
PER_CLASS = (("recall", "Sens."), ("precision", "Prec."), ("f1", "F1"))


@dataclass(frozen=True)
class Arm:
    task: str
    method: str
    chain: tuple[str, ...]  # dataset names in order

    @property
    def label(self) -> str:
        return (
            f"{self.method} [{' -> '.join(self.chain)}]"
            if self.chain and self.method != "target_only"
            else self.method
        )


def arm_of(run: Run) -> Arm:
    chain = tuple(
        str(d["name"]) for d in sorted(
            (d for d in run.record["data"]["datasets"] if d.get("role") == "chain-source"),
            key=lambda d: d.get("position", 0),
        )
    )  # fmt: skip
    method = str(run.method["name"])
    return Arm(str(run.task["name"]), method, chain if method in ("seqft", "merged") else ())


def group_arms(runs: list[Run]) -> dict[Arm, list[Run]]:
    out: dict[Arm, list[Run]] = defaultdict(list)
    for run in runs:
        if run.method.get("name") in STRATEGIES:
            out[arm_of(run)].append(run)
    return out


def _stat(values: list[float | None]) -> tuple[float, float, int] | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def _fmt(stat: tuple[float, float, int] | None) -> str:
    return "" if stat is None else f"{100 * stat[0]:.2f} ± {100 * stat[1]:.2f}"


def overall(runs: list[Run], metric: str) -> tuple[float, float, int] | None:
    return _stat([get_path(r.record["metrics"]["test"], metric) for r in runs])


def columns_of(runs: list[Run]) -> tuple[str, ...]:
    """The paper's three, and the task's own primary metric when it is another (binary: F1 at the
    validation threshold)."""
    primary = str(runs[0].record["task"].get("primary_metric") or "macro_f1")
    return OVERALL if primary in OVERALL else (*OVERALL, primary)


def flag_counts(runs: list[Run]) -> str:
    """The test split's flags (a trivial classifier, a figure no better than chance), with how many
    seeds raised each: a number that is not a result says so beside it."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        for code in {f.get("code") for f in run.record["metrics"]["test"].get("flags") or []}:
            counts[str(code)] += 1
    return ", ".join(f"{code} ({n})" for code, n in sorted(counts.items()))


def previous_step(arm: Arm, arms: dict[Arm, list[Run]]) -> Arm | None:
    """The chain one dataset shorter (``target_only`` for a one-dataset chain)."""
    if arm.method != "seqft" or not arm.chain:
        return None
    prev = Arm(arm.task, "seqft", arm.chain[:-1]) if len(arm.chain) > 1 else Arm(arm.task, "target_only", ())
    return prev if prev in arms else None


def overall_table(task: str, arms: dict[Arm, list[Run]]) -> list[str]:
    columns = columns_of(next(iter(arms.values())))
    lines = [
        f"### {task}: test {', '.join(columns)} (%, mean ± sd over seeds)",
        "",
        f"| strategy | seeds | {' | '.join(columns)} | macro_f1 gain over the step before | flags (seeds) |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " | --- | --- |",
    ]
    order = sorted(arms, key=lambda a: (STRATEGIES.index(a.method), len(a.chain), a.chain))
    for arm in order:
        runs = arms[arm]
        cells = [_fmt(overall(runs, m)) for m in columns]
        prev = previous_step(arm, arms)
        gain = ""
        if prev is not None:
            now, before = overall(runs, "macro_f1"), overall(arms[prev], "macro_f1")
            if now and before:
                gain = f"{100 * (now[0] - before[0]):+.2f} (over {prev.label})"
        lines.append(f"| {arm.label} | {len(runs)} | {' | '.join(cells)} | {gain} | {flag_counts(runs)} |")
    return lines


def per_class_table(arm: Arm, runs: list[Run]) -> list[str]:
    classes = list(runs[0].record["task"]["classes"])
    lines = [
        f"### {arm.task}, {arm.label}: per class on the test split (%, mean ± sd over {len(runs)} seeds)",
        "",
        "| class | test images | " + " | ".join(h for _, h in PER_CLASS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in PER_CLASS) + " |",
    ]
    for c in classes:
        entries = [r.record["metrics"]["test"]["per_class"].get(c, {}) for r in runs]
        support = entries[0].get("support", 0)
        cells = [_fmt(_stat([e.get(k) or 0.0 for e in entries])) if support else "" for k, _ in PER_CLASS]
        lines.append(f"| {c} | {support} | {' | '.join(cells)} |")
    return lines


def build_report(results: Path, task: str | None = None) -> str:
    loaded = load_runs(results)
    runs = [r for r in loaded.runs if task is None or r.task["name"] == task]
    arms = group_arms(runs)
    if not arms:
        return f"no complete run of {', '.join(STRATEGIES)} under {results}\n"
    out = [f"# Fine-tuning strategies across datasets: {results}", ""]
    for name in sorted({a.task for a in arms}):
        mine = {a: rs for a, rs in arms.items() if a.task == name}
        out += [*overall_table(name, mine), ""]
        for arm in sorted(mine, key=lambda a: (STRATEGIES.index(a.method), a.chain)):
            out += [*per_class_table(arm, mine[arm]), ""]
    if loaded.skipped:
        out.append(f"{len(loaded.skipped)} record(s) not complete or unreadable, left out.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dermbench_transfer.report", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("results", type=Path, help="a results folder (records anywhere below it)")
    p.add_argument("--task", help="only this task")
    p.add_argument("--out", type=Path, help="write the report here (default: print it)")
    args = p.parse_args(argv)
    try:
        text = build_report(args.results, args.task)
    except DataError as exc:  # a one-line error, never a traceback for a bad folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
