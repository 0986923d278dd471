"""The gate in front of a run's predictions: accept or refuse each image, and score what that buys.

``--gate autoencoder`` trains (or loads) the gate on the training split, chooses the threshold
(the paper's 25 dB, or ``--opt gate.accept_rate=R``: the PSNR that accepts a share R of the
*validation* images; test images never set it) and records, per split: coverage, the task's
metrics on the accepted images, and the risk-coverage curve and AURC of the PSNR as a confidence
score, beside the classifier's own (``metrics.<split>.selective.max_softmax``); per
out-of-distribution set: the rejection rate and the AUROC of PSNR for the test images against
that set. An image is also refused when it carries less detail than the flattest
``sharpness_reject_rate`` of validation images (``dermbench.gate.sharpness``); the record gives
each test's refusals apart. Each image's PSNR and sharpness are saved under
``gate/scores_<split>.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from dermbench.gate.sharpness import laplacian_variance, sharpness_floor
from dermbench.plugins.options import build_options, options_to_dict
from dermbench.stages.encoder_store import default_store

ACCEPTED_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")


def gate_options(cfg: Any) -> GateOptions:
    options = build_options(GateOptions, cfg.component_options("gate"), "gate")
    if not 0.0 <= options.accept_rate < 1.0:
        raise ConfigError(f"gate option accept_rate must be in [0, 1), got {options.accept_rate}")
    if not 0.0 <= options.sharpness_reject_rate < 1.0:
        raise ConfigError(
            f"gate option sharpness_reject_rate must be in [0, 1), got {options.sharpness_reject_rate}"
        )
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


@dataclass(frozen=True)
class GateScores:
    """One set of images as the gate sees it: each image's PSNR and sharpness, and the verdict."""

    psnr: np.ndarray
    sharpness: np.ndarray
    threshold_db: float
    sharpness_floor: float

    @property
    def accepted(self) -> np.ndarray:
        return (self.psnr > self.threshold_db) & (self.sharpness > self.sharpness_floor)

    def refused_by(self) -> dict[str, float | None]:
        if not len(self.psnr):
            return {"psnr": None, "sharpness": None}
        return {"psnr": float(np.mean(self.psnr <= self.threshold_db)),
                "sharpness": float(np.mean(self.sharpness <= self.sharpness_floor))}  # fmt: skip


def split_report(y: np.ndarray, probs: np.ndarray, scores: GateScores, classes: list[str]) -> dict:
    accepted = scores.accepted
    correct = probs.argmax(1) == y
    out: dict[str, Any] = {
        "n": int(len(y)), "coverage": float(accepted.mean()) if len(y) else None,
        "n_accepted": int(accepted.sum()), "refused_by": scores.refused_by(),
        "psnr_mean": float(np.mean(scores.psnr)) if len(y) else None,
        "selective": {"psnr": selective_summary(scores.psnr, correct)} if len(y) else None,
    }  # fmt: skip
    if accepted.any():
        report = classification_report(y[accepted], probs[accepted], classes)
        out["accepted"] = {k: report.get(k) for k in ACCEPTED_METRICS}
    else:
        out["accepted"] = None
    return out


def ood_report(test: GateScores, ood: GateScores, synthetic: bool) -> dict:
    labels = np.concatenate([np.ones(len(test.psnr)), np.zeros(len(ood.psnr))])
    both = np.concatenate([test.psnr, ood.psnr])
    auroc = float(roc_auc_score(labels, both)) if len(test.psnr) and len(ood.psnr) else None
    return {"n": int(len(ood.psnr)), "synthetic": synthetic, "rejection_rate": float(1.0 - np.mean(ood.accepted)),
            "refused_by": ood.refused_by(), "psnr_mean": float(np.mean(ood.psnr)),
            "auroc_psnr_test_vs_ood": auroc}  # fmt: skip


def _save_scores(run_dir: Path, name: str, frame: pd.DataFrame, scores: GateScores) -> str:
    rel = f"gate/scores_{name.replace(':', '_')}.csv"
    (run_dir / "gate").mkdir(exist_ok=True)
    pd.DataFrame(
        {"image_id": frame["image_id"].astype(str), "psnr": scores.psnr,
         "sharpness": scores.sharpness, "accepted": scores.accepted}
    ).to_csv(run_dir / rel, index=False)  # fmt: skip
    return rel


def _ood_images(name: str, path: str | None, test_images: torch.Tensor, cfg: Any, registries: Any,
                progress: bool) -> torch.Tensor:  # fmt: skip
    if path is None:
        return corrupt(test_images, name, cfg.seed)
    return load_ood_dataset(name, path, cfg, registries, progress)


def _ood_overlap(name: str, path: str, images: torch.Tensor, splits: dict, cfg: Any,
                 report: dict) -> dict[str, Any] | None:  # fmt: skip
    """An OOD set that holds images of the run's splits is not out of distribution: without
    ``--allow-overlap`` it is left unscored with the reason (the run's other results stand)."""
    from dermbench.data.leakage import check_overlap, overlap_counts

    frame = pd.DataFrame(
        {"image_id": [f"{name}-ood-{i}" for i in range(len(images))], "dataset": f"ood:{name}"}
    )
    counts = overlap_counts(frame, images.numpy(), f"ood:{name}", splits)
    try:
        found = check_overlap(f"--ood-data {name}={path}", len(images), counts, cfg.allow_overlap)
    except ConfigError as exc:
        return {"source": path, "refused": str(exc)}
    if found:
        report.setdefault("overlap", {})[name] = found
    return None


def _sharpness_entry(floor: float, options: GateOptions) -> dict[str, Any]:
    if not np.isfinite(floor):
        return {"sharpness_floor": None, "sharpness_source": "off"}
    return {"sharpness_floor": floor,
            "sharpness_source": f"validation quantile, refuse {options.sharpness_reject_rate}"}  # fmt: skip


def run_gate(cfg: Any, task: Any, data: Any, probs: dict[str, np.ndarray], registries: Any,
             device: torch.device, run_dir: Path, log: Any, progress: bool) -> dict[str, Any]:  # fmt: skip
    options = gate_options(cfg)
    splits = data.splits
    model, meta = fit_or_load_gate(
        splits["train"], splits["val"], cfg.image_size, cfg.resize, options,
        default_store(cfg.out), device, log, task.name,
    )  # fmt: skip
    psnr = {name: psnr_scores(model, s.images, device) for name, s in splits.items()}
    sharpness = {name: laplacian_variance(s.images) for name, s in splits.items()}
    threshold, source = choose_threshold(options, psnr["val"])
    floor = sharpness_floor(sharpness["val"], options.sharpness_reject_rate)
    report: dict[str, Any] = {
        "gate": cfg.gate, "key": meta.get("key"), "store": meta.get("store"),
        "trained_by_this_run": meta.get("trained_by_this_run"), "options": options_to_dict(options),
        "threshold_db": threshold, "threshold_source": source, **_sharpness_entry(floor, options),
        "splits": {}, "ood": {}, "scores": {},
    }  # fmt: skip
    split_scores = {name: GateScores(psnr[name], sharpness[name], threshold, floor) for name in splits}
    classes = list(task.classes)
    for name, split in splits.items():
        report["splits"][name] = split_report(split.y, probs[name], split_scores[name], classes)
        report["scores"][name] = _save_scores(run_dir, name, split.frame, split_scores[name])
    for name, path in parse_ood(dict(cfg.ood_data)).items():
        images = _ood_images(name, path, splits["test"].images, cfg, registries, progress)
        if path is not None and (refused := _ood_overlap(name, path, images, splits, cfg, report)):
            report["ood"][name] = refused
            continue
        ood = GateScores(psnr_scores(model, images, device), laplacian_variance(images), threshold, floor)
        report["ood"][name] = ood_report(split_scores["test"], ood, synthetic=path is None)
        report["ood"][name]["source"] = "corruption of the test images (synthetic)" if path is None else path
    return report
