"""Plain-text tables of run records, for the terminal (``dermbench run`` and ``dermbench show``)."""

from __future__ import annotations

from typing import Any

from dermbench.evaluation.overfitting import overfitting_report, table_rows


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


def format_dataset_notes(datasets: list[dict]) -> list[str]:
    """One line per thing a dataset lost or left out: unmapped labels, unreadable, excluded, held-out images."""
    notes: list[str] = []
    for d in datasets:
        if d.get("dropped_unmapped"):
            n = sum(d["dropped_unmapped"].values())
            labels = ", ".join(f"{k} {v}" for k, v in d["dropped_unmapped"].items())
            notes.append(
                f"{d['name']}: {n} images dropped, their labels have no mapping in this task ({labels})"
            )
        if d.get("skipped_images"):
            notes.append(
                f"{d['name']}: {len(d['skipped_images'])} unreadable images skipped (listed in the record)"
            )
        if (d.get("excluded") or {}).get("n"):
            ex = d["excluded"]
            notes.append(
                f"{d['name']}: {ex['n']} images left out, {ex['why']}: {', '.join(ex['images'][:5])}"
            )
        removed = d.get("removed_held_out") or {}
        if any(removed.values()):
            notes.append(
                f"{d['name']}: {sum(removed.values())} images removed, they are validation or test images of the "
                f"target (by id {removed.get('by_id', 0)}, by pixels {removed.get('by_pixels', 0)})"
            )
    return notes


def format_record(record: dict, run_dir: str | None = None) -> str:
    task, method, data = record["task"], record["method"], record["data"]
    datasets = ", ".join(d["name"] for d in data["datasets"])
    parts = [
        f"run {record['run_id']}  [{record['status']}]",
        f"task {task['name']}  method {method['name']}  profile {record['profile']}  seed {record['seed']}",
        f"data {datasets}{'  (SYNTHETIC sample: not a real-data result)' if data['synthetic'] else ''}  "
        f"image size {data['image_size']}  model {record['config']['model']} init {record['config']['init']}",
    ]
    parts += format_dataset_notes(data["datasets"])
    parts += format_stages(record)
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
        rows += chance_rows(record, splits)
        parts += ["", table(rows, ["metric", *splits])]
        test = record["metrics"].get("test", {})
        per_class = test.get("per_class") or {}
        if per_class:
            rows = [
                [c, fmt(v.get("precision")), fmt(v.get("recall")), fmt(v.get("f1")), str(v.get("support"))]
                for c, v in per_class.items()
            ]
            parts += ["", "test, per class:", table(rows, ["class", "precision", "recall", "F1", "support"])]
    parts += format_calibration(record)
    parts += format_challenge(record)
    parts += format_gate(record)
    parts += format_flags(record)
    parts += format_fairness(record)
    parts += format_overfitting(record)
    if record.get("best_epoch") is not None:
        parts.append(f"scored checkpoint: epoch {record['best_epoch']} (select={record['config']['select']})")
    if run_dir:
        parts.append(f"record: {run_dir}/record.json")
    return "\n".join(parts)


def _sharpness_clause(gate: dict) -> str:
    floor = gate.get("sharpness_floor")
    if floor is None:
        return ""
    return f" and sharpness > {floor:.4g} ({gate.get('sharpness_source')})"


def format_gate(record: dict) -> list[str]:
    """The gate: threshold, coverage and accepted-image scores per split, and each OOD set."""
    gate = record.get("gate")
    if not gate:
        return []
    m = record.get("metrics") or {}
    rows = []
    for name, s in gate["splits"].items():
        acc = s.get("accepted") or {}
        msp = ((m.get(name) or {}).get("selective") or {}).get("max_softmax") or {}
        psnr = (s.get("selective") or {}).get("psnr") or {}
        rows.append(
            [
                name,
                str(s["n"]),
                fmt(s["coverage"]),
                fmt(acc.get("macro_f1")),
                fmt(psnr.get("aurc")),
                fmt(msp.get("aurc")),
            ]
        )
    out = [
        "",
        f"gate {gate['gate']}: accepts PSNR > {gate['threshold_db']:.2f} dB ({gate['threshold_source']})"
        + _sharpness_clause(gate),
        table(rows, ["split", "images", "coverage", "accepted macro_f1", "AURC psnr", "AURC max softmax"]),
    ]
    if gate.get("ood"):
        ood = [[name, "yes" if o["synthetic"] else "no", str(o["n"]), fmt(o["rejection_rate"]),
                *(fmt((o.get("refused_by") or {}).get(k)) for k in ("psnr", "sharpness")),
                fmt(o["auroc_psnr_test_vs_ood"])] for name, o in gate["ood"].items() if "refused" not in o]  # fmt: skip
        out += [f"out-of-distribution set {name} not scored: {o['refused']}"
                for name, o in gate["ood"].items() if "refused" in o]  # fmt: skip
        out += [
            "",
            table(
                ood,
                [
                    "out-of-distribution set",
                    "synthetic set",
                    "images",
                    "rejected",
                    "by psnr",
                    "by sharpness",
                    "AUROC psnr (test vs set)",
                ],
            ),
        ]
    return out


def format_stages(record: dict) -> list[str]:
    """What each stage trained on, when a run trains on more than its training split."""
    stages = (record.get("resolved") or {}).get("stages") or []
    if not any(s.get("dataset") for s in stages) or len({s.get("dataset") for s in stages}) < 2:
        return []
    rows = [
        [str(s.get("stage")), str(s.get("dataset")), str(s.get("n_train", "")), str(s.get("epochs", "")),
         " > ".join((s.get("blocks") or {}).get("top_first", [])) or "-"]
        for s in stages
    ]  # fmt: skip
    return [
        "",
        "stages, in order:",
        table(rows, ["stage", "trains on", "images", "epochs", "blocks (top first)"]),
    ]


def format_overfitting(record: dict) -> list[str]:
    """Table II of Matas et al.: change, % change and per-stage slopes, and the signed gaps."""
    history = record.get("history") or []
    report = record.get("overfitting") or (overfitting_report(history) if history else None)
    if not report or not report.get("epochs"):
        return []
    header, rows = table_rows(report)
    cells = [[name, *[fmt(v) for v in values]] for name, *values in rows]
    note = " (fold 0 of the ensemble)" if report.get("folds") else ""
    return [f"\noverfitting report{note}: gaps signed so that > 0 means overfitting", table(cells, header)]


def _ci(entry: dict) -> str:
    """``value [low, high]``, with the resamples used when the interval is conditional."""
    if entry.get("value") is None:
        return "undef"
    if entry.get("low") is None:
        return fmt(entry["value"])
    out = f"{entry['value']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]"
    if entry.get("conditional"):
        out += f" ({entry['n_boot_used']}/{entry['n_boot']} resamples)"
    if entry.get("contains_estimate") is False:
        out += " (estimate outside: skewed resamples)"
    return out


def chance_rows(record: dict, splits: list[str]) -> list[list[str]]:
    """The primary metric of each chance rule, beside the model's rows (docs/metrics.md)."""
    primary = record["task"].get("primary_metric", "macro_f1")
    rows = []
    for rule in ("majority", "stratified"):
        values = []
        for s in splits:
            node: Any = ((record["metrics"][s].get("chance") or {}).get(rule)) or {}
            for part in primary.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values.append(fmt(node))
        if any(v != fmt(None) for v in values):
            rows.append([f"chance {rule}: {primary}", *values])
    return rows


def format_flags(record: dict) -> list[str]:
    """Every flag of a trivial result, per split: these numbers are not achievements."""
    lines = []
    for split, m in (record.get("metrics") or {}).items():
        for f in m.get("flags") or []:
            lines.append(f"FLAG {split}: {f['code']}: {f['message']}")
    return ["", *lines] if lines else []


SCREENING_ROWS = (
    ("auc_above_sensitivity", "0.80"),
    ("sensitivity_at_specificity", "0.90"),
    ("specificity_at_sensitivity", "0.85"),
)


def format_challenge(record: dict) -> list[str]:
    """Each split scored by its data's challenge: the primary score and the macro averages."""
    out = []
    for split, m in (record.get("metrics") or {}).items():
        c = m.get("challenge")
        if not c:
            continue
        macro = c["macro_average"]
        out += ["", f"{split}: the {c['name']} challenge's metrics (n {c['n']}), primary {c['primary']} "
                f"{fmt(c.get(c['primary']))}",
                table([[k, fmt(v)] for k, v in macro.items()], ["macro average", "value"])]  # fmt: skip
    return out


def format_calibration(record: dict) -> list[str]:
    splits = [s for s, m in (record.get("metrics") or {}).items() if m.get("calibration")]
    if not splits:
        return []
    m = record["metrics"]
    rows = [["ece (15 bins)", *[fmt(m[s]["calibration"].get("ece")) for s in splits]],
            ["brier", *[fmt(m[s].get("brier")) for s in splits]]]  # fmt: skip
    for key, point in SCREENING_ROWS:
        if any(m[s].get("screening") for s in splits):
            cells = [fmt(((m[s].get("screening") or {}).get(key) or {}).get(point)) for s in splits]
            rows.append([f"{key} {point}", *cells])
    if any((m[s].get("selective") or {}).get("max_softmax") for s in splits):
        for key in ("aurc", "e_aurc"):
            rows.append(
                [
                    f"{key} (max softmax)",
                    *[fmt(((m[s].get("selective") or {}).get("max_softmax") or {}).get(key)) for s in splits],
                ]
            )
    return ["", table(rows, ["calibration / screening / selective", *splits])]


def _group_rows(grouping: dict, metrics: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for g in grouping["groups"]:
        mark = "" if g.get("usable", True) else " *"
        flag = " !" if g.get("flags") else ""
        rows.append([g["group"] + mark + flag, str(g["n"]), str(g["positives"]), *[fmt(g.get(m)) for m in metrics],
                     fmt(g.get("ece"))])  # fmt: skip
    return rows


def format_fairness(record: dict, split: str = "test") -> list[str]:
    """Per-group table and signed differences from the reference group (95% bootstrap intervals)."""
    fairness = record.get("fairness")
    if not fairness or split not in fairness.get("splits", {}):
        return []
    audit = fairness["splits"][split]
    parts = [
        f"\nsubgroup audit, {split}, positive class {fairness['positive_class']} at threshold "
        f"{fmt(fairness['threshold'])} (resampling {audit.get('resampling')}):"
    ]
    if audit.get("fairness_result") is False:
        parts.append(f"NOT A FAIRNESS RESULT: {audit['not_a_fairness_result']}")
    metrics = ("auc", "recall", "precision", "f1", "fnr", "specificity")
    for name, grouping in audit["groupings"].items():
        parts += ["", table(_group_rows(grouping, metrics), [name, "n", "positives", *metrics, "ece"])]
        small = [g for g in grouping["groups"] if not g.get("usable", True)]
        if small:
            parts.append(
                "* not used for differences: " + "; ".join(f"{g['group']} {g['not_used']}" for g in small)
            )
        ref = grouping.get("reference")
        if ref is None:
            parts.append("no reference group: no differences")
            continue
        if grouping.get("withheld"):
            parts.append(f"withheld: {grouping['withheld']}")
        for m in ("auc", "recall", "fnr"):
            diffs = (grouping.get("differences") or {}).get(m) or []
            if diffs:
                parts.append(f"{m}, {ref} - group: " + "; ".join(f"{d['group']} {_ci(d)}" for d in diffs))
        worst = grouping.get("worst_group") or {}
        if worst:
            parts.append(
                "worst group: " + ", ".join(f"{m} {w['group']} {fmt(w['value'])}" for m, w in worst.items())
            )
        if grouping.get("equalized_odds_difference") is not None:
            parts.append(f"equalized-odds difference: {fmt(grouping['equalized_odds_difference'])}")
    return parts


def describe_method(method: Any) -> list[str]:
    """A method for ``dermbench list methods -v``: its paper, stages, profiles and notes, indented."""
    lines = [f"    paper: {method.paper}"] if method.paper else []
    for i, stage in enumerate(method.stages, start=1):
        parts = [f"runner {stage.runner or '(default)'}"]
        for slot in ("loss", "optimizer", "scheduler", "sampler"):
            ref = getattr(stage, slot)
            if ref is not None:
                parts.append(f"{slot} {ref.name}" + (f" {dict(ref.options)}" if ref.options else ""))
        if stage.options:
            parts.append(f"options {dict(stage.options)}")
        epochs = stage.epochs if stage.epochs is not None else "(the run's)"
        parts.append(f"epochs {epochs}")
        lines.append(f"    stage {i} {stage.name}: " + ", ".join(parts))
    for name, settings in method.profiles.items():
        lines.append(f"    profile {name}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    if method.notes:
        lines.append(f"    notes: {method.notes}")
    return lines
