"""Decode-once image cache: every image is decoded and resized once per (dataset, size).

Decoding JPEGs dominates CPU training time, and every epoch, run, seed and method reads the same
images at the same size. The cache holds them as uint8 ``.npy`` shards of ``SHARD`` rows under
``<cache_dir>/images/<key>/``, where ``key`` hashes the dataset's ``identity`` (which changes
whenever an image file could have changed), the size and the resize policy. Shards are decoded
only when a requested row falls in them, written to a temporary file and renamed into place, so
an interrupted decode keeps the finished shards and a reader never sees half a shard. Images
that failed to decode are recorded beside each shard, so a cached failure is reported exactly
like a fresh one.

Resize policy: the whole image is squashed to ``size x size`` (aspect ratio not kept) with
bilinear interpolation and antialiasing (Pillow's ``resize`` widens the filter when shrinking), or,
with ``resize="nearest"``, nearest-neighbour sampling (a paper protocol that resized so).
Squashing keeps the entire lesion in view for any aspect ratio; a centre crop could cut a
border-touching lesion. Augmentations that crop work on the cached square.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dermbench.data.records import DatasetRecords
from dermbench.errors import DataError

RESIZE_POLICY = "squash-bilinear-antialias-v1"
RESIZE_POLICIES = {"bilinear": RESIZE_POLICY, "nearest": "squash-nearest-v1"}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
SHARD = 1024
PROGRESS_MIN = 256  # show a progress bar only when at least this many images need decoding


def default_cache_dir() -> Path:
    """``$DERMBENCH_CACHE``, else ``~/.cache/dermbench``."""
    env = os.environ.get("DERMBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dermbench"


def cache_key(records: DatasetRecords, size: int, resize: str = "bilinear") -> str:
    policy = RESIZE_POLICIES[resize]
    return hashlib.sha256(f"{records.identity}\0{size}\0{policy}".encode()).hexdigest()[:32]


def decode(records: DatasetRecords, row: int, size: int, resize: str = "bilinear") -> np.ndarray:
    """One image as a ``(size, size, 3)`` uint8 array; failures are DataErrors naming the file."""
    try:
        img = records.read_image(row)
    except DataError:
        raise
    except Exception as exc:  # a plugin adapter's own failure: still name the file
        where = _where(records, row)
        raise DataError(f"{where}: cannot read image ({type(exc).__name__}: {exc})") from None
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[resize])
    return np.asarray(img, dtype=np.uint8)


def _where(records: DatasetRecords, row: int) -> str:
    frame = records.frame
    if "path" in frame.columns and isinstance(frame["path"].iloc[row], str):
        return frame["path"].iloc[row]
    return f"{records.name} image {frame['image_id'].iloc[row]!r}"


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _decode_shard(records: DatasetRecords, shard: int, size: int, folder: Path, bar, resize: str) -> None:
    lo, hi = shard * SHARD, min((shard + 1) * SHARD, len(records))
    out = np.zeros((hi - lo, size, size, 3), dtype=np.uint8)
    errors: dict[str, str] = {}

    def one(row: int) -> None:
        try:
            out[row - lo] = decode(records, row, size, resize)
        except DataError as exc:
            errors[str(row)] = str(exc)
        if bar is not None:
            bar.update(1)

    with ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(one, range(lo, hi)))
    _write_atomic(folder / f"shard-{shard:05d}.json", lambda p: p.write_text(json.dumps(errors)))
    _write_atomic(folder / f"shard-{shard:05d}.npy", lambda p: _save_npy(p, out))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def _progress(total: int, progress: bool, name: str):
    if not progress or total < PROGRESS_MIN or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"decoding {name}", unit="img", leave=False)


def _decode_missing(
    records: DatasetRecords, shards: list[int], size: int, folder: Path, resize: str, progress: bool
) -> None:
    """Decode the shards not yet in the cache folder."""
    todo = [s for s in shards if not (folder / f"shard-{s:05d}.npy").is_file()]
    if not todo:
        return
    meta = {"dataset": records.name, "path": records.path, "rows": len(records), "size": size}
    policy = RESIZE_POLICIES[resize]
    _write_atomic(folder / "meta.json", lambda p: p.write_text(json.dumps({**meta, "policy": policy})))
    total = sum(min((s + 1) * SHARD, len(records)) - s * SHARD for s in todo)
    bar = _progress(total, progress, records.name)
    try:
        for s in todo:
            _decode_shard(records, s, size, folder, bar, resize)
    finally:
        if bar is not None:
            bar.close()


def load_images(
    records: DatasetRecords,
    rows: np.ndarray,
    size: int,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    resize: str = "bilinear",
    memory: str = "resident",
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The images of ``rows`` (record positions) at ``size``, decoded at most once ever.

    Returns ``(images, kept_rows, skipped)``: a uint8 ``(len(kept_rows), size, size, 3)`` array,
    the rows it holds in the order given, and one ``{"row", "image_id", "path", "error"}`` per
    image that could not be read. Without ``skip_bad`` the first such image raises DataError.
    ``memory="mapped"``: the array is a memory map of a cache file holding those rows in that order
    (``dermbench.data.mapped``), written in chunks from the shards; ``"resident"``: it is in memory.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(records)):
        raise DataError(f"{records.name}: row positions outside 0..{len(records) - 1}")
    folder = Path(cache_dir or default_cache_dir()) / "images" / cache_key(records, size, resize)
    folder.mkdir(parents=True, exist_ok=True)
    shards = np.unique(rows // SHARD) if len(rows) else np.array([], dtype=np.int64)
    _decode_missing(records, [int(s) for s in shards], size, folder, resize, progress)
    errors: dict[int, str] = {}
    for s in shards:
        failed = json.loads((folder / f"shard-{s:05d}.json").read_text())
        errors.update({int(r): e for r, e in failed.items()})
    skipped = _skipped(records, rows, errors, skip_bad)
    bad = {s["row"] for s in skipped}
    kept = np.array([r for r in rows if int(r) not in bad], dtype=np.int64)
    if memory == "mapped":
        return _mapped_rows(folder, kept, size), kept, skipped
    return _read_rows(folder, kept, size), kept, skipped


def _shard(folder: Path, shard: int) -> Path:
    return folder / f"shard-{int(shard):05d}.npy"


def _read_rows(folder: Path, rows: np.ndarray, size: int) -> np.ndarray:
    """The cached images of ``rows`` in that order, in memory; each shard is mapped only while its
    rows are copied."""
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for s in np.unique(rows // SHARD):
        shard = np.load(_shard(folder, s), mmap_mode="r")
        sel = np.flatnonzero(rows // SHARD == s)
        out[sel] = shard[rows[sel] - s * SHARD]
        del shard
    return out


def _skipped(records: DatasetRecords, rows: np.ndarray, errors: dict[int, str], skip_bad: bool) -> list[dict]:
    """The rows whose image failed to decode; without ``skip_bad`` the first is an error."""
    skipped = []
    for r in rows:
        if int(r) in errors:
            if not skip_bad:
                raise DataError(f"{errors[int(r)]} (--skip-bad-images skips unreadable images)")
            skipped.append(
                {
                    "row": int(r),
                    "image_id": str(records.frame["image_id"].iloc[r]),
                    "path": _where(records, int(r)),
                    "error": errors[int(r)],
                }
            )
    return skipped


def _mapped_rows(folder: Path, kept: np.ndarray, size: int) -> np.ndarray:
    """The rows ``kept`` as one mapped file beside the shards, streamed a chunk at a time (each
    shard is mapped only while its rows are copied, so the process never holds the dataset)."""
    from dermbench.data.mapped import CHUNK, write_mapped

    digest = hashlib.sha256(kept.tobytes()).hexdigest()[:24]

    chunks = (_read_rows(folder, kept[lo : lo + CHUNK], size) for lo in range(0, len(kept), CHUNK))
    return write_mapped(folder / f"rows-{digest}.npy", (len(kept), size, size, 3), chunks)
