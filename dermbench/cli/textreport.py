"""Plain-text tables of run records, for the terminal (``dermbench run`` and ``dermbench show``)."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "undef"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = (
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        return "  ".join(cells)

    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


OVERALL = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc")


def format_record(record: dict, run_dir: str | None = None) -> str:
    task, method, data = record["task"], record["method"], record["data"]
    datasets = ", ".join(d["name"] for d in data["datasets"])
    parts = [
        f"run {record['run_id']}  [{record['status']}]",
        f"task {task['name']}  method {method['name']}  profile {record['profile']}  seed {record['seed']}",
        f"data {datasets}{'  (SYNTHETIC sample: not a real-data result)' if data['synthetic'] else ''}  "
        f"image size {data['image_size']}  model {record['config']['model']} init {record['config']['init']}",
    ]
    for d in data["datasets"]:
        if d.get("dropped_unmapped"):
            n = sum(d["dropped_unmapped"].values())
            labels = ", ".join(f"{k} {v}" for k, v in d["dropped_unmapped"].items())
            parts.append(
                f"{d['name']}: {n} images dropped, their labels have no mapping in this task ({labels})"
            )
        if d.get("skipped_images"):
            parts.append(
                f"{d['name']}: {len(d['skipped_images'])} unreadable images skipped (listed in the record)"
            )
    splits = list(record.get("metrics", {}))
    if splits:
        rows = [[name, *[fmt(record["metrics"][s].get(name)) for s in splits]] for name in OVERALL]
        op = [s for s in splits if record["metrics"][s].get("operating_point")]
        if op:
            for key in ("threshold", "recall", "precision", "f1", "specificity"):
                rows.append(
                    [
                        f"op.{key}",
                        *[fmt((record["metrics"][s].get("operating_point") or {}).get(key)) for s in splits],
                    ]
                )
        parts += ["", table(rows, ["metric", *splits])]
        test = record["metrics"].get("test", {})
        per_class = test.get("per_class") or {}
        if per_class:
            rows = [
                [c, fmt(v.get("precision")), fmt(v.get("recall")), fmt(v.get("f1")), str(v.get("support"))]
                for c, v in per_class.items()
            ]
            parts += ["", "test, per class:", table(rows, ["class", "precision", "recall", "F1", "support"])]
    parts += format_fairness(record)
    gap = (record.get("overfitting_gap") or {}).get("final")
    if gap:
        parts.append(
            f"\noverfitting gap (train - val, last epoch): accuracy {fmt(gap.get('accuracy'))}, loss {fmt(gap.get('loss'))}"
        )
    if record.get("best_epoch") is not None:
        parts.append(f"scored checkpoint: epoch {record['best_epoch']} (select={record['config']['select']})")
    if run_dir:
        parts.append(f"record: {run_dir}/record.json")
    return "\n".join(parts)


def _ci(gap: dict) -> str:
    if gap.get("value") is None:
        return "undef"
    if gap.get("low") is None:
        return fmt(gap["value"])
    return f"{gap['value']:.4f} [{gap['low']:.4f}, {gap['high']:.4f}]"


def format_fairness(record: dict, split: str = "test") -> list[str]:
    """Per-group table and between-group gaps (95% bootstrap intervals) of the subgroup audit."""
    fairness = record.get("fairness")
    if not fairness or split not in fairness.get("splits", {}):
        return []
    audit = fairness["splits"][split]
    parts = [
        f"\nsubgroup audit, {split}, positive class {fairness['positive_class']} at threshold {fmt(fairness['threshold'])}:"
    ]
    metrics = ("auc", "recall", "precision", "f1", "fnr")
    for name, grouping in audit["groupings"].items():
        rows = [
            [g["group"], str(g["n"]), str(g["positives"]), *[fmt(g.get(m)) for m in metrics]]
            for g in grouping["groups"]
        ]
        parts += ["", table(rows, [name, "n", "positives", *metrics])]
        gaps = grouping.get("gaps", {})
        parts.append("gap (max - min): " + "; ".join(f"{m} {_ci(gaps[m])}" for m in metrics if m in gaps))
    return parts
