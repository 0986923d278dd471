"""Static HTML leaderboards and run reports, built from run records alone.

``build_site(results, out, config=None)`` writes a site with one leaderboard per task (a table
per comparable group of runs) and a page per method; ``build_report(run_dir, out)`` writes the
same page for one run. See docs/leaderboard.md.
"""

from typing import Any

__all__ = ["build_report", "build_site"]


def __getattr__(name: str) -> Any:
    """Import lazily: the CLI adds these commands without paying for matplotlib at start-up."""
    if name == "build_site":
        from dermbench.leaderboard.build import build_site

        return build_site
    if name == "build_report":
        from dermbench.leaderboard.report import build_report

        return build_report
    raise AttributeError(name)
