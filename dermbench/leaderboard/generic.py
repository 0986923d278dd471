"""Any JSON a record holds, as HTML-ready tables, so plugin-defined sections render unchanged.

Fairness audits, method recipes and plugin metrics have shapes the leaderboard does not know in
advance. Rather than guess at fields, a value is laid out by its shape: a list of objects is a
table with one row per object, an object of objects that share fields is a table with one row per
key (nested fields become dotted columns), an object of scalars is a two-column table, and other
nesting becomes one table per branch. Cells are plain strings;
the templates escape them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 6


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


def cell(v: Any, digits: int = 3) -> str:
    if v is None or v == {} or v == []:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10**-digits else f"{v:.{digits}g}"
    if isinstance(v, list) and all(_scalar(x) for x in v):
        return ", ".join(cell(x, digits) for x in v)
    if isinstance(v, dict | list):
        return json.dumps(v, default=str, ensure_ascii=False)
    return str(v)


def spread(std: float, digits: int = 3) -> str:
    """A standard deviation beside a mean of ``digits`` decimals: the same decimals, and "<0.001"
    for a spread too small to show there (not 0.000386 beside 0.938, nor 0.000 for a spread)."""
    if std <= 1e-12:  # identical seeds: no rounding noise
        return f"{0.0:.{digits}f}"
    if std < 10**-digits:
        return f"<{10**-digits:.{digits}f}"
    return f"{std:.{digits}f}"


def _scalar(v: Any) -> bool:
    return not isinstance(v, dict | list)


def _flat_row(obj: dict, prefix: str = "") -> dict[str, Any]:
    """One table row: nested objects become dotted columns (``loss.options.gamma``)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat_row(v, key + "."))
        else:
            out[key] = v
    return out


def _rows_table(caption: str, first: str | None, items: list[tuple[str | None, dict]]) -> Table:
    flat = [(name, _flat_row(obj)) for name, obj in items]
    cols: list[str] = []
    for _, row in flat:
        cols += [c for c in row if c not in cols and row[c] not in (None, {}, [])]
    header = ([first] if first is not None else []) + cols
    rows = [
        ([name or ""] if first is not None else []) + [cell(row.get(c)) for c in cols] for name, row in flat
    ]
    return Table(caption=caption, columns=header, rows=rows)


def _rowlike(nested: dict[str, Any]) -> bool:
    """Sibling objects that read as rows of one table: each non-empty one shares a field with the
    widest; empty ones are rows of dashes."""
    if len(nested) < 2 or not all(isinstance(v, dict) for v in nested.values()):
        return False
    keys = [set(_flat_row(v)) for v in nested.values() if v]
    if not keys:
        return False
    widest = max(keys, key=len)
    return all(k & widest for k in keys)


def to_tables(value: Any, caption: str = "", depth: int = 0) -> list[Table]:
    """``value`` as a list of tables (see the module docstring for the layout rules)."""
    if depth > MAX_DEPTH:
        return [Table(caption=caption, columns=["value"], rows=[[cell(value)]])]
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return [_rows_table(caption, None, [(None, v) for v in value])]
        return [Table(caption=caption, columns=["value"], rows=[[cell(v)] for v in value])]
    if not isinstance(value, dict):
        return [Table(caption=caption, columns=["value"], rows=[[cell(value)]])]
    scalars = {k: v for k, v in value.items() if _scalar(v)}
    nested = {k: v for k, v in value.items() if not _scalar(v)}
    tables: list[Table] = []
    if scalars:
        tables.append(
            Table(
                caption=caption,
                columns=["field", "value"],
                rows=[[str(k), cell(v)] for k, v in scalars.items()],
            )
        )
    if _rowlike(nested):
        tables.append(_rows_table(caption, "", list(nested.items())))
        nested = {}
    for k, v in nested.items():
        tables += to_tables(v, f"{caption} / {k}" if caption else str(k), depth + 1)
    return tables


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Dotted key / value pairs, for a method recipe or a config shown as one table."""
    if isinstance(value, dict) and value:
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list) and value and not all(_scalar(v) for v in value):
        out = []
        for i, v in enumerate(value):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix or "value", cell(value))]
