"""Memory-mapped image arrays: a run's decoded images live in files of the decode-once cache and
are read through memory maps, not copied into the process.

A mapped array is a ``.npy`` file opened copy-on-write (``np.load(..., mmap_mode="c")``): its pages
are the kernel's page cache, read on first touch, dropped under memory pressure and read again,
and shared by every process that maps the same file, so several runs on one machine hold one copy
of a dataset, and a dataset larger than the memory trains (at the speed of the disk once it no
longer fits). A process's own memory holds a batch, the model and its optimiser.

Files are named by what they hold, so an identical request reuses the file and two processes
asking at once write the same content: :func:`write_mapped` streams the rows to a temporary file in
chunks (never the whole array in memory) and renames it into place. Derived arrays (one split's
rows, several datasets one after the other) go beside their source's file, named by the source's
name and the row positions.

Pages a process reads stay in its resident memory until they are unmapped; a background thread
hands them back to the page cache every second (:func:`release_pages`), so a run's resident memory
is its model, its batches and about a second's reading, whatever the size of the dataset.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dermbench.data.cache_files import mark_used
from dermbench.errors import DataError

CHUNK = 256  # rows streamed at a time when a mapped file is written
RELEASE_SECONDS = 1.0  # how often the pages a process has read are handed back to the page cache
MODES = ("mapped", "resident")  # --image-memory: files mapped into memory, or arrays in the process


def is_mapped(array: object) -> bool:
    """True for the whole of a ``.npy`` file read through a memory map (a slice or view is not)."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or filename is None or not array.flags.c_contiguous:
        return False
    return array.shape == _file_shape(filename)


@functools.lru_cache(maxsize=256)
def _file_shape(filename: str) -> tuple[int, ...] | None:
    try:
        with open(filename, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
    except (OSError, ValueError):
        return None
    return tuple(shape)


def open_mapped(path: Path, shape: Sequence[int]) -> np.ndarray:
    """The ``.npy`` file at ``path`` as a copy-on-write memory map (an empty array is not mapped)."""
    if not shape[0]:
        return np.zeros(tuple(shape), dtype=np.uint8)
    array = np.load(path, mmap_mode="c")
    mark_used(path)  # a derived array's time of last use, for `dermbench cache prune`
    if array.shape != tuple(shape) or array.dtype != np.uint8:
        raise DataError(
            f"{path}: holds {array.dtype} {array.shape}, expected uint8 {tuple(shape)}: delete it"
        )
    _PAGES.watch(array)
    return array


def release_pages(array: np.ndarray) -> None:
    """Hand the pages of a mapped array that this process has read back to the page cache
    (``MADV_DONTNEED``): they leave its resident memory and a later read maps them again from the
    cache. Safe because mapped images are never written (an unwritten copy-on-write page is the
    file's page)."""
    handle = getattr(array, "_mmap", None)
    if handle is not None and not handle.closed and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


class _PageReleaser:
    """Every ``RELEASE_SECONDS`` a daemon thread releases the read pages of every live mapped array,
    so a process's resident memory holds about a second's reading, not the dataset."""

    def __init__(self) -> None:
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> array
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def watch(self, array: np.ndarray) -> None:
        with self.lock:
            self.live[id(array)] = array
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="dermbench-pages", daemon=True)
                self.thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(RELEASE_SECONDS)
            with self.lock:
                arrays = list(self.live.values())
            for array in arrays:
                release_pages(array)
            del arrays


_PAGES = _PageReleaser()


def write_mapped(path: Path, shape: Sequence[int], chunks: Iterable[np.ndarray]) -> np.ndarray:
    """``chunks`` (row blocks, in order) written to ``path`` unless it is already there, then mapped."""
    shape = tuple(int(s) for s in shape)
    if shape[0] and path.is_file():
        try:
            return open_mapped(path, shape)
        except FileNotFoundError:  # `dermbench cache prune` removed it since: written again below
            pass
    if shape[0]:
        _write_npy(path, shape, chunks)
    return open_mapped(path, shape)


def _write_npy(path: Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> None:
    """A uint8 ``.npy`` file of ``shape`` from row blocks, written beside ``path`` and renamed onto it
    (a reader sees the whole file or none; concurrent writers of the same array both succeed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        written = 0
        with open(tmp, "wb") as fh:
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_2_0(fh, header)
            for chunk in chunks:
                fh.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
                written += len(chunk)
        if written != shape[0]:
            raise DataError(f"{path}: {written} rows written for an array of {shape[0]}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def gather(source: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The rows ``pos`` of ``source``: a mapped file beside a mapped source, else an in-memory copy."""
    pos = np.asarray(pos, dtype=np.int64).reshape(-1)
    if not is_mapped(source):
        return np.ascontiguousarray(source[pos])
    if len(pos) == len(source) and np.array_equal(pos, np.arange(len(source))):
        return source
    origin = Path(source.filename)
    path = origin.with_name(f"rows-{_digest(origin.name, source.shape, pos)}.npy")
    chunks = (source[pos[i : i + CHUNK]] for i in range(0, len(pos), CHUNK))
    return write_mapped(path, (len(pos), *source.shape[1:]), chunks)


def take(source: np.ndarray, pos: np.ndarray, memory: str) -> np.ndarray:
    """The rows ``pos`` of ``source`` as a run holds them: ``memory="mapped"``, as :func:`gather`
    (a mapped file beside a mapped source); ``"resident"``, copied into the process straight from
    ``source`` (a mapped source's pages go back to the page cache, so a resident run holds its
    splits once, not the dataset and its splits)."""
    if memory == "mapped":
        return gather(source, pos)
    # a base-class view first, so the rows are copied once (not into a memmap, then again)
    return np.asarray(source)[np.asarray(pos, dtype=np.int64).reshape(-1)]


def concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``arrays`` one after the other: a mapped file when all are mapped, else in memory."""
    if len(arrays) == 1:
        return arrays[0]
    if not all(is_mapped(a) for a in arrays):
        return np.concatenate([np.asarray(a) for a in arrays])
    first = Path(arrays[0].filename)
    name = _digest(*(f"{a.filename}|{a.shape}" for a in arrays))
    shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
    chunks = (a[i : i + CHUNK] for a in arrays for i in range(0, len(a), CHUNK))
    return write_mapped(first.with_name(f"concat-{name}.npy"), shape, chunks)
