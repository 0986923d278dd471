"""``dermbench leaderboard build`` and ``dermbench report``, added to the main parser by its owner."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path("leaderboards/runs")
CONFIG_NAME = "leaderboard.toml"


def default_config(results: Path) -> Path | None:
    """``leaderboard.toml`` beside the results folder (``leaderboards/`` for ``leaderboards/runs``)."""
    candidate = results.resolve().parent / CONFIG_NAME
    return candidate if candidate.is_file() else None


def cmd_leaderboard_build(args: argparse.Namespace) -> int:
    from dermbench.leaderboard.build import build_site

    results = Path(args.results)
    config = Path(args.config) if args.config else default_config(results)
    index = build_site(results, Path(args.out), config)
    print(f"leaderboard site: {index}" + (f" (config {config})" if config else " (default config)"))
    return 0


def cmd_leaderboard_verify(args: argparse.Namespace) -> int:
    """One line per folder: ``ok`` or each reason it may not be ranked; exit 1 if any fails."""
    from dermbench.leaderboard.verify import record_folders, verify_run
    from dermbench.plugins.manager import get_plugins
    from dermbench.run.config import parse_assignments

    data = parse_assignments(args.data, "--data")
    plugins, failed = get_plugins(), 0
    folders = record_folders([Path(p) for p in args.dirs])
    if not folders:
        from dermbench.errors import DataError

        raise DataError(f"no run folder (record.json) under {', '.join(args.dirs)}: nothing to verify")
    for folder in folders:
        problems = verify_run(folder, plugins, data)
        failed += bool(problems)
        for reason in problems or ["ok"]:
            print(f"{folder}: {reason}")
    print(f"verified {len(folders)} run folder(s): {len(folders) - failed} ok, {failed} refused")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from dermbench.leaderboard.report import build_report

    index = build_report(Path(args.run), Path(args.out), Path(args.config) if args.config else None)
    print(f"run report: {index}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``leaderboard build`` and ``report`` to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("leaderboard", help="static HTML leaderboards from run records")
    sub = p.add_subparsers(dest="leaderboard_command", required=True)
    b = sub.add_parser("build", help="build the leaderboard site from a folder of run records")
    b.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help=f"folder searched for run records (default {DEFAULT_RESULTS})",
    )
    b.add_argument(
        "--out", required=True, help="output folder for the site (replaced if it holds an earlier build)"
    )
    b.add_argument(
        "--config",
        help=f"leaderboard TOML (default: {CONFIG_NAME} beside the results folder, if present)",
    )
    b.set_defaults(func=cmd_leaderboard_build)
    v = sub.add_parser("verify", help="check submitted run folders before they may be ranked")
    v.add_argument("dirs", nargs="+", metavar="DIR", help="run folders, or folders of them")
    v.add_argument(
        "--data",
        action="append",
        metavar="NAME=PATH",
        help="where a dataset the records name is here (repeatable)",
    )
    v.set_defaults(func=cmd_leaderboard_verify)

    r = subparsers.add_parser("report", help="an HTML report of one run")
    r.add_argument("run", help="run folder (holding record.json)")
    r.add_argument("--out", required=True, help="output folder for the report")
    r.add_argument("--config", help="leaderboard TOML, for metric columns and labels")
    r.set_defaults(func=cmd_report)
