"""A run record's nested values as MLflow parameters, metrics and tags.

MLflow keys allow letters, digits, ``_ - . /`` and spaces (at most 250 characters); a parameter's
value at most 6,000 characters. Nested objects become dotted keys (``options.loss.gamma``), any
other character an underscore (a class named ``a+b`` is ``a_b``). Lists are parameters as JSON and
never metrics (curves and confusion matrices stay in the record, which is an artifact).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

MAX_KEY = 250
MAX_VALUE = 6000
_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def key(name: str) -> str:
    return _BAD.sub("_", name)[:MAX_KEY]


def leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of nested dicts under a dotted key; lists and scalars are leaves."""
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict) and v:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def params_of(config: dict) -> dict[str, str]:
    """The resolved config as parameters (every value a string, as MLflow stores them)."""
    out = {}
    for k, v in leaves(config).items():
        text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
        out[key(k)] = text[:MAX_VALUE]
    return out


def resolved_params(record: dict) -> dict[str, str]:
    """Each stage's settings as the run resolved them (``resolved.0.train.loss.options.gamma``):
    the loss, optimiser, scheduler and batch transform with every option, the epochs and the rate
    the stage trained at, whether the recipe, a default or ``--opt`` set them."""
    tree = {}
    for i, stage in enumerate((record.get("resolved") or {}).get("stages") or []):
        keep = ("epochs", "lr", "loss", "optimizer", "scheduler", "batch_transform")
        tree[f"{i}.{stage.get('stage', 'stage')}"] = {k: stage[k] for k in keep if stage.get(k) is not None}
    return params_of({"resolved": tree}) if tree else {}


def number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def metrics_of(obj: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers among the leaves of ``obj`` (lists and text left out)."""
    return {key(k): f for k, v in leaves(obj, prefix).items() if (f := number(v)) is not None}


def final_metrics(record: dict) -> dict[str, float]:
    """The complete record's numbers: every split's metrics (``test.macro_f1``), the gate's per
    split and out-of-distribution set (``gate.test.coverage``), the overfitting report."""
    out = metrics_of(record.get("metrics") or {})
    gate = record.get("gate") or {}
    out.update(metrics_of(gate.get("splits") or {}, "gate."))
    out.update(metrics_of(gate.get("ood") or {}, "gate.ood."))
    out.update(metrics_of({"threshold_db": gate.get("threshold_db")}, "gate."))
    out.update(metrics_of(record.get("overfitting") or {}, "overfitting."))
    best = record.get("best_epoch")  # one epoch, or one per model of an ensemble
    if isinstance(best, list):
        out.update({f"best_epoch.{i}": f for i, b in enumerate(best) if (f := number(b)) is not None})
    elif (f := number(best)) is not None:
        out["best_epoch"] = f
    return out


def row_metrics(row: dict) -> dict[str, float]:
    """One history row's numbers (stage and dataset names are text: left out)."""
    return metrics_of(row)


def data_fingerprint(record: dict) -> str:
    """One fingerprint of the run's data: the hash of its splits' fingerprints."""
    splits = (record.get("data") or {}).get("splits") or {}
    prints = {name: (s or {}).get("fingerprint") for name, s in sorted(splits.items())}
    return hashlib.sha1(json.dumps(prints, sort_keys=True).encode()).hexdigest()[:16]


def run_tags(record: dict) -> dict[str, str]:
    env = record.get("environment") or {}
    method, task = record.get("method") or {}, record.get("task") or {}
    tags = {
        "dermbench.run_id": record.get("run_id"),
        "dermbench.method": method.get("name"),
        "dermbench.plugin": method.get("plugin"),
        "dermbench.task": task.get("name"),
        "dermbench.protocol": record.get("protocol"),
        "dermbench.profile": record.get("profile"),
        "dermbench.seed": record.get("seed"),
        "dermbench.data_fingerprint": data_fingerprint(record),
        "dermbench.version": (env.get("packages") or {}).get("dermbench"),
        "dermbench.device": env.get("device"),
        "dermbench.synthetic_data": (record.get("data") or {}).get("synthetic"),
    }
    return {k: str(v) for k, v in tags.items() if v is not None}
