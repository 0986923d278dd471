"""A sweep's progress as its runs come and go: done, running, failed and skipped, of the planned.

One line each time a count changes (``sweep: 3 done, 1 running, 0 failed, 2 skipped (of 6)``), so
that a log of a cluster sweep reads as its history. ``running`` counts the jobs a launcher has
sent and not yet got back (on a cluster some may still wait in its queue).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dermbench.plugins.contract import JobOutcome


@dataclass
class SweepProgress:
    planned: int
    log: Callable[[str], Any] = print
    done: int = 0
    running: int = 0
    failed: int = 0
    skipped: int = 0
    outcomes: list[JobOutcome] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"sweep: {self.done} done, {self.running} running, {self.failed} failed, "
            f"{self.skipped} skipped (of {self.planned})"
        )

    def skip(self, n: int = 1) -> None:
        self.skipped += n

    def started(self, n: int = 1) -> None:
        self.running += n
        self.log(self.line())

    def finished(self, outcome: JobOutcome) -> None:
        self.running = max(0, self.running - 1)
        if outcome.record is None:
            self.failed += 1
            self.log(f"{outcome.label}: FAILED: {outcome.error}")
        else:
            self.done += 1
        self.outcomes.append(outcome)
        self.log(self.line())
