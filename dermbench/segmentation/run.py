"""One segmentation run: masks (or synthetic composites) split as classification is split, a model
trained on train, IoU / Dice / boundary F with intervals on val and test, a record on disk.

The record (``record.json``, schema ``dermbench.segmentation/1``) has what a classification record
has where it applies: the resolved settings, the environment, the data and each split's
fingerprint, the history, the metrics, and per-image scores of val and test in
``predictions/<split>.csv``. ``dermbench show`` prints it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.data.splits import make_splits, split_fingerprint
from dermbench.errors import ConfigError, DataError
from dermbench.plugins.contract import SegmentContext
from dermbench.segmentation.metrics import per_image_scores, segmentation_report

SCHEMA = "dermbench.segmentation/1"
SPLIT_UNIT = {"composites": "background photograph", "ham10000": "lesion (lesion_id)"}  # else the image
CHECKPOINT = "checkpoints/last.pt"  # the segmenter's state after its last finished epoch


@dataclass(frozen=True)
class SegmentationConfig:
    method: str = ""  # a registered segmenter; empty: the default one
    masks: str = ""  # "isic2018_task1=PATH" | "ham10000=IMAGES_PATH,MASKS_PATH" | "" (composites)
    composites: int = 1000  # without masks: this many synthetic composites
    backgrounds: str = ""  # HAM10000 folder the composites' skin is cut from
    image_size: int = 64
    epochs: int | None = None  # None: the segmenter's own (U-Net 10, Mask R-CNN 5 as paper 002)
    batch_size: int = 16
    lr: float | None = None
    init: str = "random"
    seed: int = 0
    split_seed: int = 0
    n_boot: int = 1000
    out: str = "runs"
    save_model: str = ""  # also write the trained weights here: {"model", "kind", "size"}
    options: tuple[tuple[str, str], ...] = ()  # the segmenter's options, --opt NAME=VALUE


def mask_sources(cfg: SegmentationConfig) -> tuple[str, list[Path]]:
    """``--masks KIND=PATH``'s kind and folders, each checked to be a folder."""
    kind, _, path = cfg.masks.partition("=")
    if kind == "isic2018_task1" and path:
        folders = [path]
    elif kind == "ham10000" and "," in path:
        folders = path.split(",", 1)
    else:
        raise ConfigError(f"--masks {cfg.masks!r}: expected isic2018_task1=PATH or ham10000=IMAGES,MASKS")
    for folder in folders:
        if not Path(folder).is_dir():
            raise DataError(f"--masks {cfg.masks}: {folder} is not a folder")
    return kind, [Path(f) for f in folders]


def background_files(cfg: SegmentationConfig) -> list[Path]:
    """The photographs ``--backgrounds`` gives the composites' skin from (the first 400)."""
    folder = Path(cfg.backgrounds) / "images"
    files = sorted(folder.glob("*.jpg"))[:400]
    if not files:
        raise DataError(f"{folder}: no JPEG photographs to cut the composites' skin from (--backgrounds)")
    return files


def check_sources(cfg: SegmentationConfig) -> None:
    """The run's images can be found: checked before any folder is made."""
    if cfg.masks:
        mask_sources(cfg)
    elif cfg.backgrounds:
        background_files(cfg)


def load_data(cfg: SegmentationConfig) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
    """The images, masks and a frame (image_id, group, y) of the configured source."""
    from dermbench.segmentation import masks as M

    if cfg.masks:
        kind, folders = mask_sources(cfg)
        path = cfg.masks.partition("=")[2]
        items = M.isic2018_task1(folders[0]) if kind == "isic2018_task1" else M.ham10000_masks(*folders)
        images, masks = M.load_pairs(items, cfg.image_size)
        ids = [it.image_id for it in items]
        groups = [M.group_of(it) for it in items]
        info = {
            "source": kind,
            "path": path,
            "n": len(items),
            "synthetic": False,
            "n_groups": len(set(groups)),
        }
    else:
        images, masks, ids, groups, info = _composites(cfg)
    y = masks.reshape(len(masks), -1).any(axis=1).astype(int)
    return pd.DataFrame({"image_id": ids, "group": groups, "y": y}), images, masks, info


def _composites(
    cfg: SegmentationConfig,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict[str, Any]]:
    """Composites grouped by the photograph their skin was cut from, so that no photograph's skin
    is in two splits."""
    from PIL import Image

    from dermbench.segmentation.composites import make_composites

    files = background_files(cfg)
    folder = files[0].parent
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    images, masks, meta = make_composites(
        photos, cfg.composites, cfg.image_size, cfg.seed, [f.stem for f in files]
    )
    ids = [f"composite_{i:05d}" for i in range(cfg.composites)]
    info = {
        "source": "composites",
        "path": str(folder),
        **{k: v for k, v in meta.items() if k != "backgrounds"},
    }
    return images, masks, ids, [str(b) for b in meta["backgrounds"]], info


def build_segmenter(cfg: SegmentationConfig, registries: Any, checkpoint: Path) -> tuple[Any, SegmentContext]:
    """The registered segmenter ``cfg.method`` with its ``--opt NAME=VALUE`` options, and its context."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = SegmentContext(
        cfg.image_size, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.init, device, str(checkpoint)
    )
    return registries.segmenters.build(cfg.method, dict(cfg.options), ctx), ctx


def _fit_predict(
    cfg: SegmentationConfig, images, masks, splits, registries, checkpoint: Path
) -> tuple[dict, list, dict, Any]:
    """Train on the training split, predict every other; the segmenter's resolved settings."""
    segmenter, ctx = build_segmenter(cfg, registries, checkpoint)
    tr = splits["train"]
    history = segmenter.fit(images[tr], masks[tr])
    preds = {s: segmenter.predict(images[idx]) for s, idx in splits.items() if s != "train"}
    return preds, history, {"device": ctx.device, **segmenter.resolved}, segmenter.model


def run_dir_of(cfg: SegmentationConfig) -> Path:
    """The run's folder: ``<out>/segmentation/<method>/<method>-s<seed>-<hash of the settings>``."""
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.out) / "segmentation" / cfg.method / f"{cfg.method}-s{cfg.seed}-{key}"


def prepare_run_dir(cfg: SegmentationConfig, resume: bool, force: bool) -> Path:
    """The run's folder, named by its settings: a finished run is not redone, a killed one resumes
    from its last epoch with ``resume``; ``force`` starts again."""
    run_dir = run_dir_of(cfg)
    ckpt = run_dir / CHECKPOINT
    if force:
        ckpt.unlink(missing_ok=True)
    elif (run_dir / "record.json").is_file():
        raise ConfigError(f"{run_dir}: this run is complete (--force runs it again)")
    elif ckpt.is_file() and not resume:
        raise ConfigError(
            f"{run_dir}: a killed run left its checkpoint: --resume continues it, --force starts again"
        )
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_segmentation(
    cfg: SegmentationConfig, registries: Any = None, resume: bool = False, force: bool = False
) -> tuple[dict[str, Any], Path]:
    """Split, train (checkpointed every epoch), score and write the record; returns it and its folder."""
    from dermbench.plugins import load_plugins

    registries = load_plugins().registries if registries is None else registries
    cfg = replace(cfg, method=cfg.method or registries.default_of("segmenters"))
    registries.segmenters.get(cfg.method)  # an unknown name is an error listing the known ones
    check_sources(cfg)
    run_dir = prepare_run_dir(cfg, resume, force)
    start = time.time()
    frame, images, masks, info = load_data(cfg)
    splits = make_splits(frame, seed=cfg.split_seed)
    preds, history, resolved, model = _fit_predict(
        cfg, images, masks, splits, registries, run_dir / CHECKPOINT
    )
    if cfg.save_model:
        import torch

        Path(cfg.save_model).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "kind": cfg.method, "size": cfg.image_size}, cfg.save_model)
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    metrics = {}
    for name, pred in preds.items():
        truth, groups = masks[splits[name]], frame["group"].to_numpy()[splits[name]]
        report = segmentation_report(list(pred), list(truth), n_boot=cfg.n_boot, seed=cfg.seed, groups=groups)
        metrics[name] = {k: ({kk: vv for kk, vv in v.items() if kk != "per_image"} if isinstance(v, dict) else v)
                         for k, v in report.items()}  # fmt: skip
        scores = per_image_scores(list(pred), list(truth))
        pd.DataFrame({"image_id": frame["image_id"].iloc[splits[name]].to_numpy(), **scores}).to_csv(
            run_dir / "predictions" / f"{name}.csv", index=False
        )
    record = _record(cfg, info, frame, splits, history, metrics, resolved, time.time() - start)
    tmp = run_dir / "record.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(run_dir / "record.json")
    return record, run_dir


def _record(cfg, info, frame, splits, history, metrics, resolved, seconds) -> dict[str, Any]:
    from dermbench.run.record import environment
    from dermbench.stages.host_heap import bound_host_heap

    return {
        "schema": SCHEMA,
        "kind": "segmentation",
        "status": "complete",
        "config": asdict(cfg),
        "resolved": resolved,
        "environment": {**environment(resolved["device"], {}), "host_heap": bound_host_heap()},
        "data": {
            **info,
            "split_protocol": f"seeded 70/15/15, grouped by {SPLIT_UNIT.get(info['source'], 'image')}, "
            f"stratified by empty / non-empty mask, split seed {cfg.split_seed}",
            "intervals": f"95% percentile bootstrap, {cfg.n_boot} draws of whole "
            f"{SPLIT_UNIT.get(info['source'], 'image')}s",
            "splits": {
                s: {"n": len(idx), "fingerprint": split_fingerprint(frame, idx)} for s, idx in splits.items()
            },
        },
        "history": history,
        "metrics": metrics,
        "seconds": round(seconds, 1),
    }


def verify_segmentation(run_dir: Path) -> list[str] | None:
    """None unless ``run_dir`` holds a segmentation record; then every reason it may not be ranked:
    not complete, a split's per-image scores missing, or a mean or count they do not reproduce."""
    path = Path(run_dir) / "record.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        return None
    if record.get("status") != "complete":
        return [f"status is {record.get('status')!r}, not complete"]
    problems = []
    for split, metrics in record["metrics"].items():
        csv = Path(run_dir) / "predictions" / f"{split}.csv"
        if not csv.is_file():
            problems.append(f"{csv}: missing: the {split} metrics cannot be recomputed")
            continue
        scores = pd.read_csv(csv)
        if len(scores) != metrics["n"] or len(scores) != record["data"]["splits"][split]["n"]:
            problems.append(f"{csv}: {len(scores)} images, the record says {metrics['n']}")
        for name in ("iou", "dice", "boundary_f"):
            if not np.isclose(scores[name].mean(), metrics[name]["mean"], atol=1e-9):
                problems.append(
                    f"{split} {name}: the record says {metrics[name]['mean']}, its scores give {scores[name].mean()}"
                )
    return problems


def format_segmentation(record: dict[str, Any]) -> str:
    """``dermbench show`` for a segmentation record."""
    data, cfg = record["data"], record["config"]
    synthetic = "  (SYNTHETIC composites: not a result on real lesion masks)" if data["synthetic"] else ""
    lines = [
        f"segmentation {cfg['method']}  seed {cfg['seed']}  {cfg['image_size']} px  {record['resolved'].get('epochs')} epochs{synthetic}",
        f"data {data['source']} ({data['n']} images)  {data['split_protocol']}",
        "",
        f"{'metric':11s} " + "  ".join(f"{s:>24s}" for s in record["metrics"]),
    ]
    for name in ("iou", "dice", "boundary_f"):
        cells = []
        for m in record["metrics"].values():
            ci = m[name].get("ci95") or {}
            cells.append(
                f"{m[name]['mean']:.3f} [{ci.get('low', float('nan')):.3f}, {ci.get('high', float('nan')):.3f}]"
            )
        lines.append(f"{name:11s} " + "  ".join(f"{c:>24s}" for c in cells))
    return "\n".join(lines)
