"""The gate in front of a run's predictions: accept or refuse each image, and score what that buys.

``--gate autoencoder`` trains (or loads) the gate on the training split, chooses the threshold
(the paper's 25 dB, or ``--opt gate.accept_rate=R``: the PSNR that accepts a share R of the
*validation* images; test images never set it) and records, per split: coverage, the task's
metrics on the accepted images, and the risk-coverage curve and AURC of the PSNR as a confidence
score, beside the classifier's own (``metrics.<split>.selective.max_softmax``); per
out-of-distribution set: the rejection rate and the AUROC of PSNR for the test images against
that set. Each image's PSNR is saved under ``gate/scores_<split>.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from dermbench.errors import ConfigError
from dermbench.evaluation.metrics import classification_report
from dermbench.evaluation.selective import selective_summary
from dermbench.gate.autoencoder import GateOptions
from dermbench.gate.fit import fit_or_load_gate, psnr_scores
from dermbench.gate.ood import corrupt, load_ood_dataset, parse_ood
from dermbench.plugins.options import build_options, options_to_dict
from dermbench.stages.encoder_store import default_store

ACCEPTED_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")


def gate_options(cfg: Any) -> GateOptions:
    options = build_options(GateOptions, cfg.component_options("gate"), "gate")
    if not 0.0 <= options.accept_rate < 1.0:
        raise ConfigError(f"gate option accept_rate must be in [0, 1), got {options.accept_rate}")
    return options


def choose_threshold(options: GateOptions, val_psnr: np.ndarray) -> tuple[float, str]:
    """The paper's fixed threshold, or the validation quantile that accepts ``accept_rate``."""
    if options.accept_rate <= 0:
        return float(options.threshold_db), "fixed"
    if len(val_psnr) == 0:
        raise ConfigError("gate option accept_rate needs validation images to set the threshold on")
    return float(
        np.quantile(val_psnr, 1.0 - options.accept_rate)
    ), f"validation quantile, accept {options.accept_rate}"


def split_report(
    y: np.ndarray, probs: np.ndarray, scores: np.ndarray, threshold: float, classes: list[str]
) -> dict:
    accepted = scores > threshold
    correct = probs.argmax(1) == y
    out: dict[str, Any] = {
        "n": int(len(y)), "coverage": float(accepted.mean()) if len(y) else None,
        "n_accepted": int(accepted.sum()), "psnr_mean": float(np.mean(scores)) if len(y) else None,
        "selective": {"psnr": selective_summary(scores, correct)} if len(y) else None,
    }  # fmt: skip
    if accepted.any():
        report = classification_report(y[accepted], probs[accepted], classes)
        out["accepted"] = {k: report.get(k) for k in ACCEPTED_METRICS}
    else:
        out["accepted"] = None
    return out


def ood_report(test_scores: np.ndarray, ood_scores: np.ndarray, threshold: float, synthetic: bool) -> dict:
    labels = np.concatenate([np.ones(len(test_scores)), np.zeros(len(ood_scores))])
    both = np.concatenate([test_scores, ood_scores])
    auroc = float(roc_auc_score(labels, both)) if len(test_scores) and len(ood_scores) else None
    return {"n": int(len(ood_scores)), "synthetic": synthetic, "rejection_rate": float(np.mean(ood_scores <= threshold)),
            "psnr_mean": float(np.mean(ood_scores)), "auroc_psnr_test_vs_ood": auroc}  # fmt: skip


def _save_scores(run_dir: Path, name: str, frame: pd.DataFrame, scores: np.ndarray, threshold: float) -> str:
    rel = f"gate/scores_{name.replace(':', '_')}.csv"
    (run_dir / "gate").mkdir(exist_ok=True)
    pd.DataFrame(
        {"image_id": frame["image_id"].astype(str), "psnr": scores, "accepted": scores > threshold}
    ).to_csv(run_dir / rel, index=False)
    return rel


def run_gate(cfg: Any, task: Any, data: Any, probs: dict[str, np.ndarray], registries: Any,
             device: torch.device, run_dir: Path, log: Any, progress: bool) -> dict[str, Any]:  # fmt: skip
    options = gate_options(cfg)
    splits = data.splits
    model, meta = fit_or_load_gate(
        splits["train"],
        splits["val"],
        cfg.image_size,
        cfg.resize,
        options,
        default_store(cfg.out),
        device,
        log,
        task.name,
    )
    scores = {name: psnr_scores(model, s.images, device) for name, s in splits.items()}
    threshold, source = choose_threshold(options, scores["val"])
    classes = list(task.classes)
    report: dict[str, Any] = {
        "gate": cfg.gate, "key": meta.get("key"), "store": meta.get("store"),
        "trained_by_this_run": meta.get("trained_by_this_run"), "options": options_to_dict(options),
        "threshold_db": threshold, "threshold_source": source, "splits": {}, "ood": {}, "scores": {},
    }  # fmt: skip
    for name, split in splits.items():
        report["splits"][name] = split_report(split.y, probs[name], scores[name], threshold, classes)
        report["scores"][name] = _save_scores(run_dir, name, split.frame, scores[name], threshold)
    for name, path in parse_ood(dict(cfg.ood_data)).items():
        images = (
            corrupt(splits["test"].images, name, cfg.seed)
            if path is None
            else load_ood_dataset(name, path, cfg, registries, progress)
        )
        ood = psnr_scores(model, images, device)
        report["ood"][name] = ood_report(scores["test"], ood, threshold, synthetic=path is None)
        report["ood"][name]["source"] = "corruption of the test images (synthetic)" if path is None else path
    return report
