"""The subgroup audit of a run as the method page shows it: per grouping, the groups and the signed
differences from the reference group, with the flags that say when there is nothing to compare.

Reads ``record["fairness"]`` (docs/fairness.md) and lays it out as :class:`generic.Table` rows.
"""

from __future__ import annotations

from typing import Any

from dermbench.leaderboard.generic import Table, cell

GROUP_COLUMNS = ("n", "positives", "auc", "recall", "precision", "fnr", "specificity", "ece", "positive_rate")


def _interval(d: dict[str, Any]) -> str:
    if d.get("low") is None:
        return d.get("note") or d.get("undefined") or "—"
    text = f"[{cell(d['low'])}, {cell(d['high'])}]"
    if d.get("conditional"):
        text += f" ({d['n_boot_used']} of {d['n_boot']} resamples)"
    return text


def _groups_table(name: str, grouping: dict[str, Any]) -> Table:
    rows = []
    for g in grouping.get("groups") or []:
        used = "" if g.get("usable", True) else f" (not compared: {g.get('not_used')})"
        flags = "; ".join(f.get("message", "") for f in g.get("flags") or [])
        rows.append([g["group"] + used, *[cell(g.get(c)) for c in GROUP_COLUMNS], flags or "—"])
    ref = grouping.get("reference")
    caption = (
        f"{name}: groups (reference {ref})" if ref else f"{name}: groups (no reference: nothing to compare)"
    )
    return Table(caption, ["group", *GROUP_COLUMNS, "flags"], rows)


def _differences_table(name: str, grouping: dict[str, Any]) -> Table:
    rows = []
    for metric, entries in (grouping.get("differences") or {}).items():
        for d in entries:
            rows.append([metric, d["group"], cell(d.get("value")), _interval(d)])
    caption = f"{name}: {grouping.get('reference')} - group, 95% interval"
    if grouping.get("withheld"):
        caption += f" (withheld: {grouping['withheld']})"
    return Table(caption, ["metric", "group", "difference", "interval"], rows)


def audit_tables(fairness: dict[str, Any] | None, split: str = "test") -> tuple[list[str], list[Table]]:
    """Notes (not a fairness result, resampling) and tables of one split's audit."""
    audit = ((fairness or {}).get("splits") or {}).get(split)
    if not audit:
        return [], []
    notes = [f"{split}: resampling {audit.get('resampling')}, {audit.get('n_boot')} resamples"]
    if audit.get("fairness_result") is False:
        notes.append(f"Not a fairness result: {audit.get('not_a_fairness_result')}")
    tables = []
    for name, grouping in (audit.get("groupings") or {}).items():
        tables.append(_groups_table(name, grouping))
        tables.append(_differences_table(name, grouping))
        worst = grouping.get("worst_group") or {}
        eod = grouping.get("equalized_odds_difference")
        summary = [[m, w["group"], cell(w["value"])] for m, w in worst.items()]
        summary.append(["equalized odds difference", "—", cell(eod)])
        tables.append(Table(f"{name}: worst group", ["metric", "group", "value"], summary))
    return notes, tables
