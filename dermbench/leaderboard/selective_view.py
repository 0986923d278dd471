"""Selective prediction as the leaderboard shows it: what a method gains by refusing images.

Every run records the risk-coverage curve of the classifier's own confidence (maximum softmax,
``metrics.<split>.selective.max_softmax``); a run behind a gate (``record["gate"]``, docs/gate.md)
also records the gate's coverage, the scores on the images it accepted, the curve of its PSNR and
each out-of-distribution set's rejection. The task page gets one table per comparable group (the
mean and standard deviation over seeds, and how many seeds had the value), the method page the
values of each seed and a risk-coverage plot. AURC is lower-is-better; the ranking of the board,
by its primary metric, is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dermbench.leaderboard.generic import Table, cell, spread
from dermbench.leaderboard.records import Run, as_number, get_path

# (label, where in a record's test results); every value is read as recorded
ENTRY_COLUMNS = (
    ("AURC, max softmax (lower is better)", "msp.aurc"),
    ("e-AURC, max softmax", "msp.e_aurc"),
    ("gate coverage", "gate.coverage"),
    ("macro F1 on accepted images", "gate.accepted.macro_f1"),
    ("AURC, gate PSNR", "gate.selective.psnr.aurc"),
)
OOD_COLUMNS = (
    "n",
    "synthetic",
    "rejection_rate",
    "refused_by.psnr",
    "refused_by.sharpness",
    "auroc_psnr_test_vs_ood",
)


def split_results(record: dict, split: str = "test") -> dict[str, Any]:
    """A split's selective results: ``msp`` (max softmax) and ``gate`` (when there was one)."""
    return {
        "msp": get_path(record, f"metrics.{split}.selective.max_softmax"),
        "gate": get_path(record, f"gate.splits.{split}"),
    }


def _mean_cell(values: Sequence[float | None], digits: int) -> str:
    ok = [v for v in values if v is not None]
    if not ok:
        return "—"
    text = cell(float(np.mean(ok)), digits)
    if len(ok) > 1:
        std = float(np.std(ok, ddof=1))
        text += f" ± {spread(std, digits)}"
    return text + (f" ({len(ok)} of {len(values)} seeds)" if len(ok) < len(values) else "")


def board_table(entries: Sequence[Any], digits: int = 3) -> Table | None:
    """Per entry of a board, the mean ± std over seeds of each selective value; None if none has any."""
    rows, without = [], 0
    for e in entries:
        values = [
            [as_number(get_path(split_results(r.record), path)) for r in e.runs] for _, path in ENTRY_COLUMNS
        ]
        if not any(v is not None for vs in values for v in vs):
            without += 1  # its records predate these metrics: no row of dashes
            continue
        rows.append([e.label, *[_mean_cell(vs, digits) for vs in values], str(len(e.runs))])
    if not rows:
        return None
    caption = "Selective prediction on the test split: mean ± std over seeds (AURC: FD-Shifts' area, lower is better)"
    if without:
        caption += (
            f"; {without} entr{'y' if without == 1 else 'ies'} left out, whose records predate these metrics"
        )
    header = ["entry", *[label for label, _ in ENTRY_COLUMNS], "seeds"]
    return drop_empty_columns(Table(caption, header, rows))


def drop_empty_columns(table: Table) -> Table:
    """``table`` without the columns that hold no value in any row (a board without a gate has no
    gate columns)."""
    keep = [j for j in range(len(table.columns)) if j == 0 or any(row[j] != "—" for row in table.rows)]
    rows = [[row[j] for j in keep] for row in table.rows]
    return Table(table.caption, [table.columns[j] for j in keep], rows)


def seed_tables(run: Run, label: str, digits: int = 3) -> list[Table]:
    """One seed's selective results on every split, and its gate's out-of-distribution sets."""
    rows = []
    for split in run.record.get("metrics") or {}:
        found = split_results(run.record, split)
        if found["msp"] is None and found["gate"] is None:
            continue
        rows.append([split, *[cell(as_number(get_path(found, path)), digits) for _, path in ENTRY_COLUMNS]])
    tables = (
        [Table(f"{label}: selective prediction per split", ["split", *[c for c, _ in ENTRY_COLUMNS]], rows)]
        if rows
        else []
    )
    ood = get_path(run.record, "gate.ood") or {}
    if ood:
        ood_rows = [[name, *[cell(get_path(o, c), digits) for c in OOD_COLUMNS]] for name, o in ood.items()]
        tables.append(
            Table(
                f"{label}: out-of-distribution sets (the gate's rejection)", ["set", *OOD_COLUMNS], ood_rows
            )
        )
    return tables


def gate_line(run: Run) -> str | None:
    """The gate's rule as recorded, in one line."""
    gate = run.record.get("gate")
    if not gate:
        return None
    line = f"{gate.get('gate')}: PSNR > {cell(gate.get('threshold_db'))} dB ({gate.get('threshold_source')})"
    if gate.get("sharpness_floor") is not None:
        line += f", sharpness > {cell(gate['sharpness_floor'], 6)} ({gate.get('sharpness_source')})"
    return line


def curves(runs: Sequence[Run], labels: Sequence[str]) -> list[tuple[str, list[float], list[float]]]:
    """(label, coverages, risks) of each seed's test curves, coverage 0 left out (no image kept)."""
    out = []
    for run, label in zip(runs, labels, strict=True):
        found = split_results(run.record)
        for name, summary in (
            ("max softmax", found["msp"]),
            ("gate PSNR", get_path(found, "gate.selective.psnr")),
        ):
            curve = (summary or {}).get("curve") or {}
            pairs = [
                (c, r)
                for c, r in zip(curve.get("coverage") or [], curve.get("risk") or [], strict=False)
                if c > 0
            ]
            if pairs:
                out.append((f"{label}, {name}", [c for c, _ in pairs], [r for _, r in pairs]))
    return out
