"""``dermbench leaderboard verify DIR...``: is a submitted run folder what its record says?

Before a result may be ranked, each run folder is checked:

- the record is complete and has every field a leaderboard reads (schema ``dermbench.run/1``);
- the benchmark version and the method's plugin version are stated;
- every metric is recomputed from the saved predictions (the task's decision rule refit on the
  validation predictions, then every split scored by the same code as a run) and equals the
  recorded value;
- the split is the official one: the task, data and split seed of its config, split again from
  the dataset's own records, give the recorded train / validation / test fingerprints; the test
  predictions cover exactly the official test images, once each, with their true labels; no
  image or lesion of the training split is among them.

Each failure is one line naming the folder and the reason; a folder passes only with none.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.data.split_data import SplitData
from dermbench.data.splits import split_fingerprint
from dermbench.errors import ConfigError, DataError
from dermbench.leaderboard import claims
from dermbench.leaderboard.records import check_record
from dermbench.plugins.options import build_options
from dermbench.run.config import RunConfig
from dermbench.run.record import RECORD_NAME, find_records, read_record
from dermbench.segmentation.run import verify_segmentation
from dermbench.tasks import task_of

TOLERANCE = 1e-9


def record_folders(paths: list[Path]) -> list[Path]:
    """The run folders named, or found under the folders named."""
    out = []
    for p in paths:
        if (p / RECORD_NAME).is_file():
            out.append(p)
        elif p.is_dir():
            out += [r.parent for r in find_records(p)]
        else:
            raise DataError(f"{p}: not a run folder or a folder of runs")
    return out


def verify_run(run_dir: Path, plugins: Any, data: Mapping[str, str] | None = None) -> list[str]:
    """Every reason ``run_dir`` may not be ranked (empty: it may)."""
    problems = verify_segmentation(run_dir)
    if problems is not None:  # a segmentation record: checked against its per-image scores
        return problems
    try:
        record = check_record(read_record(run_dir), run_dir / RECORD_NAME)
    except DataError as exc:
        return [str(exc)]
    if record.get("status") != "complete":
        return [f"status is {record.get('status')!r}, not complete"]
    problems = list(_versions(record))
    outside = claims.outside_run_folder(record, run_dir)
    if outside:
        return [*problems, *outside]  # never read a file the run folder does not hold
    try:
        method = plugins.registries.methods.get(record["method"]["name"])
        cfg = _config(record, data)
        task = task_of(cfg, plugins.registries.tasks)
        preds = {s: _predictions(run_dir, record, s, task) for s in record.get("predictions") or {}}
    except (ConfigError, DataError) as exc:
        return [*problems, str(exc)]
    if list(task.classes) != list(record["task"]["classes"]):
        problems.append(
            f"task {task.name!r} has classes {list(task.classes)}, the record {record['task']['classes']}"
        )
    problems += _metrics(record, preds, task, method, cfg, plugins.registries)
    problems += _split(record, preds, task, cfg, plugins.registries)
    problems += claim_problems(record, run_dir, {s: p.frame for s, p in preds.items()}, list(task.classes))
    return problems


def claim_problems(record: dict, run_dir: Path, frames: dict, classes: list[str]) -> list[str]:
    """What the record claims beside its metrics (:mod:`dermbench.leaderboard.claims`)."""
    return [
        *claims.version_problems(record),
        *claims.split_size_problems(record, frames, classes),
        *claims.budget_problems(record),
        *claims.prediction_problems(record, run_dir),
    ]


def _versions(record: dict) -> Iterator[str]:
    if not (record.get("environment", {}).get("packages") or {}).get("dermbench"):
        yield "the benchmark version (environment.packages.dermbench) is not stated"
    method = record.get("method") or {}
    if not method.get("plugin_version") and method.get("plugin") != "dermbench.builtin":
        yield f"the version of plugin {method.get('plugin')!r} (method.plugin_version) is not stated"


def _config(record: dict, data: Mapping[str, str] | None) -> RunConfig:
    values = {k: v for k, v in record["config"].items() if k in RunConfig.__dataclass_fields__}
    if data:
        values["data"] = {name: data.get(name, path) for name, path in values.get("data", {}).items()}
    return build_options(RunConfig, values, where="record config")


def _predictions(run_dir: Path, record: dict, split: str, task: Any) -> SplitData:
    path = run_dir / record["predictions"][split]
    if not path.is_file():
        raise DataError(f"predictions of {split} ({path.name}) are missing")
    df = pd.read_csv(path, dtype={"image_id": str, "group": str}, keep_default_na=False)
    cols = ["image_id", "label", *[f"p_{c}" for c in task.classes]]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"predictions of {split} lack column(s) {', '.join(missing)}")
    if df["image_id"].duplicated().any():
        raise DataError(
            f"predictions of {split} list image {df['image_id'][df['image_id'].duplicated()].iloc[0]!r} twice"
        )
    y = pd.to_numeric(df["label"], errors="coerce").to_numpy()
    if np.isnan(y).any() or not np.isin(y, np.arange(task.num_classes)).all():
        raise DataError(f"predictions of {split}: a label is not a class index 0..{task.num_classes - 1}")
    return SplitData(split, images=None, y=y.astype(np.int64), frame=df)  # type: ignore[arg-type]


def probs_of(split: SplitData, task: Any) -> np.ndarray:
    """The saved probabilities, as the run held them (float32, which the CSV stores exactly)."""
    return split.frame[[f"p_{c}" for c in task.classes]].to_numpy(dtype=np.float64).astype(np.float32)


# metric sections dermbench added after records were first published: a record that predates one
# lacks it (nothing to compare), while every number the record does hold is still checked
NEWER_SECTIONS = ("selective", "chance")
DATA_FLAGS = {"overlaps_run_images"}
NEWER_FLAGS = {"no_better_than_chance": "chance"}  # flag code -> the section a record has it with


def _metrics(record: dict, preds: dict, task: Any, method: Any, cfg: RunConfig, registries: Any) -> list[str]:
    from dermbench.run.scoring import add_chance, fit_posthoc, score_split

    if "val" not in preds or "test" not in preds:
        return ["the validation and test predictions are needed to recompute the metrics"]
    steps = fit_posthoc(task, method, cfg, registries, preds["val"], probs_of(preds["val"], task))
    chance = _chance_setup(record, preds, task)
    problems = []
    for name, split in preds.items():
        again = score_split(split, probs_of(split, task), task, steps, [])
        recorded_split = record["metrics"].get(name) or {}
        if chance is not None:
            add_chance(again, split, probs_of(split, task), task, chance, flag=True)
        problems += _flag_problems(name, recorded_split, again)
        for keys, value in _numbers(again):
            if keys[0] not in recorded_split and keys[0] in NEWER_SECTIONS:
                continue  # a section added to the metrics after the record was made
            recorded = _get(recorded_split, keys)
            if not _same(recorded, value):
                where = ".".join((name, *keys))
                problems.append(
                    f"metric {where} is {recorded!r} in the record, {value!r} from the predictions"
                )
    return problems


def _chance_setup(record: dict, preds: dict, task: Any) -> tuple | None:
    """The chance rules as the record fitted them: the training class shares it states (checked
    against the official training split by :func:`_split`) and thresholds refit on validation."""
    from dermbench.evaluation.chance import RULES, baseline_threshold

    shares = ((record["metrics"].get("test") or {}).get("chance") or {}).get("class_shares")
    if not isinstance(shares, Mapping) or list(shares) != list(task.classes):
        return None
    vector = np.array([float(shares[c]) for c in task.classes])
    val_y = preds["val"].y
    thresholds = {
        r: baseline_threshold(
            r, vector, val_y, list(task.classes), task.positive_class, task.recall_constraint
        )
        for r in RULES
    }
    return vector, thresholds


def _flag_problems(split: str, recorded: dict, again: dict) -> list[str]:
    """A flag the predictions raise that the record lacks, or one it claims that they do not."""
    have = {f.get("code") for f in recorded.get("flags") or [] if isinstance(f, Mapping)}
    want = {f["code"] for f in again.get("flags") or []}
    want = {c for c in want if c not in NEWER_FLAGS or NEWER_FLAGS[c] in recorded}
    have -= DATA_FLAGS  # flags of the data, not of the predictions: checked against data.overlap
    out = [
        f"flag {split}.{c} is raised by the predictions but missing from the record"
        for c in sorted(want - have)
    ]
    out += [
        f"flag {split}.{c} is in the record but the predictions do not raise it" for c in sorted(have - want)
    ]
    return out


def _numbers(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """Every number in a metrics tree, with its key path (keys such as "0.80" hold dots)."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _numbers(v, (*path, str(k)))
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield path, float(tree)


def _get(tree: Any, keys: tuple[str, ...]) -> Any:
    for part in keys:
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _same(recorded: Any, value: float) -> bool:
    if recorded is None and math.isnan(value):
        return True  # the record stores an undefined value as null
    if isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return False
    if math.isnan(value) or math.isnan(recorded):
        return math.isnan(value) and math.isnan(recorded)
    return abs(float(recorded) - value) <= TOLERANCE * max(1.0, abs(value))


def _split(record: dict, preds: dict, task: Any, cfg: RunConfig, registries: Any) -> list[str]:
    from dermbench.data.prepare import split_frame

    if any(d.get("skipped_images") for d in record["data"]["datasets"]):
        return ["the run skipped unreadable images, so its split cannot be compared with the official one"]
    try:
        frame, idx = split_frame(cfg, task, registries)
    except (ConfigError, DataError) as exc:
        return [f"cannot rebuild the official split ({exc}); name the data with --data NAME=PATH"]
    splits = record["data"]["splits"]
    if (splits.get("val") or {}).get("out_of_fold"):  # a CV ensemble is scored on train + val
        idx = {**idx, "val": np.concatenate([idx["train"], idx["val"]])}
    official = {
        name: split_fingerprint(frame, idx[name]) for name in ("train", "val", "test") if name in splits
    }
    problems = [
        f"the {name} split differs from the official one (fingerprint {str(splits[name].get('fingerprint'))[:12]} "
        f"recorded, {fp[:12]} official)"
        for name, fp in official.items()
        if splits[name].get("fingerprint") != fp
    ]
    test = frame.iloc[idx["test"]]
    got = preds["test"].frame.set_index("image_id")
    test_ids = set(test["image_id"].astype(str))
    if set(got.index) != test_ids:
        missing, extra = test_ids - set(got.index), set(got.index) - test_ids
        problems.append(
            f"the test predictions miss {len(missing)} official test image(s) and add {len(extra)} other(s)"
        )
    else:
        labels = got.loc[test["image_id"].astype(str), "label"].to_numpy()
        if not np.array_equal(labels.astype(np.int64), test["y"].to_numpy()):
            problems.append("the test predictions' labels differ from the data's labels")
    train = frame.iloc[idx["train"]]
    problems += _chance_shares_problems(record, train, task_classes=list(record["task"]["classes"]))
    if set(train["image_id"].astype(str)) & set(got.index) or set(train["group"].astype(str)) & set(
        got["group"].astype(str) if "group" in got else []
    ):
        problems.append("an image or lesion of the training split is among the test predictions")
    return problems


def _chance_shares_problems(record: dict, train: pd.DataFrame, task_classes: list[str]) -> list[str]:
    """The chance rules' class shares must be the official training split's."""
    from dermbench.evaluation.chance import class_shares

    shares = ((record["metrics"].get("test") or {}).get("chance") or {}).get("class_shares")
    if shares is None:
        return []
    official = class_shares(train["y"].to_numpy(), len(task_classes))
    stated = [shares.get(c) if isinstance(shares, Mapping) else None for c in task_classes]
    if any(not isinstance(v, int | float) for v in stated) or not np.allclose(
        stated, official, atol=TOLERANCE
    ):
        return ["metrics.test.chance.class_shares differ from the official training split's class shares"]
    return []
