"""Preparing a run's data: read each dataset, map labels into the task, decode once, split.

The result is a :class:`PreparedData`: one :class:`~dermbench.data.split_data.SplitData` per split
(train / val / test, and ``external:<name>`` for each ``--test-data``) plus the description of
the data that goes into the run record (datasets, dropped labels, skipped images, split
fingerprints and class counts).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.data.cache import default_cache_dir, load_images
from dermbench.data.chain import ChainSource, check_adapters, parse_chain, pixel_hashes, raw_ids
from dermbench.data.duplicates import (
    DuplicateRule,
    describe,
    merged_groups,
    near_duplicate_clusters,
    signatures,
)
from dermbench.data.leakage import check_overlap, overlap_counts
from dermbench.data.mapped import concatenate, take
from dermbench.data.records import DatasetRecords
from dermbench.data.split_data import SplitData, concat_splits, with_images
from dermbench.data.split_file import read_split_file
from dermbench.data.splits import check_splits, make_splits, split_fingerprint
from dermbench.data.tasking import apply_task
from dermbench.errors import ConfigError
from dermbench.evaluation.audit import SKIN_TONE_SCHEMES, ita_column
from dermbench.run.config import RunConfig
from dermbench.tasks import Task


@dataclass
class PreparedData:
    splits: dict[str, SplitData]
    info: dict[str, Any]
    synthetic: bool
    extra: dict[str, Any] = field(default_factory=dict)
    unlabelled: SplitData | None = None  # --pretrain-data images: no labels, no held-out lesion
    sources: list[SplitData] = field(default_factory=list)  # --chain datasets, in order, none held out


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``), else the free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_decoded_size(n_images: int, size: int, where: str, already: int = 0) -> int:
    """The bytes ``n_images`` decoded at ``size`` will take; an error before decoding if they cannot fit."""
    need = n_images * size * size * 3
    free = available_memory()
    if already + need > 0.8 * free:
        raise ConfigError(
            f"{where}: {n_images} images at {size} px need {(already + need) / 2**30:.1f} GiB decoded, but "
            f"{free / 2**30:.1f} GiB of memory is available: lower --image-size or use fewer images"
        )
    return need


def check_cache_space(n_images: int, size: int, where: str, cache_dir: Path) -> None:
    """An error before decoding when the cache's disk cannot take the mapped images: the decoded
    shards, the dataset's rows and its splits' rows, three times the decoded size at most."""
    need = 3 * n_images * size * size * 3
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        raise ConfigError(
            f"{where}: {n_images} images at {size} px need up to {need / 2**30:.1f} GiB in the image cache "
            f"{cache_dir}, which has {free / 2**30:.1f} GiB free: use --cache-dir on a larger disk"
        )


def cache_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


def mapped_source(
    name: str, path: str | None, cfg: RunConfig, task: Task, registries: Any, options_name: str = ""
) -> tuple[DatasetRecords, pd.DataFrame, dict[str, int]]:
    """A dataset's records and the rows the task maps (with ``y``), before any image is decoded;
    its options are ``--opt data.<options_name or name>.*``."""
    opts = cfg.component_options(f"data.{options_name or name}")
    if path is None:
        opts = {
            "label_source": task.synthetic_source,
            "priors": dict(task.synthetic_priors) or None,
            "n": cfg.synthetic_n,
            **opts,
        }
    records = registries.datasets.build(name, opts, path)
    frame, dropped = apply_task(records, task)
    return records, frame, dropped


def decode_rows(
    records: DatasetRecords, frame: pd.DataFrame, cfg: RunConfig, where: str, progress: bool
) -> tuple[pd.DataFrame, Any, list]:
    """The images of ``frame``'s rows through the decode-once cache, as a memory map of the cache
    (checked against the disk, and against memory for a resident run, first), and the rows that
    decoded; skipped images are listed when ``--skip-bad-images`` allows them. A resident run copies
    its splits' rows into the process (:func:`dermbench.data.mapped.take`), never the whole array."""
    if cfg.image_memory == "resident":
        check_decoded_size(len(frame), cfg.image_size, where)
    check_cache_space(len(frame), cfg.image_size, where, cache_dir_for(cfg))
    images, kept_rows, skipped = load_images(
        records, frame["row"].to_numpy(), cfg.image_size, cache_dir_for(cfg),
        skip_bad=cfg.skip_bad_images, progress=progress, resize=cfg.resize, memory="mapped",
    )  # fmt: skip
    return frame.set_index("row", drop=False).loc[list(kept_rows)].reset_index(drop=True), images, skipped


def _load_source(
    name: str,
    path: str | None,
    cfg: RunConfig,
    task: Task,
    registries: Any,
    progress: bool,
    split: bool = True,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any], bool]:
    """One dataset decoded; ``split``: it is split into train/val/test (its near-duplicates matter)."""
    records, frame, dropped = mapped_source(name, path, cfg, task, registries)
    frame = with_signatures(records, frame, cfg) if split else frame
    frame, images, skipped = decode_rows(
        records, frame, cfg, f"dataset {name} ({path or 'generated'})", progress
    )
    frame["dataset"] = name
    if any(g in SKIN_TONE_SCHEMES for g in cfg.groups):
        if "ita" in frame.columns:  # a generator's true tone, kept apart from the measured one
            frame = frame.rename(columns={"ita": "ita_true"})
        frame["ita"] = ita_column(np.asarray(images), _ita_key(records, cfg, len(frame)), cache_dir_for(cfg))
    info = {
        "name": name,
        "path": path,
        "n_records": len(records),
        "n_used": len(frame),
        "label_source": records.label_source,
        "dropped_unmapped": dropped,
        "skipped_images": skipped,
        "excluded": records.excluded,
        "synthetic": records.synthetic,
    }
    return frame, images, info, records.synthetic


def with_signatures(records: DatasetRecords, frame: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """``frame`` with each row's perceptual hash and thumbnail, when near-duplicates are looked for."""
    if cfg.near_duplicates == "off":
        return frame
    hashes, thumbs = signatures(records, frame["row"].to_numpy(), cache_dir_for(cfg))
    return frame.assign(phash=hashes, thumb=list(thumbs))


def with_duplicate_clusters(frame: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """The training frame with ``duplicate_cluster`` (row position of the cluster's first image)
    in place of the signatures."""
    if cfg.near_duplicates == "off":
        return frame
    thumbs = np.stack(frame["thumb"].to_list()) if len(frame) else np.zeros((0, 32, 32, 3), np.uint8)
    cluster = near_duplicate_clusters(frame["phash"].to_numpy(np.uint64), thumbs, DuplicateRule())
    return frame.drop(columns=["phash", "thumb"]).assign(duplicate_cluster=cluster)


def duplicates_report(cfg: RunConfig, frame: pd.DataFrame, idx: dict[str, np.ndarray]) -> dict | None:
    if cfg.near_duplicates == "off":
        return None
    split_of = np.full(len(frame), "", dtype=object)
    for name, pos in idx.items():
        split_of[pos] = name
    ids = frame["image_id"].astype(str).to_numpy()
    return describe(
        ids, frame["duplicate_cluster"].to_numpy(), split_of, cfg.near_duplicates, DuplicateRule()
    )


def _ita_key(records: DatasetRecords, cfg: RunConfig, n: int) -> str:
    key = f"{records.identity}|{cfg.image_size}|{n}"
    return key if cfg.resize == "bilinear" else f"{key}|{cfg.resize}"


def _load_unlabelled(
    name: str, path: str, cfg: RunConfig, registries: Any, held_out: pd.DataFrame, progress: bool
) -> tuple[SplitData, dict[str, Any]]:
    """Every image of a dataset, labels ignored, less any image or lesion of the held-out splits."""
    records = registries.datasets.build(name, cfg.component_options(f"data.{name}"), path)
    frame = records.frame.copy()
    frame["row"] = np.arange(len(frame), dtype=np.int64)
    same = held_out[held_out["dataset"] == name]
    leak = frame["image_id"].astype(str).isin(same["image_id"].astype(str).str.removeprefix(f"{name}:"))
    if "group" in frame.columns:
        leak |= frame["group"].astype(str).isin(same["group"].astype(str).str.removeprefix(f"{name}:"))
    frame = frame.loc[~leak.to_numpy()].reset_index(drop=True)
    if len(frame) == 0:
        raise ConfigError(
            f"--pretrain-data {name}={path}: no image left after removing validation and test lesions"
        )
    frame, images, skipped = decode_rows(records, frame, cfg, f"--pretrain-data {name} ({path})", progress)
    frame["image_id"] = f"{name}:" + frame["image_id"].astype(str)
    frame["dataset"] = name
    held = take(images, np.arange(len(frame)), cfg.image_memory)
    split = with_images(f"unlabelled:{name}", held, np.full(len(frame), -1), frame)
    info = {"name": name, "path": path, "role": "unlabelled-pretraining", "n_records": len(records),
            "n_used": len(frame), "removed_held_out": int(leak.sum()), "skipped_images": skipped}  # fmt: skip
    return split, info


def load_unlabelled(
    cfg: RunConfig, registries: Any, splits: dict[str, SplitData], infos: list, progress: bool
) -> Any:
    """The ``--pretrain-data`` images as one split (None when none is named); never a held-out lesion."""
    if not cfg.pretrain_data:
        return None
    held_out = pd.concat([s.frame for n, s in splits.items() if n != "train"], ignore_index=True)
    parts = []
    for name, path in cfg.pretrain_data.items():
        split, info = _load_unlabelled(name, path, cfg, registries, held_out, progress)
        parts.append(split)
        infos.append(info)
    return parts[0] if len(parts) == 1 else concat_splits("unlabelled", *parts)


def prepare_data(cfg: RunConfig, task: Task, registries: Any, progress: bool = True) -> PreparedData:
    sources: dict[str, str | None] = dict(cfg.data) if cfg.data else {registries.default_of("datasets"): None}
    frames, arrays, infos, synthetic = [], [], [], False
    for name, path in sources.items():
        frame, images, info, synth = _load_source(name, path, cfg, task, registries, progress)
        info["role"] = "train"
        frames.append(frame)
        arrays.append(images)
        infos.append(info)
        synthetic |= synth
    frame = with_duplicate_clusters(combine_sources(frames, task, [i["path"] for i in infos]), cfg)
    images = concatenate(arrays)
    idx = run_splits(cfg, frame)
    duplicates = duplicates_report(cfg, frame, idx)
    check_splits(frame, idx, list(task.classes), cfg.allow_empty_classes)
    official = "split" in frame.columns and frame["split"].notna().all()
    splits = {name: _split(name, frame, images, pos, cfg.image_memory) for name, pos in idx.items()}
    overlap: dict[str, dict] = {}
    for name, path in cfg.test_data.items():
        ext_frame, ext_images, info, synth = _load_source(
            name, path, cfg, task, registries, progress, split=False
        )
        info["role"] = "external-test"
        infos.append(info)
        synthetic |= synth
        key = f"external:{name}"
        counts = overlap_counts(ext_frame, np.asarray(ext_images), name, splits)
        if check_overlap(f"--test-data {name}={path}", len(ext_frame), counts, cfg.allow_overlap):
            overlap[key] = counts
        splits[key] = _split(key, ext_frame, ext_images, np.arange(len(ext_frame)), cfg.image_memory)
    unlabelled = load_unlabelled(cfg, registries, splits, infos, progress)
    sources = load_chain(cfg, task, registries, splits, infos, progress)
    info = {
        "synthetic": synthetic,
        "image_size": cfg.image_size,
        "datasets": infos,
        "split_protocol": _protocol(cfg, official),
        "splits": {name: describe_split(s, task) for name, s in splits.items()},
    }
    if duplicates is not None:
        info["near_duplicates"] = duplicates
    if overlap:
        info["overlap"] = overlap
    return PreparedData(splits=splits, info=info, synthetic=synthetic, unlabelled=unlabelled, sources=sources)


def load_chain(
    cfg: RunConfig, task: Task, registries: Any, splits: dict[str, SplitData], infos: list, progress: bool
) -> list[SplitData]:
    """The ``--chain`` datasets in order, labels mapped into the task, held-out images removed."""
    chain = parse_chain(cfg.chain, dict(cfg.data))
    if not chain:
        return []
    check_adapters(chain, registries, dict(cfg.data))
    held = [s for n, s in splits.items() if n != "train"]
    held_frame = pd.concat([s.frame for s in held], ignore_index=True)
    held_pixels = {h for s in held for h in pixel_hashes(s.images.numpy())}
    out = []
    for position, src in enumerate(chain, start=1):
        split, info = _load_chain_source(
            src, position, cfg, task, registries, held_frame, held_pixels, progress
        )
        out.append(split)
        infos.append(info)
    return out


def _load_chain_source(
    src: ChainSource, position: int, cfg: RunConfig, task: Task, registries: Any,
    held_frame: pd.DataFrame, held_pixels: set[str], progress: bool,
) -> tuple[SplitData, dict[str, Any]]:  # fmt: skip
    records, frame, dropped = mapped_source(src.adapter, src.path, cfg, task, registries, src.name)
    if len(frame) == 0:
        raise ConfigError(
            f"--chain {src.spec!r}: no image of dataset {src.name!r} maps into task {task.name!r} "
            f"(its labels, {records.label_source}: {', '.join(sorted(dropped)) or 'none'})"
        )
    by_id = raw_ids(frame).isin(set(raw_ids(held_frame))).to_numpy()
    frame = frame.loc[~by_id].reset_index(drop=True)
    frame, images, skipped = decode_rows(records, frame, cfg, f"--chain {src.spec!r}", progress)
    by_pixels = np.array([h in held_pixels for h in pixel_hashes(images)], dtype=bool)
    keep = np.flatnonzero(~by_pixels)
    if len(keep) == 0:
        raise ConfigError(
            f"--chain {src.spec!r}: every mapped image is a validation or test image of the target"
        )
    frame["image_id"] = f"{src.name}:" + frame["image_id"].astype(str)
    frame["group"] = f"{src.name}:" + frame["group"].astype(str)
    frame["dataset"] = src.name
    split = _split(f"source:{src.name}", frame, images, keep, cfg.image_memory)
    info = {
        "name": src.name, "adapter": src.adapter, "path": src.path, "role": "chain-source",
        "position": position, "n_records": len(records), "n_used": len(keep),
        "label_source": records.label_source, "dropped_unmapped": dropped,
        "removed_held_out": {"by_id": int(by_id.sum()), "by_pixels": int(by_pixels.sum())},
        "class_counts": describe_split(split, task)["class_counts"],
        "skipped_images": skipped, "synthetic": records.synthetic,
    }  # fmt: skip
    return split, info


def combine_sources(frames: list[pd.DataFrame], task: Task, paths: list) -> pd.DataFrame:
    """The training sources as one frame; with several, ids and groups are prefixed by the dataset."""
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:  # ids and groups from different sources must not collide
        frame["image_id"] = frame["dataset"] + ":" + frame["image_id"].astype(str)
        frame["group"] = frame["dataset"] + ":" + frame["group"].astype(str)
    if len(frame) == 0:
        named = ", ".join(str(p) for p in paths if p) or "the generated sample"
        raise ConfigError(
            f"no images left for task {task.name!r} after mapping labels ({named}): check --data and the task"
        )
    return frame


def split_frame(cfg: RunConfig, task: Task, registries: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The run's training data and its train/val/test positions, from the records alone (no decoding):
    what a run with ``cfg`` splits into, when no image fails to decode."""
    sources: dict[str, str | None] = dict(cfg.data) if cfg.data else {registries.default_of("datasets"): None}
    frames = []
    for name, path in sources.items():
        records, frame, _ = mapped_source(name, path, cfg, task, registries)
        frames.append(with_signatures(records, frame, cfg).assign(dataset=name))
    frame = with_duplicate_clusters(combine_sources(frames, task, list(sources.values())), cfg)
    return frame, run_splits(cfg, frame)


def run_splits(cfg: RunConfig, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ``--split-file`` assignment when one is named, else the seeded lesion-grouped split at
    ``split_fractions``, of at most ``max_per_class`` images of each class (rows left out of the
    cap are in no split)."""
    if cfg.split_file:
        return read_split_file(cfg.split_file, frame)
    if cfg.near_duplicates == "group":  # a near-duplicate cluster joins its images' lesion groups
        frame = frame.assign(
            group=merged_groups(frame["group"].to_numpy(), frame["duplicate_cluster"].to_numpy())
        )
    keep = capped_rows(frame, cfg.max_per_class, cfg.split_seed)
    idx = make_splits(
        frame.iloc[keep].reset_index(drop=True), seed=cfg.split_seed, fractions=cfg.split_fractions
    )
    return {name: keep[pos] for name, pos in idx.items()}


def capped_rows(frame: pd.DataFrame, cap: int, seed: int) -> np.ndarray:
    """Positions of at most ``cap`` rows per class (0: every row), drawn by whole lesion groups
    from ``seed`` so that a lesion is kept or left out entirely."""
    if cap <= 0:
        return np.arange(len(frame), dtype=np.int64)
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for _, rows in frame.groupby("y", sort=True).indices.items():
        groups = frame["group"].astype(str).to_numpy()[rows]
        order = rng.permutation(np.unique(groups))
        taken, n = [], 0
        for g in order:
            members = rows[groups == g]
            if n + len(members) > cap and n > 0:
                continue
            taken.append(members)
            n += len(members)
        keep.append(np.concatenate(taken))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def _protocol(cfg: RunConfig, official: bool) -> str:
    if cfg.split_file:
        return f"split file {cfg.split_file}"
    if official:
        return "official"
    parts = "/".join(f"{100 * f:g}" for f in cfg.split_fractions)
    cap = f", at most {cfg.max_per_class} images a class" if cfg.max_per_class else ""
    dup = ", near-duplicate photographs kept together" if cfg.near_duplicates == "group" else ""
    return f"lesion-grouped stratified {parts}{cap}{dup}, split seed {cfg.split_seed}"


def describe_split(s: SplitData, task: Task) -> dict[str, Any]:
    counts = np.bincount(s.y, minlength=task.num_classes).tolist()
    return {
        "n": len(s),
        "fingerprint": split_fingerprint(s.frame, np.arange(len(s.frame))),
        "class_counts": dict(zip(task.classes, counts, strict=True)),
    }


def _split(name: str, frame: pd.DataFrame, images: np.ndarray, pos: np.ndarray, memory: str) -> SplitData:
    """The rows ``pos`` of ``frame`` and ``images`` as a split, its images held as ``memory`` says."""
    sub = frame.iloc[pos].reset_index(drop=True)
    return with_images(name, take(images, pos, memory), sub["y"].to_numpy().astype(np.int64), sub)
