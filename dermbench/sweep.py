"""Sweeps: tasks x methods x option values x seeds, each a normal run, then a summary table.

A run whose resolved config already has a complete record is not run again, so a sweep that was
stopped is continued by running the same command.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dermbench.errors import DermbenchError
from dermbench.metrics import resolve_metric
from dermbench.textreport import fmt, table


def _split_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]


def _as_settings(point: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tied, v in point.items():
        for k in tied.split("+"):
            if "." in k:
                out.setdefault("options", {})[k] = v
            else:
                out[k] = v
    return out


DEFAULT_COLUMNS = ("macro_f1", "balanced_accuracy")


def _cell(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "undef"
    if len(values) == 1:
        return fmt(values[0])
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def summarise(
    records: list[dict],
    point_of: dict[str, dict[str, str]],
    columns: Sequence[str] = (),
    method_order: Sequence[str] = (),
) -> tuple[list[str], list[list[str]]]:
    """Mean +- std over seeds of test metrics per (task, method, grid point).

    The task's primary metric comes first, then ``columns`` (dotted paths into the test
    metrics, e.g. ``operating_point.fn``), or macro-F1 and balanced accuracy by default.
    """
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["task"]["name"], r["method"]["name"], tuple(sorted(point_of[r["run_id"]].items())))
        cells.setdefault(key, []).append(r)
    rank = {m: i for i, m in enumerate(method_order)}
    primary = records[0]["task"]["primary_metric"] if records else "macro_f1"
    cols = list(dict.fromkeys([primary, *(columns or DEFAULT_COLUMNS)]))
    header = ["task", "method", "setting", "seeds", *cols]
    rows = []
    for (task, method, point), rs in sorted(
        cells.items(), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 99), kv[0])
    ):
        values = [_cell([resolve_metric(r["metrics"]["test"], c) for r in rs]) for c in cols]
        setting = ", ".join(f"{k}={v}" for k, v in point) or "-"
        rows.append([task, method, setting, str(len(rs)), *values])
    return header, rows


def run_sweep(
    args: argparse.Namespace, resolve: Callable[..., Any], grid: dict[str, list[str]], log: Any = print
) -> int:
    from dermbench.plugins import get_plugins
    from dermbench.run import execute

    preset = None
    if getattr(args, "preset", None):
        preset = get_plugins().registries.sweeps.get(args.preset)
        grid = {**{k: list(v) for k, v in preset.grid.items()}, **grid}
        log(f"preset {preset.name}: {preset.summary}")
    tasks = _split_list(args.tasks) if args.tasks else list(preset.tasks if preset else ["ham7"])
    methods = _split_list(args.methods) if args.methods else list(preset.methods if preset else ["erm"])
    try:
        seeds = [int(s) for s in _split_list(args.seeds)]
    except ValueError:
        raise DermbenchError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    points = grid_points(grid)
    plan = [(t, m, p, s) for t in tasks for m in methods for p in points for s in seeds]
    log(
        f"sweep: {len(plan)} runs ({len(tasks)} tasks x {len(methods)} methods x {len(points)} settings x {len(seeds)} seeds)"
    )
    records, point_of, failures = [], {}, []
    for i, (task, method, point, seed) in enumerate(plan, 1):
        label = f"[{i}/{len(plan)}] {task} {method} seed {seed} " + " ".join(
            f"{k}={v}" for k, v in point.items()
        )
        try:
            cfg = resolve(task, method, args, {**_as_settings(point), "seed": seed})
            log(label)
            record, _ = execute(
                cfg, get_plugins(), resume=True, force=args.force, progress=not args.quiet, log=log
            )
        except DermbenchError as exc:
            log(f"{label}: FAILED: {exc}")
            failures.append((label, str(exc)))
            continue
        records.append(record)
        point_of[record["run_id"]] = point
    if records:
        header, rows = summarise(
            records, point_of, preset.columns if preset else (), preset.methods if preset else ()
        )
        log("\n" + table(rows, header))
        if args.summary_csv:
            import csv

            with open(args.summary_csv, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows(rows)
    if failures:
        print(f"dermbench: {len(failures)} of {len(plan)} sweep runs failed (see above)", file=sys.stderr)
        return 1
    return 0
