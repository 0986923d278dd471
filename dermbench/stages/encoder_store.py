"""The store of pretrained encoders: one folder per encoder, named by the hash of what made it.

A pretraining stage computes a key from everything that determines its result (the pretraining
images' fingerprint, the encoder, the image size, every option, the epochs and the seed) and
looks in ``<store>/<kind>/<key>/``. A finished encoder there is loaded, not trained again, so
every classification run and seed that asks for the same encoder shares one. While an encoder
is being made its folder holds ``last.pt`` after every epoch (a killed pretraining resumes from
it) and a lock file stops a second process from training the same encoder at the same time.

Folder layout: ``encoder.pt`` (the encoder's state dict), ``model.pt`` (the whole pretrained
model, e.g. the VAE with its decoder), ``meta.json`` (the key's inputs, the image ids used, the
final losses, versions), ``history.json`` and the plots the stage draws.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermbench.errors import ConfigError

ENCODER = "encoder.pt"
FULL_MODEL = "model.pt"
META = "meta.json"
HISTORY = "history.json"
LOCK = ".lock"


def default_store(out: str | Path) -> Path:
    """``<results folder>/pretrained``: beside the runs that use it."""
    return Path(out) / "pretrained"


def images_fingerprint(images: torch.Tensor, ids: list[str]) -> str:
    """A hash of the decoded pixels and the image ids, in order: the same images give the same key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([str(i) for i in ids]).encode())
    h.update(np.ascontiguousarray(images.numpy()).data)
    return h.hexdigest()


def encoder_key(inputs: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(inputs), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encoder_dir(store: Path, kind: str, key: str) -> Path:
    return Path(store) / kind / key


def is_complete(folder: Path) -> bool:
    return (folder / ENCODER).is_file() and (folder / META).is_file()


def require_stored(store: Path, kind: str, key: str) -> Path:
    """The folder of a finished encoder named by the user; an error listing what is stored if absent."""
    folder = encoder_dir(store, kind, key)
    if is_complete(folder):
        return folder
    root = Path(store) / kind
    known = sorted(p.name for p in root.iterdir() if is_complete(p)) if root.is_dir() else []
    listing = f"stored: {', '.join(known)}" if known else "nothing is stored there yet"
    raise ConfigError(f"no stored {kind} encoder {key!r} under {root} ({listing}); pretrain it first")


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (made if absent); a second process waits for the first."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"stored encoder {folder}: cannot read {META} ({exc})") from None


def load_encoder_into(model: torch.nn.Module, folder: Path) -> None:
    """Copy a stored encoder into ``model``: every weight but the classifier's must be found and fit."""
    from dermbench.models.build import load_backbone
    from dermbench.models.weights_io import load_tensors

    state = load_tensors(folder / ENCODER, "stored encoder")
    load_backbone(model, state, f"stored encoder {folder}: does not fit model {type(model).__name__}")
