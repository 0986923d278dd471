"""Sweeps: tasks x methods x option values x seeds, each a normal run, then a summary table.

A run whose resolved config already has a complete record is not run again, so a sweep that was
stopped is continued by running the same command. A sweep is asked for with a typed
:class:`SweepRequest`; the command line is one way to build one.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.errors import DermbenchError
from dermbench.evaluation.metrics import resolve_metric

DEFAULT_COLUMNS = ("macro_f1", "balanced_accuracy")


@dataclass(frozen=True)
class SweepRequest:
    """What to sweep. Empty ``tasks``/``methods`` take the preset's, else the plugins' defaults.

    ``settings`` are run settings applied to every run (as CLI flags would be), ``file_settings``
    those of a ``--config`` file; grid points and seeds go on top of both.
    """

    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    preset: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    file_settings: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    quiet: bool = False
    summary_csv: str | None = None


@dataclass(frozen=True)
class SweepResult:
    records: list[dict]
    header: list[str]
    rows: list[list[str]]
    failures: list[tuple[str, str]]
    planned: int


def grid_points(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]


def point_settings(point: Mapping[str, str]) -> dict[str, Any]:
    """Run settings of one grid point; ``a+b`` keys give both settings the value."""
    out: dict[str, Any] = {}
    for tied, v in point.items():
        for k in tied.split("+"):
            if "." in k:
                out.setdefault("options", {})[k] = v
            else:
                out[k] = v
    return out


def _cell(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "undef"
    if len(values) == 1:
        return f"{values[0]:.4f}" if isinstance(values[0], float) else str(values[0])
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
    rows = []
    for (task, method, point), rs in sorted(
        cells.items(), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 99), kv[0])
    ):
        values = [_cell([resolve_metric(r["metrics"]["test"], c) for r in rs]) for c in cols]
        setting = ", ".join(f"{k}={v}" for k, v in point) or "-"
        rows.append([task, method, setting, str(len(rs)), *values])
    return ["task", "method", "setting", "seeds", *cols], rows


def plan(request: SweepRequest, plugins: Any, log: Callable[..., Any]) -> tuple[list[tuple], Any]:
    """Every (task, method, grid point, seed) of the request, and its preset (or None)."""
    preset = plugins.registries.sweeps.get(request.preset) if request.preset else None
    grid = dict(request.grid)
    if preset is not None:
        grid = {**{k: list(v) for k, v in preset.grid.items()}, **grid}
        log(f"preset {preset.name}: {preset.summary}")
    tasks = request.tasks or (preset.tasks if preset else (plugins.default("tasks"),))
    methods = request.methods or (preset.methods if preset else (plugins.default("methods"),))
    points = grid_points(grid)
    runs = [(t, m, p, s) for t in tasks for m in methods for p in points for s in request.seeds]
    log(
        f"sweep: {len(runs)} runs ({len(tasks)} tasks x {len(methods)} methods x {len(points)} settings x {len(request.seeds)} seeds)"
    )
    return runs, preset


def for_method(
    settings: Mapping[str, Any], method: Any, log: Callable[..., Any], said: set
) -> dict[str, Any]:
    """A sweep's settings for one method: a ``stage.STAGE.*`` option for a stage this method does not
    have (``stage.pretrain.epochs`` and a method without pretraining) is left out of its runs, and
    said; every other option still has to fit."""
    stages = {r.name for r in method.stages}
    options = dict(settings.get("options") or {})
    foreign = [
        k for k in options if k.startswith("stage.") and k.count(".") >= 2 and k.split(".")[1] not in stages
    ]
    for key in foreign:
        if (method.name, key) not in said:  # once per method, not once per run
            said.add((method.name, key))
            stage = key.split(".")[1]
            log(f"option {key} does not apply to {method.name} (no stage {stage!r}): left out of its runs")
        del options[key]
    out = {**settings, "options": options} if foreign else dict(settings)
    return _without_unused_chain(out, method, log, said)


def _without_unused_chain(settings: dict[str, Any], method: Any, log: Callable[..., Any], said: set) -> dict:
    """``--chain`` (and its datasets' options) is left out of the runs of a method that trains on the
    target alone, and said once: such a run neither loads nor records the chain."""
    from dermbench.data.chain import parse_chain
    from dermbench.run.stage_plan import uses_chain

    chain = settings.get("chain")
    if not chain or uses_chain(method):
        return settings
    names = [src.name for src in parse_chain(chain, dict(settings.get("data") or {}))]
    options = {
        k: v
        for k, v in (settings.get("options") or {}).items()
        if not any(k.startswith(f"data.{n}.") for n in names)
    }
    if (method.name, "chain") not in said:
        said.add((method.name, "chain"))
        log(f"--chain does not apply to {method.name} (it trains on the target alone): left out of its runs")
    return {**{k: v for k, v in settings.items() if k != "chain"}, "options": options}


def sweep_info(request: SweepRequest, runs: list[tuple]) -> dict[str, Any]:
    """What the sweep hooks are told; ``sweep_id`` is the same whenever the same sweep is asked for."""
    from dermbench.run.config import RunConfig

    settings = {k: v for k, v in request.settings.items() if k not in ("force", "quiet")}
    planned = [[t, m, sorted(p.items()), s] for t, m, p, s in runs]
    ident = json.dumps([planned, settings, dict(request.file_settings)], sort_keys=True, default=str)
    return {
        "sweep_id": hashlib.sha1(ident.encode()).hexdigest()[:12],
        "preset": request.preset,
        "tasks": sorted({t for t, *_ in runs}),
        "methods": sorted({m for _, m, *_ in runs}),
        "seeds": list(request.seeds),
        "grid": {k: list(v) for k, v in request.grid.items()},
        "n_runs": len(runs),
        "out": str(Path(settings.get("out") or request.file_settings.get("out") or RunConfig.out).resolve()),
    }


def run_sweep(request: SweepRequest, plugins: Any, log: Callable[..., Any] = print) -> SweepResult:
    """Run every planned run that is not already recorded; a failed run is reported, not fatal."""
    from dermbench.run.config import merge_settings, resolve_run
    from dermbench.run.pipeline import execute

    runs, preset = plan(request, plugins, log)
    records, point_of, failures, said = [], {}, [], set()
    sweep = sweep_info(request, runs)
    plugins.sweep_start(sweep)
    for i, (task, method, point, seed) in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {task} {method} seed {seed} " + " ".join(
            f"{k}={v}" for k, v in point.items()
        )
        try:
            settings = merge_settings(request.settings, {**point_settings(point), "seed": seed})
            settings = for_method(settings, plugins.registries.methods.get(method), log, said)
            cfg = resolve_run(plugins, task, method, request.file_settings, settings)
            log(label)
            record, _ = execute(
                cfg, plugins, resume=True, force=request.force, progress=not request.quiet, log=log
            )
        except DermbenchError as exc:
            log(f"{label}: FAILED: {exc}")
            failures.append((label, str(exc)))
            continue
        records.append(record)
        point_of[record["run_id"]] = point
    plugins.sweep_finished(sweep, records, [{"run": label, "error": error} for label, error in failures])
    header, rows = [], []
    if records:
        header, rows = summarise(
            records, point_of, preset.columns if preset else (), preset.methods if preset else ()
        )
        if request.summary_csv:
            with open(request.summary_csv, "w", newline="") as fh:
                csv.writer(fh).writerows([header, *rows])
    return SweepResult(records, header, rows, failures, len(runs))
