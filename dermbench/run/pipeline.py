"""One run, end to end: prepare -> train -> predict -> post-hoc -> audit -> record.

Each step is a plain call into the module that owns it. The record is written when the run
starts (status "running"), after every epoch, and when it ends (status "complete"), always
atomically, so a killed run loses at most the epoch in progress and ``--resume`` picks up from
the last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dermbench.components import Method
from dermbench.data.prepare import PreparedData, prepare_data
from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.audit import audit_run, check_groups, group_values
from dermbench.evaluation.overfitting import overfitting_report
from dermbench.models.build import build_run_model, describe_init_weights
from dermbench.plugins import Plugins
from dermbench.run.config import RunConfig
from dermbench.run.fitting import FitContext, fit_and_predict, save_final_models, stage_values
from dermbench.run.record import RECORD_NAME, SCHEMA, environment, now, read_record, write_json_atomic
from dermbench.run.scoring import score
from dermbench.run.slots import check_option_slots
from dermbench.stages import distributed
from dermbench.stages.checkpoints import CHECKPOINTS, LAST
from dermbench.stages.device import (
    cpu_channels_last_from,
    describe_input_stats,
    device_name,
    layout_rule,
    pick_device,
)
from dermbench.stages.host_heap import bound_host_heap
from dermbench.stages.precision import Plan, choose_plan, training_step, use_plan
from dermbench.tasks import Task, task_of


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out) / cfg.task / cfg.method / cfg.run_id


@contextlib.contextmanager
def run_lock(cfg: RunConfig, wait: bool = False, log: Any = print) -> Iterator[None]:
    """One process per run folder: a second identical run refuses at once, naming the folder, or
    (``wait``: a sweep's job, whose earlier driver may have been killed with the job still running)
    waits for the first to finish, then reuses or resumes what it left."""
    lock_path = Path(cfg.out) / ".locks" / f"{cfg.run_id}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise ConfigError(
                    f"another process is running this run now ({run_dir_for(cfg)}): wait for it to finish "
                    f"(it is then reused), or change a setting (e.g. --seed)"
                ) from None
            log(f"another process is running this run now ({run_dir_for(cfg)}): waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_run_dir(cfg: RunConfig, resume: bool, force: bool, log: Any) -> tuple[Path, dict | None]:
    """The run's folder, and its record when a complete run with the same config is already there."""
    run_dir = run_dir_for(cfg)
    record_path = run_dir / RECORD_NAME
    if record_path.exists() and not force:
        existing = read_record(record_path)
        if existing.get("status") == "complete":
            log(f"already complete with the same resolved config: {record_path} (use --force to run again)")
            return run_dir, existing
        if not resume and (run_dir / CHECKPOINTS / LAST).exists():
            raise ConfigError(
                f"an unfinished run with the same config is in {run_dir}: add --resume to continue it, "
                f"or --force to start over"
            )
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, None


def check_run(cfg: RunConfig, task: Task, method: Method, plugins: Plugins) -> None:
    """Everything that can fail without data, before any folder or record is written."""
    build_run_model(cfg, task, plugins.registries)  # a bad model, option or weights
    check_stages(cfg, method, plugins.registries)
    check_option_slots(cfg, task, method, plugins.registries)
    if cfg.sampler:
        plugins.registries.samplers.get(cfg.sampler)  # an unknown sampler, before any folder
    if cfg.groups:
        check_groups(task, cfg.groups)
    cpu_channels_last_from()  # a malformed DERMBENCH_CPU_CHANNELS_LAST_FROM
    check_paths(cfg)


def check_paths(cfg: RunConfig) -> None:
    """What the run reads exists as the right kind, what it writes can be made, before any work."""
    writable_folder(cfg.out, "--out")
    if cfg.cache_dir:
        writable_folder(cfg.cache_dir, "--cache-dir")
    if cfg.split_file and Path(cfg.split_file).is_dir():
        raise DataError(f"--split-file {cfg.split_file}: a folder, not a file")
    seen: dict[str, str] = {}  # training and external test data: never one folder twice
    for flag, named in (
        ("--data", cfg.data),
        ("--test-data", cfg.test_data),
        ("--pretrain-data", cfg.pretrain_data),
    ):
        for name, path in named.items():
            if not Path(path).exists():
                raise ConfigError(f"{flag} {name}={path}: no such file or folder")
            key = str(Path(path).resolve())
            if flag != "--pretrain-data" and key in seen:  # pretraining on the training images is allowed
                raise ConfigError(
                    f"{flag} {name}={path}: the same data as {seen[key]}; name each dataset once"
                )
            seen.setdefault(key, f"{flag} {name}={path}")


def writable_folder(path: str, flag: str) -> None:
    """``path`` is a folder this process can write, or one it can create."""
    p = Path(path)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {probe} cannot be written by this user")


def check_stages(cfg: RunConfig, method: Method, registries: Any) -> None:
    """Every stage's runner exists and takes its options (a typo fails before any decoding)."""
    for recipe in method.stages:
        values, _ = stage_values(cfg, method, recipe)
        registries.stages.get(recipe.runner or registries.default_of("stages")).make_options(values)


def prepare(cfg: RunConfig, task: Task, plugins: Plugins, progress: bool) -> PreparedData:
    """Decode and split the data; a grouping the data lacks fails before training."""
    data = prepare_data(cfg, task, plugins.registries, progress=progress)
    for name in cfg.groups:  # a grouping the data lacks fails now, not after training
        group_values(data.splits["test"].frame, name)
    return data


def new_record(
    cfg: RunConfig, task: Task, method: Method, plugins: Plugins, data: PreparedData, device: torch.device
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": cfg.run_id,
        "status": "running",
        "created": now(),
        "finished": None,
        "seed": cfg.seed,
        "profile": cfg.profile,
        "protocol": cfg.profile,
        "task": task.to_dict(),
        "method": {
            "name": method.name,
            "summary": method.summary,
            "paper": method.paper,
            "plugin": method.plugin,
            "plugin_version": plugins.version_of(method.plugin),
            "recipe": method.to_dict(),
        },
        "config": cfg.to_dict(),
        "environment": {
            **environment(device_name(device), plugins.versions(), distributed.current().world),
            "host_heap": bound_host_heap(),  # glibc's mmap threshold, fixed (dermbench.stages.host_heap)
            "memory_layout": layout_rule(device),  # the layout batches are fed in (stages.device)
        },
        "data": data.info,
        "history": [],
        "best_epoch": None,
        "metrics": {},
        "overfitting": None,
        "predictions": {},
        "artifacts": {},
    }


def epoch_logger(
    record: dict, record_path: Path, fc_histories: list, plugins: Plugins, progress: bool, log: Any
) -> Any:
    """What happens after every epoch: the record is rewritten, plugins told, a line printed."""

    def on_row(row: dict) -> None:
        record["history"] = [r for h in fc_histories for r in h]  # record["resolved"] fills as stages start
        write_json_atomic(record_path, record)
        plugins.epoch_end(record, row, len(record["history"]) - 1)
        if progress:
            fold = f" fold {row['fold']}" if "fold" in row else ""
            log(
                f"  {row['stage']}{fold} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
                f"macro-F1 {row['val_macro_f1']:.3f} ({row['seconds']:.1f}s)"
            )

    return on_row


def audit(record: dict, cfg: RunConfig, task: Task, data: PreparedData, probs: dict) -> dict | None:
    """The subgroup audit, at the operating point chosen on validation, when ``--groups`` asks."""
    if not cfg.groups:
        return None
    op = record["metrics"]["val"].get("operating_point") or {}
    frames = {n: s.frame for n, s in data.splits.items()}
    labels = {n: s.y for n, s in data.splits.items()}
    known = {n: m.get("flags") or [] for n, m in record["metrics"].items()}  # scored at this threshold
    return audit_run(
        task, tuple(cfg.groups), frames, labels, probs, op.get("threshold"), cfg.seed, known_flags=known
    )


def execute(
    cfg: RunConfig,
    plugins: Plugins,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Any = print,
    wait_for_lock: bool = False,
) -> tuple[dict, Path]:
    """Run ``cfg`` and return its record and run dir. A complete run with the same config is reused;
    one another process is running is refused, or waited for (``wait_for_lock``)."""
    reg = plugins.registries
    task, method = task_of(cfg, reg.tasks), reg.methods.get(cfg.method)
    device = pick_device(cfg.device)
    check_run(cfg, task, method, plugins)
    with run_lock(cfg, wait_for_lock, log):
        run_dir, done = distributed.agree_on_start(lambda: open_run_dir(cfg, resume, force, log))
        if done is not None:
            return done, run_dir
        data = prepare_leaving_no_folder(cfg, task, plugins, progress, run_dir)
        return train_and_score(cfg, task, method, plugins, data, device, run_dir, resume, progress, log)


def prepare_leaving_no_folder(
    cfg: RunConfig, task: Task, plugins: Plugins, progress: bool, run_dir: Path
) -> PreparedData:
    """:func:`prepare`; a failure before training removes the run folder if nothing else is in it."""
    try:
        return prepare(cfg, task, plugins, progress)
    except BaseException:
        folder, out = run_dir, Path(cfg.out)
        while (
            folder != out and folder.is_dir() and not any(folder.iterdir())
        ):  # the run, method, task folders
            folder.rmdir()
            folder = folder.parent
        raise


def _resolved_so_far(record_path: Path) -> list[dict]:
    """The stage settings an interrupted run recorded (a stage finished before the kill is not run
    again, so its settings come from here)."""
    try:
        return list((read_record(record_path).get("resolved") or {}).get("stages") or [])
    except Exception:  # no record yet, or a broken one: nothing to carry over
        return []


def run_plan(
    cfg: RunConfig, task: Task, reg: Any, device: torch.device, interrupted: Path | None, log: Any
) -> Plan:
    """The precision and layout the run trains in: an interrupted run's, else ``--precision``'s
    (``auto`` times the run's own model, batch and image size: :mod:`dermbench.stages.precision`)."""
    earlier = (read_record(interrupted).get("environment") or {}).get("precision") if interrupted else None
    if earlier:
        return Plan.from_record(earlier)

    def make_step() -> Any:
        model = build_run_model(dataclasses.replace(cfg, init="random"), task, reg)  # speed, not weights
        return training_step(model, cfg.batch_size, cfg.image_size, task.num_classes, device)

    plan = choose_plan(cfg.precision, device, make_step)
    if plan.candidates:
        timed = ", ".join(
            f"{c['dtype']} {'NHWC' if c['channels_last'] else 'NCHW'} {c['ms_per_step']:.0f} ms"
            for c in plan.candidates
        )
        log(f"precision: {plan.dtype}, {plan.describe()['layout']} (timed per step: {timed})")
    return plan


def run_gate_if_asked(
    cfg: RunConfig, task: Task, data: PreparedData, probs: dict, reg: Any, device: torch.device,
    run_dir: Path, log: Any, progress: bool,
) -> dict | None:  # fmt: skip
    if not cfg.gate:
        return None
    from dermbench.gate.report import run_gate

    return run_gate(cfg, task, data, probs, reg, device, run_dir, log, progress)


def train_and_score(
    cfg: RunConfig, task: Task, method: Method, plugins: Plugins, data: PreparedData, device: torch.device,
    run_dir: Path, resume: bool, progress: bool, log: Any,
) -> tuple[dict, Path]:  # fmt: skip
    """From the first record to the complete one: train, predict, score, audit."""
    reg = plugins.registries
    record_path = run_dir / RECORD_NAME
    resumed = resume and record_path.is_file()  # an interrupted run's record is there: it continues
    earlier = _resolved_so_far(record_path) if resumed else []
    record = new_record(cfg, task, method, plugins, data, device)
    write_json_atomic(record_path, record)
    plugins.run_start(record, str(run_dir), resumed)
    histories: list[list[dict]] = []
    stages: list[dict] = []  # each stage's settings as used, in the record as soon as known
    record["resolved"] = {"stages": stages}
    on_row = epoch_logger(record, record_path, histories, plugins, progress, log)
    fc = FitContext(
        cfg, task, method, reg, device, run_dir / CHECKPOINTS, resume, progress, log, on_row,
        unlabelled=data.unlabelled, sources=data.sources, histories=histories, resolved=stages,
        earlier_resolved=earlier,
    )  # fmt: skip
    plan = run_plan(cfg, task, reg, device, record_path if resumed else None, log)
    with use_plan(plan):
        record["environment"].update(precision=plan.describe(), memory_layout=layout_rule(device))
        fitted = fit_and_predict(fc, data)
        gate = run_gate_if_asked(cfg, task, data, fitted.probs, reg, device, run_dir, log, progress)
    models = save_final_models(fitted, fc.checkpoint_dir, ensemble=cfg.ensemble != "none")
    record["artifacts"]["models"] = sorted(str(p.relative_to(run_dir)) for p in models)
    resolved = {
        "stages": fc.resolved,
        "input_normalisation": describe_input_stats(fitted.models[0]),
        "init_weights": describe_init_weights(fitted.models[0], cfg.init),
    }
    record.update(best_epoch=fitted.best_epoch, history=fitted.history, resolved=resolved)
    record.update(score(fitted.probs, data, task, method, cfg, reg, run_dir))
    if gate is not None:
        record["gate"] = gate
    fairness = audit(record, cfg, task, data, fitted.probs)
    if fairness is not None:
        record["fairness"] = fairness
    record.update(overfitting=overfitting_report(record["history"]), status="complete", finished=now())
    write_json_atomic(record_path, record)
    plugins.run_finished(record, str(run_dir))
    return record, run_dir
