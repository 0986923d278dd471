"""The segmentation page of the leaderboard: records of ``dermbench segment``, ranked in their own
tables, one per comparable group (the same data source, real or synthetic, image size, split
protocol and test split), by test IoU as the mean over seeds (± the standard deviation over
seeds; the bracket is the first seed's bootstrap interval over test images)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dermbench.run.record import find_records
from dermbench.segmentation.run import SCHEMA

METRICS = ("iou", "dice", "boundary_f")
PAGE = "segmentation.html"


def load_segmentation_records(results: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every complete segmentation record under ``results`` with its path."""
    out = []
    for path in find_records(Path(results)):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("schema") == SCHEMA and record.get("status") == "complete":
            out.append((path, record))
    return out


def _group_key(record: dict[str, Any]) -> tuple:
    data, cfg = record["data"], record["config"]
    return (data["source"], bool(data.get("synthetic")), cfg["image_size"], data["split_protocol"],
            data["splits"]["test"]["fingerprint"])  # fmt: skip


def _entry(method: str, budget: tuple, records: list[dict[str, Any]]) -> dict[str, Any]:
    cells = {}
    for m in METRICS:
        values = np.array([r["metrics"]["test"][m]["mean"] for r in records], dtype=float)
        first = records[0]["metrics"]["test"][m].get("ci95") or {}
        cells[m] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                    "low": first.get("low"), "high": first.get("high")}  # fmt: skip
    epochs, init, lr = budget
    return {"method": method, "budget": f"{epochs} epochs, init {init}, lr {lr}", "cells": cells,
            "seeds": sorted(r["config"]["seed"] for r in records)}  # fmt: skip


def segmentation_boards(found: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One board per comparable group, entries (method and budget) ranked by mean test IoU."""
    groups: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for _, record in found:
        cfg, resolved = record["config"], record["resolved"]
        budget = (resolved.get("epochs", cfg["epochs"]), resolved.get("init", "random"), resolved.get("lr"))
        groups[_group_key(record)][(cfg["method"], budget)].append(record)
    boards = []
    for key, entries in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rows = [_entry(method, budget, recs) for (method, budget), recs in entries.items()]
        rows.sort(key=lambda e: -e["cells"]["iou"]["mean"])
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        source, synthetic, size, protocol, test_fp = key
        boards.append({"source": source, "synthetic": synthetic, "image_size": size, "protocol": protocol,
                       "test_fingerprint": test_fp, "entries": rows})  # fmt: skip
    return boards
