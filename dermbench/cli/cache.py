"""``dermbench cache``: what the decoded-image cache holds, and pruning of its derived arrays."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dermbench.plugins.options import ascii_float


def add_cache_command(sub: Any) -> None:
    p = sub.add_parser("cache", help="what the decoded-image cache holds; `cache prune` frees derived arrays")
    p.add_argument(
        "action", nargs="?", default="info", choices=("info", "prune"),
        help="info (default): each dataset's shards and derived arrays; prune: remove unused derived arrays",
    )  # fmt: skip
    p.add_argument("--cache-dir", help="default $DERMBENCH_CACHE or ~/.cache/dermbench")
    p.add_argument(
        "--older-than", type=ascii_float, default=7.0, metavar="DAYS",
        help="prune: derived arrays no run has mapped for this many days (default 7; 0: all)",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="prune: list what would be removed")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from dermbench.data.cache import default_cache_dir
    from dermbench.data.cache_files import gib, prune_derived, usage_text

    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if args.action == "info":
        print(usage_text(cache_dir))
        return 0
    removed = prune_derived(cache_dir, args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path, _ in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} derived arrays ({gib(sum(b for _, b in removed))}) unused for "
          f"{args.older_than:g} days; decoded shards are kept")  # fmt: skip
    return 0
