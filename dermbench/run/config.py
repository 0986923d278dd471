"""The resolved configuration of one run.

Precedence, lowest first: the harness defaults below < the profile (``smoke``/``quick`` from the
harness, ``uniform`` from the task file, ``paper`` from the method) < the method's own settings for
that profile < a TOML config file < CLI flags. A value left unset at a level means "use the level
below", so the record shows exactly which value each setting ended with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.components import Method
from dermbench.data.cache import RESIZE_POLICIES
from dermbench.data.chain import parse_chain
from dermbench.data.duplicates import MODES as DUPLICATE_MODES
from dermbench.data.mapped import MODES as IMAGE_MEMORY_MODES
from dermbench.errors import ConfigError
from dermbench.gate import check_gate_settings
from dermbench.models.build import HEAD_INITS
from dermbench.plugins.options import build_options
from dermbench.predict.tta import VIEWS as TTA_VIEWS
from dermbench.run.identity import NON_IDENTITY, as_before, normalised
from dermbench.stages.augment import POLICIES as AUGMENT_POLICIES
from dermbench.stages.precision import PRECISIONS
from dermbench.stages.selection import MODES as SELECT_MODES
from dermbench.tasks import Task

PROFILES = ("smoke", "quick", "uniform", "paper")
MAX_IMAGE_SIZE = 1024  # px per side: 1024^2 x 3 bytes = 3 MiB per decoded image

# Harness profiles: what a CPU can do in seconds (smoke) or minutes (quick).
HARNESS_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "model": "resnet18",
        "init": "random",
        "image_size": 32,
        "epochs": 1,
        "batch_size": 32,
        "synthetic_n": 240,
    },
    "quick": {  # about a minute on 2 CPU cores with the synthetic sample
        "model": "resnet18",
        "init": "random",
        "image_size": 64,
        "epochs": 8,
        "batch_size": 32,
        "synthetic_n": 1500,
    },
}


@dataclass(frozen=True)
class RunConfig:
    task: str = ""  # always set by resolve_config
    task_file: str | None = None  # the task file of a task named by path (absolute; not identity)
    task_sha256: str | None = None  # that file's content hash (identity: an edited copy is another task)
    method: str = ""
    profile: str = "quick"
    data: Mapping[str, str] = field(default_factory=dict)  # adapter name -> path; empty = synthetic
    test_data: Mapping[str, str] = field(default_factory=dict)  # extra external test sets
    pretrain_data: Mapping[str, str] = field(default_factory=dict)  # unlabelled sets for pretraining
    chain: tuple[str, ...] = ()  # labelled source datasets, in order: "NAME=PATH" (dermbench.data.chain)
    gate: str = ""  # an image-quality gate in front of the predictions: "" (none) | autoencoder
    ood_data: Mapping[str, str] = field(
        default_factory=dict
    )  # the gate's OOD sets: NAME -> PATH ("": a corruption)
    seed: int = 0  # training seed
    split_seed: int = 0  # split seed, fixed across training seeds so methods share one split
    split_file: str | None = None  # a split file (dermbench splits export) used instead of the seed
    split_fractions: tuple[float, ...] = (0.7, 0.15, 0.15)  # train, val, test shares of the seeded split
    max_per_class: int = 0  # at most this many images of each class enter the split (0: all)
    near_duplicates: str = (
        "off"  # off | report | group: near-duplicate photographs (dermbench.data.duplicates)
    )
    model: str = "resnet18"
    init: str = "random"  # imagenet | random | PATH to weights
    head_init: str = (
        "fan_in"  # a new classifier over loaded weights: fan_in | model (models.build.reset_new_head)
    )
    image_size: int = 64
    epochs: int = 8
    batch_size: int = 32
    lr: float | None = None  # None: the method's optimizer default
    weight_decay: float | None = None
    early_stopping: int | None = None  # patience in epochs on the selection metric
    select: str = "last"  # checkpoint scored: last | val_macro_f1 | val_loss | val_accuracy | val_macro_auc
    augment: str = "flips"  # none | flips | standard | affine_brightness
    resize: str = "bilinear"  # how images are squashed to image_size: bilinear | nearest
    sampler: str = ""  # a registered sampler (e.g. balanced); empty: the method's, else shuffling
    synthetic_n: int = 1500
    ensemble: str = "none"  # none | cvK: K models from lesion-grouped K-fold CV of the training split
    tta: str = "none"  # none | flips | flips_rot90: test-time augmentation averaged per image
    precision: str = "auto"  # auto | fp32 | bf16 (dermbench.stages.precision)
    groups: tuple[str, ...] = ()  # subgroup audit columns, e.g. ("ita", "sex", "skin_type")
    skip_bad_images: bool = False
    allow_empty_classes: bool = False
    allow_overlap: bool = False  # score sets that hold images of the run's splits (flagged)
    options: Mapping[str, Any] = field(default_factory=dict)  # "loss.gamma" -> value
    device: str = "auto"
    out: str = "runs"
    cache_dir: str | None = None
    num_workers: int = 0
    image_memory: str = "mapped"  # mapped | resident: decoded images read through memory maps, or copied in

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = dict(self.data)
        d["test_data"] = dict(self.test_data)
        d["pretrain_data"] = dict(self.pretrain_data)
        d["options"] = dict(self.options)
        d["groups"] = list(self.groups)
        d["chain"] = list(self.chain)
        d["ood_data"] = dict(self.ood_data)
        d["split_fractions"] = list(self.split_fractions)
        return d

    def identity(self) -> dict[str, Any]:
        """The settings that make what the run computes, paths resolved (``dermbench.run.identity``:
        how it runs is left out, and settings added later at the value earlier runs had)."""
        d = self.to_dict()
        for k in NON_IDENTITY:
            d.pop(k, None)
        for key in ("data", "test_data", "pretrain_data"):
            d[key] = {k: str(Path(v).resolve()) for k, v in d[key].items()}
        d["chain"] = [_resolved_chain_item(item) for item in d["chain"]]
        d["ood_data"] = {k: str(Path(v).resolve()) if v else "" for k, v in d["ood_data"].items()}
        if d["split_file"] is not None:
            d["split_file"] = str(Path(d["split_file"]).resolve())
        return {k: v for k, v in normalised(d).items() if not as_before(k, v)}

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.task}-{self.method}-s{self.seed}-{self.config_hash()}"

    def component_options(self, prefix: str) -> dict[str, Any]:
        """Option overrides for one component slot, e.g. ``prefix="loss"``."""
        head = prefix + "."
        return {k[len(head) :]: v for k, v in self.options.items() if k.startswith(head)}


def _resolved_chain_item(item: str) -> str:
    head, sep, path = item.partition("=")
    return f"{head}={Path(path).resolve()}" if sep else head


FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p}: cannot be read ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p}: {exc}") from None
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {p}: unknown setting(s) {', '.join(unknown)}")
    if "options" in data:  # allow [options.loss] gamma = 2 (and [options.data.ham10000]) as "loss.gamma" = 2
        data["options"] = _flat_options(data["options"])
    return data


def _flat_options(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            flat.update(_flat_options(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def parse_assignments(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}``, refusing items without ``=``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: expected NAME=VALUE, got {item!r}")
        if key.strip() in out:
            raise ConfigError(
                f"{what}: {key.strip()!r} is given twice ({out[key.strip()]!r} and {value.strip()!r}); give it once"
            )
        out[key.strip()] = value.strip()
    return out


def profile_settings(profile: str, task: Task, method: Method) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    settings: dict[str, Any] = {}
    if profile in HARNESS_PROFILES:
        settings.update(HARNESS_PROFILES[profile])
    if profile in ("uniform", "paper"):
        settings.update(task.protocols.get("uniform", {}))
    if profile == "paper" and "paper" not in method.profiles:
        raise ConfigError(f"method {method.name!r} defines no 'paper' profile; use --profile uniform")
    settings.update(method.profiles.get(profile, {}))
    return settings


def resolve_config(
    task: Task,
    method: Method,
    file_settings: Mapping[str, Any] | None = None,
    cli_settings: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge the levels and type-check every value (strings from the CLI are parsed)."""
    file_settings = dict(file_settings or {})
    cli_settings = {k: v for k, v in (cli_settings or {}).items() if v is not None}
    profile = cli_settings.get("profile") or file_settings.get("profile") or RunConfig.profile
    merged: dict[str, Any] = {"task": task.name, "method": method.name, "profile": profile}
    merged.update(task_settings(task))
    merged.update(profile_settings(profile, task, method))
    for level, where in ((file_settings, "config file"), (cli_settings, "config")):
        for k, v in level.items():
            if k in ("options", "data", "test_data", "pretrain_data", "ood_data"):
                merged[k] = {**merged.get(k, {}), **dict(v)}
            else:
                merged[k] = v
        merged["task"], merged["method"] = task.name, method.name
        merged.update(task_settings(task))
        cfg = build_options(
            RunConfig, merged, where=where
        )  # a file's bad value fails even if the CLI overrides it
        validate(cfg)
    return cfg


def task_settings(task: Task) -> dict[str, Any]:
    """Where a task named by path comes from: its file and the file's content hash."""
    if not task.given_as_file:
        return {"task_file": None, "task_sha256": None}
    return {"task_file": task.source_file, "task_sha256": task.sha256}


def merge_settings(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top; ``options`` are merged key by key, not replaced."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = {**out.get(k, {}), **v} if k == "options" else v
    return out


def resolve_run(
    plugins: Any,
    task_name: str | None,
    method_name: str | None,
    file_settings: Mapping[str, Any] | None = None,
    cli_settings: Mapping[str, Any] | None = None,
) -> RunConfig:
    """A run's config from names: the task (a name or a .toml file) and method, or the defaults
    the plugins name, then :func:`resolve_config`."""
    from dermbench.tasks import resolve_task

    file_settings = dict(file_settings or {})
    reg = plugins.registries
    task = resolve_task(task_name or file_settings.get("task") or plugins.default("tasks"), reg.tasks)
    method = reg.methods.get(method_name or file_settings.get("method") or plugins.default("methods"))
    return resolve_config(task, method, file_settings, cli_settings)


# setting -> (lowest, highest) allowed, None for no bound; None values (the method's default) pass
RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, 2**32 - 1),
    "split_seed": (0, 2**32 - 1),
    "lr": (1e-12, 10.0),
    "weight_decay": (0.0, 10.0),
    "early_stopping": (1, 100_000),
    "max_per_class": (0, 100_000_000),
    "synthetic_n": (1, 1_000_000),
    "batch_size": (1, 65_536),
    "epochs": (1, 100_000),
    "num_workers": (0, 256),
}


def check_ranges(cfg: RunConfig) -> None:
    """Every numeric setting inside its range (a learning rate of 0 or 1e9 is a typo, not a run)."""
    for name, (low, high) in RANGES.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"between {low:,} and {high:,}" if high is not None else f">= {low:,}"
            raise ConfigError(f"{name} must be {span}, got {value!r}")


def validate(cfg: RunConfig) -> None:
    if not 16 <= cfg.image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size must be between 16 and {MAX_IMAGE_SIZE} px, got {cfg.image_size}")
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    for setting, value, allowed in (
        ("select", cfg.select, tuple(SELECT_MODES)),
        ("augment", cfg.augment, AUGMENT_POLICIES),
        ("tta", cfg.tta, tuple(TTA_VIEWS)),
        ("resize", cfg.resize, tuple(RESIZE_POLICIES)),
        ("near_duplicates", cfg.near_duplicates, DUPLICATE_MODES),
        ("image_memory", cfg.image_memory, IMAGE_MEMORY_MODES),
        ("precision", cfg.precision, PRECISIONS),
        ("head_init", cfg.head_init, HEAD_INITS),
    ):
        if value not in allowed:
            raise ConfigError(f"{setting} must be one of {', '.join(allowed)}, got {value!r}")
    parse_chain(cfg.chain, dict(cfg.data))
    check_gate_settings(cfg.gate, dict(cfg.ood_data))
    fr = cfg.split_fractions
    if len(fr) != 3 or any(f <= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(
            f"split_fractions must be three positive shares summing to 1 (train,val,test), got {list(fr)}"
        )
    if cfg.max_per_class < 0:
        raise ConfigError(f"max_per_class must be >= 0, got {cfg.max_per_class}")
    check_ranges(cfg)
    if not re.fullmatch(r"none|cv([2-9]|[1-9][0-9]+)", cfg.ensemble):
        raise ConfigError(f"--ensemble must be none or cvK with K >= 2 (e.g. cv3), got {cfg.ensemble!r}")
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?|mps", cfg.device):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    for key in cfg.options:
        if "." not in key:
            raise ConfigError(f"option {key!r}: expected SLOT.NAME, e.g. loss.gamma or optimizer.lr")
