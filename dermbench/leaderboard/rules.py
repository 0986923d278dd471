"""The board's rules: what may be ranked, and which of a method's settings stands for it.

Stated on every board and in docs/leaderboard.md, and enforced here:

1. **Settings of one method are a hyperparameter search, decided on validation.** When a group
   holds a method under several settings of its own (loss options, sampler, batch transform,
   anything but the training budget), its entry is the setting with the highest mean validation
   primary metric over its seeds, among the settings with enough seeds to be ranked (all of them
   when none has); the others are listed on that entry's page with their validation values,
   never ranked. The test split takes no part in the choice.
2. **A ranked entry has at least ``MIN_SEEDS`` seeds and the group's training budget** (model,
   init, epochs, the run's learning rate override, checkpoint selection, precision: the budget
   most entries share). Other entries are listed below the ranking, unranked, each with its reason.
3. **Significance is printed, not only marked**: every entry shows the paired bootstrap interval of
   the best ranked entry minus itself (same resampled test cases); "=" means that interval reaches 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dermbench.leaderboard.records import as_number, get_path

if TYPE_CHECKING:
    from dermbench.leaderboard.aggregate import Entry

MIN_SEEDS = 3

RULES = (
    "Settings of one method are a hyperparameter search: its entry is the setting with the highest mean "
    f"validation {{primary}} over its seeds, among those with at least {MIN_SEEDS} seeds where any has; "
    "the others are on the entry's page, unranked.",
    f"A ranked entry has at least {MIN_SEEDS} seeds and the group's training budget; other entries are "
    "listed below the ranking with the reason.",
    "The difference column is the best ranked entry minus this one, with its paired bootstrap 95% "
    "interval over the same resampled test cases; = marks an interval that reaches 0.",
)


def rules_text(primary: str) -> list[str]:
    return [r.format(primary=primary) for r in RULES]


def budget_id(entry: Entry) -> str:
    return json.dumps(entry.runs[0].budget(), sort_keys=True, default=str)


def val_mean(entry: Entry, primary: str) -> float | None:
    """The entry's mean validation primary metric over the seeds that have it."""
    vals = [as_number(get_path(r.record, f"metrics.val.{primary}")) for r in entry.runs]
    ok = [v for v in vals if v is not None]
    return sum(ok) / len(ok) if ok else None


def choose_settings(entries: Sequence[Entry], primary: str) -> list[Entry]:
    """Rule 1: one entry per method and budget, the setting chosen on validation; the settings not
    chosen hang on it (``alternatives``), and ``selection`` says how it was chosen."""
    searches: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        searches.setdefault((e.method, budget_id(e)), []).append(e)
    chosen = []
    for found in searches.values():
        if len(found) == 1:
            chosen.append(found[0])
            continue
        scored = [(val_mean(e, primary), e) for e in found]
        eligible = [t for t in scored if len(t[1].runs) >= MIN_SEEDS] or scored  # rankable ones first
        best = max(eligible, key=lambda t: (t[0] is not None, t[0] or 0.0, -len(t[1].variant)))[1]
        best.alternatives = [e for _, e in scored if e is not best]
        best.selection = {
            "rule": f"highest mean validation {primary} over seeds",
            "candidates": [
                {"label": e.variant or "default", "val": v, "seeds": len(e.runs), "chosen": e is best}
                for v, e in sorted(scored, key=lambda t: -(t[0] or 0.0))
            ],
        }
        chosen.append(best)
    return chosen


def common_budget(entries: Sequence[Entry]) -> dict[str, Any]:
    """The group's training budget: the one most entries share; a tie goes to the budget with more
    runs, then to pretrained over random weights (the papers' protocol), then to the first in
    sorted order. Never by a test score."""
    budgets: dict[str, list[Entry]] = {}
    for e in entries:
        budgets.setdefault(budget_id(e), []).append(e)
    if not budgets:
        return {}

    def key(item: tuple[str, list[Entry]]) -> tuple:
        bid, found = item
        pretrained = found[0].runs[0].budget().get("init") not in (None, "random")
        return (len(found), sum(len(e.runs) for e in found), pretrained, bid)

    return max(budgets.items(), key=key)[1][0].runs[0].budget()


def unranked_reasons(entry: Entry, common: dict[str, Any]) -> list[str]:
    """Rule 2: why ``entry`` may not be ranked (empty: it may)."""
    reasons = []
    if len(entry.runs) < MIN_SEEDS:
        n = len(entry.runs)
        reasons.append(f"{n} seed{'s' if n != 1 else ''}; ranking needs {MIN_SEEDS}")
    b = entry.runs[0].budget()
    differs = [
        f"{k} {_shown(b.get(k))} (group: {_shown(common.get(k))})"
        for k in common
        if b.get(k) != common.get(k)
    ]
    if differs:
        reasons.append("other training budget: " + ", ".join(differs))
    return reasons


def _shown(value: Any) -> str:
    return "the method's own" if value is None else str(value)
