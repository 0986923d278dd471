"""The ``sweep`` command's flags: the grid, the launcher's options, and the typed request they make."""

from __future__ import annotations

import argparse
from typing import Any

from dermbench.errors import ConfigError
from dermbench.plugins.options import ascii_int


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """``["beta=0.5,1.0", "lr=1e-4"]`` -> ``{"loss.beta": [...], "lr": [...]}``.

    A bare name that is not a run setting is taken as a loss option, the common case.
    ``alpha+beta=0.5,1.0`` ties keys: both take 0.5, then both 1.0.
    """
    from dermbench.run.config import FIELDS, parse_assignments

    def canonical(name: str) -> str:
        name = name.strip().replace("-", "_")
        return name if name in FIELDS or "." in name else f"loss.{name}"

    grid: dict[str, list[str]] = {}
    for key, values in parse_assignments(items, "--grid").items():
        k = "+".join(canonical(part) for part in key.split("+"))  # a+b: both take each value together
        grid[k] = [v.strip() for v in values.split(",") if v.strip()]
        if not grid[k]:
            raise ConfigError(f"--grid {key}: no values")
    return grid


LAUNCHER_FLAGS = (
    ("--address", "ray: a running cluster (host:port, ray://host:port, auto); default: a local Ray"),
    ("--cpus-per-run", "ray, submitit: CPUs of each run"),
    ("--gpus-per-run", "ray: GPUs of each run (fractions pack runs on a GPU); submitit: of each task"),
    ("--retries", "ray, submitit: times a run whose worker died is tried again (default 2)"),
    ("--partition", "submitit: SLURM partition"),
    ("--timeout-min", "submitit: time limit of each array task in minutes (default 60)"),
    ("--array-parallelism", "submitit: array tasks at once (default 16)"),
    ("--runs-per-task", "submitit: runs in each array task, one after another (default 1)"),
    ("--cluster", "submitit: slurm, local or debug (default: slurm where sbatch is, else local)"),
)


def add_launcher_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("launcher (docs/cluster.md)")
    g.add_argument(
        "--launcher", help="local (default: one after another here) | ray | submitit, or a plugin's"
    )
    for flag, text in LAUNCHER_FLAGS:  # strings: the launcher's typed options parse them
        g.add_argument(flag, default=None, help=text)
    g.add_argument("--slurm", action="append", default=None, metavar="KEY=VALUE",
                   help="submitit: an sbatch option for every job (repeat: --slurm mem=64G --slurm account=lab)")  # fmt: skip


def launcher_options(args: argparse.Namespace) -> dict[str, Any]:
    """The launcher flags given, as options of the chosen launcher (``--timeout-min`` -> ``timeout_min``)."""
    names = [flag[2:].replace("-", "_") for flag, _ in LAUNCHER_FLAGS]
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "slurm", None):
        out["slurm"] = tuple(args.slurm)
    return out


def _split_list(s: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (s or "").split(",") if x.strip())


def sweep_request(args: argparse.Namespace) -> Any:
    """The typed sweep request the ``sweep`` flags describe."""
    from dermbench.cli.main import _cli_settings as cli_settings
    from dermbench.launch.sweep import SweepRequest
    from dermbench.run.config import read_config_file

    if args.seed is not None:
        raise ConfigError(
            f"--seed {args.seed}: a sweep's seeds are --seeds (comma-separated); --seed would be ignored"
        )
    try:
        seeds = tuple(ascii_int(s) for s in _split_list(args.seeds))
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    return SweepRequest(
        tasks=_split_list(args.tasks),
        methods=_split_list(args.methods),
        seeds=seeds,
        grid=parse_grid(args.grid),
        preset=args.preset,
        settings=cli_settings(args),
        file_settings=read_config_file(args.config) if args.config else {},
        force=args.force,
        quiet=args.quiet,
        summary_csv=args.summary_csv,
        launcher=args.launcher,
        launcher_options=launcher_options(args),
    )
