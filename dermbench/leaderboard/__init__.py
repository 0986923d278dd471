"""Static HTML leaderboards and run reports, built from run records alone.

``build_site(results, out, config=None)`` writes a site with one leaderboard per task (a table
per comparable group of runs) and a page per method; ``build_report(run_dir, out)`` writes the
same page for one run. See docs/leaderboard.md.
"""

from dermbench.leaderboard.build import build_site
from dermbench.leaderboard.report import build_report

__all__ = ["build_report", "build_site"]
