"""Sweeps: tasks x methods x option values x seeds, each a normal run, then a summary table.

A run whose resolved config already has a complete record is not run again, so a sweep that was
stopped is continued by running the same command. A sweep is asked for with a typed
:class:`SweepRequest`; the command line is one way to build one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError, DermbenchError
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
    launcher: str | None = None  # None: the plugins' default launcher (local)
    launcher_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("--seeds: no seed given")
        for flag, values in (("--tasks", self.tasks), ("--methods", self.methods), ("--seeds", self.seeds)):
            _no_repeats(flag, list(values))
        for key, values in self.grid.items():
            _no_repeats(f"--grid {key}", list(values))


def _same_value(v: Any) -> Any:
    """A value as it compares for repeats: ``1``, ``1.0`` and ``1e0`` are one number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v).strip()


def _no_repeats(flag: str, values: list[Any]) -> None:
    """A value given twice would be one result counted twice (two 'seeds' of one run)."""
    seen: dict[Any, Any] = {}
    for v in values:
        key = _same_value(v)
        if key in seen:
            raise ConfigError(
                f"{flag}: {v!r} is given twice (as {seen[key]!r} and {v!r}); give each value once"
            )
        seen[key] = v


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


def seed_cell(values: list[Any]) -> str:
    """Mean +- sample std over seeds (one value as it is; "undef" when none is defined)."""
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
        values = [seed_cell([resolve_metric(r["metrics"]["test"], c) for r in rs]) for c in cols]
        setting = ", ".join(f"{k}={v}" for k, v in point) or "-"
        rows.append([task, method, setting, str(len({r.get("seed") for r in rs})), *values])
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


def build_launcher(request: SweepRequest, plugins: Any, log: Callable[..., Any]) -> Any:
    """The request's launcher (the plugins' default when it names none), built before any run."""
    from dermbench.plugins.contract import LaunchContext
    from dermbench.run.config import RunConfig

    name = request.launcher or plugins.default("launchers")
    registry = plugins.registries.launchers
    if name not in registry:
        raise ConfigError(f"--launcher {name!r}: no such launcher (known: {', '.join(registry.names())})")
    fields = {f.name for f in dataclasses.fields(registry.get(name).options)}
    foreign = sorted(set(request.launcher_options) - fields)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        takes = ", ".join("--" + f.replace("_", "-") for f in sorted(fields)) or "none"
        raise ConfigError(f"{flags}: not an option of launcher {name} (its options: {takes})")
    out = str(request.settings.get("out") or request.file_settings.get("out") or RunConfig.out)
    ctx = LaunchContext(out=out, quiet=request.quiet, log=log, plugins=plugins)
    return registry.build(name, dict(request.launcher_options), ctx)


@dataclass
class _Planned:
    """The sweep's runs on the driver: the jobs to send, what was already complete, what failed."""

    jobs: list[Any] = field(default_factory=list)
    done: dict[int, dict] = field(default_factory=dict)  # index -> record
    run_dirs: dict[int, Any] = field(default_factory=dict)
    points: dict[int, dict] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)


def _complete_record(path: Any) -> dict | None:
    """The complete record at ``path``, or None (absent, unfinished, or unreadable: run it again)."""
    from dermbench.run.record import read_record

    if not path.is_file():
        return None
    try:
        record = read_record(path)
    except Exception:  # a broken record is not a result: the run is done again
        return None
    return record if record.get("status") == "complete" else None


def _prepare_jobs(
    request: SweepRequest, plugins: Any, runs: list[tuple], progress: Any, log: Callable
) -> _Planned:
    """Resolve every run's config; skip the complete ones; the rest become jobs."""
    from dermbench.plugins.contract import RunJob
    from dermbench.run.config import merge_settings, resolve_run
    from dermbench.run.pipeline import run_dir_for
    from dermbench.run.record import RECORD_NAME

    planned, said = _Planned(), set()
    for i, (task, method, point, seed) in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {task} {method} seed {seed} " + " ".join(
            f"{k}={v}" for k, v in point.items()
        )
        try:
            settings = merge_settings(request.settings, {**point_settings(point), "seed": seed})
            settings = for_method(settings, plugins.registries.methods.get(method), log, said)
            cfg = resolve_run(plugins, task, method, request.file_settings, settings)
        except DermbenchError as exc:
            log(f"{label}: FAILED: {exc}")
            planned.failures.append((label, str(exc)))
            progress.failed += 1
            continue
        run_dir = run_dir_for(cfg)
        planned.run_dirs[i], planned.points[i] = run_dir, point
        record_path = run_dir / RECORD_NAME
        if not request.force and (rec := _complete_record(record_path)) is not None:
            log(
                f"{label}: already complete with the same resolved config: {record_path} (use --force to run again)"
            )
            planned.done[i] = rec
            progress.skip()
            continue
        planned.jobs.append(RunJob(i, label, cfg, plugins.extra, plugins.autoload, request.quiet,
                                   workdir=os.getcwd(), force=request.force))  # fmt: skip
    return planned


def _launch(launcher: Any, jobs: list[Any], progress: Any) -> list[Any]:
    """The jobs through the launcher, with the marker their workers look for in each results folder."""
    from dermbench.launch.jobs import driver_markers

    if not jobs:
        return []
    with driver_markers({str(job.cfg.out) for job in jobs}) as token:
        return launcher.launch([dataclasses.replace(job, sweep_token=token) for job in jobs], progress)


def run_sweep(request: SweepRequest, plugins: Any, log: Callable[..., Any] = print) -> SweepResult:
    """Run every planned run that is not already recorded, through the request's launcher; a failed
    run is reported, not fatal. Records land in the results folder (see ``dermbench.launch.jobs``)."""
    from dermbench.launch.jobs import land
    from dermbench.launch.progress import SweepProgress

    runs, preset = plan(request, plugins, log)
    launcher = build_launcher(request, plugins, log)
    progress = SweepProgress(len(runs), log)
    planned = _prepare_jobs(request, plugins, runs, progress, log)
    if planned.failures and not planned.jobs and not planned.done:
        raise ConfigError(planned.failures[0][1])  # no run could be configured: the input is wrong
    sweep = sweep_info(request, runs)
    plugins.sweep_start(sweep)
    for outcome in _launch(launcher, planned.jobs, progress):
        if outcome.record is None:
            planned.failures.append((outcome.label, str(outcome.error)))
            continue
        land(outcome, planned.run_dirs[outcome.index])
        planned.done[outcome.index] = outcome.record
    records = [planned.done[i] for i in sorted(planned.done)]
    point_of = {planned.done[i]["run_id"]: planned.points[i] for i in planned.done}
    failures = planned.failures
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
