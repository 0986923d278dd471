"""Segmentation sweeps: segmenters x setting values x seeds, each a normal segmentation run, then
a summary table of the test metrics (mean +- std over seeds), as ``dermbench sweep`` gives for
classification.

A grid key that names a :class:`~dermbench.segmentation.run.SegmentationConfig` field
(``image_size``, ``epochs``, ``lr``, ``batch_size``, ``composites``, ``split_seed``, ...) sets that
field, converted to its type; any other key is a segmenter option (``--opt NAME=VALUE``). A run
whose record is already complete is reused, not run again (``force`` runs it again), so a stopped
sweep continues when the same command is given again.
"""

from __future__ import annotations

import csv
import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError, DermbenchError
from dermbench.launch.sweep import grid_points, seed_cell
from dermbench.segmentation.run import SegmentationConfig, run_dir_of, run_segmentation

SUMMARY_METRICS = ("iou", "dice", "boundary_f")
NOT_SWEPT = ("method", "seed", "options", "out", "save_model", "masks", "backgrounds")


@dataclass(frozen=True)
class SegmentationSweep:
    records: list[dict]
    run_dirs: list[Path]  # each record's folder
    header: list[str]
    rows: list[list[str]]
    failures: list[tuple[str, str]]
    planned: int


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(SegmentationConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(SegmentationConfig) if f.name not in NOT_SWEPT}


def _convert(key: str, value: str, kind: Any) -> Any:
    """``value`` as the field's type (``int | None`` and ``float | None`` take ``none``)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    if value.lower() == "none" and type(None) in typing.get_args(kind):
        return None
    try:
        return args[0](value)
    except (TypeError, ValueError):
        what = {int: "an integer", float: "a number"}.get(args[0], args[0].__name__)
        raise ConfigError(f"--grid {key}: {value!r} is not {what}") from None


def point_config(base: SegmentationConfig, point: Mapping[str, str]) -> SegmentationConfig:
    """``base`` with one grid point's values: config fields converted, the rest segmenter options."""
    types, fields, options = _field_types(), {}, dict(base.options)
    for key, value in point.items():
        if key in NOT_SWEPT:
            raise ConfigError(
                f"--grid {key}: not a sweepable setting (use --methods / --seeds, or one value)"
            )
        if key in types:
            fields[key] = _convert(key, value, types[key])
        else:
            options[key] = value
    return replace(base, **fields, options=tuple(sorted(options.items())))


def plan(
    base: SegmentationConfig, methods: Sequence[str], seeds: Sequence[int], grid: Mapping[str, Sequence[str]]
) -> list[tuple[SegmentationConfig, dict[str, str]]]:
    """Every (segmenter, grid point, seed) as a run's settings, with its point."""
    return [
        (replace(point_config(base, p), method=m, seed=s), p)
        for m in methods
        for p in grid_points(grid)
        for s in seeds
    ]


def _complete(cfg: SegmentationConfig) -> dict | None:
    import json

    path = run_dir_of(cfg) / "record.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: run it (again)
        return None
    return record if record.get("status") == "complete" else None


def run_sweep(
    runs: list[tuple[SegmentationConfig, dict[str, str]]],
    registries: Any,
    resume: bool = True,
    force: bool = False,
    log: Callable[..., Any] = print,
) -> SegmentationSweep:
    """Each planned run, reusing complete ones; a failed run is reported, not fatal."""
    records, run_dirs, points, failures = [], [], [], []
    for i, (cfg, point) in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {cfg.method} seed {cfg.seed} " + " ".join(
            f"{k}={v}" for k, v in point.items()
        )
        done = None if force else _complete(cfg)
        if done is not None:
            log(f"{label}: already complete: {run_dir_of(cfg)} (--force runs it again)")
        else:
            log(label)
            try:
                done, _ = run_segmentation(cfg, registries, resume=resume, force=force)
            except DermbenchError as exc:
                log(f"{label}: FAILED: {exc}")
                failures.append((label, str(exc)))
                continue
        records.append(done)
        run_dirs.append(run_dir_of(cfg))
        points.append(point)
    header, rows = summarise(records, points)
    return SegmentationSweep(records, run_dirs, header, rows, failures, len(runs))


def summarise(records: list[dict], points: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    """Mean +- std over seeds of each test metric, per (segmenter, grid point)."""
    cells: dict[tuple, list[dict]] = {}
    for record, point in zip(records, points, strict=True):
        cells.setdefault((record["config"]["method"], tuple(sorted(point.items()))), []).append(record)
    rows = []
    for (method, point), rs in sorted(cells.items()):
        values = [seed_cell([r["metrics"]["test"][m]["mean"] for r in rs]) for m in SUMMARY_METRICS]
        setting = ", ".join(f"{k}={v}" for k, v in point) or "-"
        rows.append([method, setting, str(len(rs)), *values])
    return ["method", "setting", "seeds", *(f"test_{m}" for m in SUMMARY_METRICS)], rows


def write_summary(path: str, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
