"""Adapters for the published layouts of public dermatology datasets, and a generic manifest.

Each adapter reads one dataset as its authors distribute it and returns
:class:`~dermbench.data.records.DatasetRecords`; nothing is converted or copied. Images are
decoded lazily by ``read_image`` (and once, by the cache). Datasets:

- HAM10000: Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161 (2018), CC BY-NC 4.0;
- ISIC 2018 Task 3: in :mod:`dermbench.data.isic_adapter`;
- MedMNIST v2 / DermaMNIST: Yang et al., Sci. Data 10, 41 (2023), CC BY-NC 4.0;
- Fitzpatrick17k: Groh et al., CVPR Workshops (2021), CC BY-NC-SA 3.0.

Rows are named by their line in the CSV (the header is line 1) so a user can open the file there.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermbench.data.images import open_rgb
from dermbench.data.records import DatasetRecords
from dermbench.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HAM_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# MedMNIST v2 DermaMNIST label indices. Verified against the JPEG layout in ../shared/data: the
# published per-index train counts 228/359/769/80/779/4693/99 equal the counts of akiec, bcc,
# bkl, df, mel, nv, vasc in the official train split (see tests/test_data_adapters.py).
DERMAMNIST_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
SPLITS = ("train", "val", "test")


def _opt(default: object, help: str) -> object:
    return field(default=default, metadata={"help": help})


# --- shared helpers ---------------------------------------------------------------------------


def existing_path(path: str | os.PathLike | None, adapter: str) -> Path:
    if path is None:
        raise DataError(f"dataset {adapter!r} needs a path: --data {adapter}=PATH")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset {adapter!r}: {p} does not exist")
    return p


def line(i: int) -> str:
    """The CSV line of data row ``i`` (0-based), counting the header as line 1."""
    return f"line {i + 2}"


def read_table(file: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV read as strings (blanks as ""), refusing missing columns by name."""
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    try:
        df = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # a BOM is not a name
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read as CSV ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1 and ";" in df.columns[0]:
            hint = "; the file looks semicolon-separated: save it with commas"
        raise DataError(
            f"{file}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns)}){hint}"
        )
    if len(df) == 0:
        raise DataError(f"{file}: no rows, only a header")
    return df


def require_values(df: pd.DataFrame, column: str, file: Path) -> None:
    blank = np.flatnonzero(df[column].str.strip().eq("").to_numpy())
    if len(blank):
        raise DataError(f"{file}: {line(blank[0])}: empty {column!r} ({len(blank)} row(s) like this)")


def require_unique(df: pd.DataFrame, column: str, file: Path) -> None:
    dup = df[column].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = df[column].iloc[rows[0]]
        where = [line(i) for i in rows if df[column].iloc[i] == first]
        raise DataError(f"{file}: {column} {first!r} appears more than once ({', '.join(where)})")


def numeric(
    df: pd.DataFrame, column: str, file: Path, lo: float | None = None, hi: float | None = None
) -> pd.Series:
    """A column as float (blank -> NaN); a malformed or out-of-range value names its row."""
    text = df[column].str.strip()
    values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
    bad = values.isna() & text.ne("")
    if lo is not None:
        bad |= values.lt(lo)
    if hi is not None:
        bad |= values.gt(hi)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{file}: {line(i)}: column {column!r} has invalid value {df[column].iloc[i]!r}")
    return values.astype(float)


class ImageIndex(dict):
    """File stem -> image path, and (``twice``) every stem found more than once with its paths."""

    def __init__(self) -> None:
        super().__init__()
        self.twice: dict[str, list[Path]] = {}


def index_images(root: Path) -> ImageIndex:
    """File stem -> image path for every image under ``root`` (sub-folders included). A stem found
    twice (``aug/x.jpg`` beside ``images/x.jpg``, or ``x.jpg`` beside ``x.png``) is kept in
    ``twice``: :func:`locate` refuses to guess which one a record means."""
    found = ImageIndex()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTS and not name.startswith("."):
                path = Path(dirpath) / name
                if stem in found:
                    found.twice.setdefault(stem, [found[stem]]).append(path)
                else:
                    found[stem] = path
    return found


def locate(
    ids: Iterable[str],
    index: dict[str, Path],
    root: Path,
    csv: Path,
    column: str,
    skip_missing: bool,
    rows: Sequence[int] | None = None,
) -> list[str]:
    """Image paths for ``ids``. A missing file is an error naming it (its CSV row: ``rows[i]``, the
    0-based data row, when rows were left out, else ``i``), unless ``skip_missing``: then the row
    keeps its expected path and the cache lists it as skipped."""
    paths, missing = [], []
    twice = getattr(index, "twice", {})
    for i, image_id in enumerate(ids):
        if image_id in twice:
            where = " and ".join(
                str(q.relative_to(root)) if q.is_relative_to(root) else str(q) for q in twice[image_id]
            )
            raise DataError(
                f"{csv}: {line(rows[i] if rows is not None else i)}: image {image_id!r} is found twice under {root} "
                f"({where}); keep one, or name the folder that holds the dataset's own images"
            )
        p = index.get(image_id)
        if p is None:
            missing.append(i)
            p = root / "images" / f"{image_id}.jpg"
        paths.append(str(p))
    if missing and not skip_missing:
        i = missing[0]
        raise DataError(
            f"{csv}: {line(rows[i] if rows is not None else i)}: image file {Path(paths[i]).name} ({column} {Path(paths[i]).stem!r}) not "
            f"found under {root} ({len(missing)} missing in all; option skip_missing=true skips them)"
        )
    return paths


def file_reader(paths: Sequence[str]) -> Callable[[int], Image.Image]:
    frozen = list(paths)
    return lambda row: open_rgb(frozen[row])


def files_identity(adapter: str, root: Path, ids: Sequence[str], paths: Sequence[str], *extra: object) -> str:
    """Changes whenever an image could have changed: each file's size and mtime are hashed."""
    h = hashlib.sha256(f"{adapter}\0{root.resolve()}\0{extra!r}".encode())
    for image_id, p in zip(ids, paths, strict=True):
        try:
            st = os.stat(p)
            h.update(f"{image_id}\0{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{image_id}\0{p}\0missing\n".encode())
    return h.hexdigest()


def pick_file(root: Path, name: str, pattern: str, adapter: str, want: Callable[[Path], bool]) -> Path:
    """``root`` itself when it is a file, else ``root/name``, else the one match of ``pattern``."""
    if root.is_file():
        return root
    if name and (root / name).is_file():
        return root / name
    candidates = sorted(p for p in root.rglob(pattern) if not p.name.startswith("."))
    found = [p for p in candidates if want(p)]
    if len(found) == 1:
        return found[0]
    if not found:
        what = getattr(want, "expects", "")
        if candidates and what:  # files of the right kind exist, but none has the layout's columns
            listed = ", ".join(str(p.relative_to(root)) for p in candidates[:3])
            raise DataError(
                f"dataset {adapter!r}: no file under {root} has the columns {what} ({listed} do not)"
            )
        raise DataError(f"dataset {adapter!r}: no {name or pattern} under {root}")
    listed = ", ".join(str(p.relative_to(root)) for p in found[:5])
    raise DataError(
        f"dataset {adapter!r}: several candidate files under {root} ({listed}): name one with an option"
    )


def csv_has(*columns: str) -> Callable[[Path], bool]:
    def check(p: Path) -> bool:
        try:
            head = pd.read_csv(p, nrows=0).columns
        except Exception:
            return False
        return all(c in head for c in columns)

    check.expects = ", ".join(columns)  # type: ignore[attr-defined]
    return check


def file_records(
    name: str, root: Path, frame: pd.DataFrame, label_source: str, identity_extra: object = ()
) -> DatasetRecords:
    frame = frame.reset_index(drop=True)
    ids, paths = frame["image_id"].tolist(), frame["path"].tolist()
    return DatasetRecords(
        name=name,
        path=str(root),
        frame=frame,
        label_source=label_source,
        read_image=file_reader(paths),
        identity=files_identity(name, root, ids, paths, label_source, identity_extra),
    )


# --- HAM10000 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ham10000Options:
    metadata: str = _opt("HAM10000_metadata.csv", "metadata CSV, relative to PATH")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def load_ham10000(options: Ham10000Options, path: str | None) -> DatasetRecords:
    """HAM10000: the metadata CSV plus ``<image_id>.jpg`` in any sub-folder of PATH
    (``images/``, or the official ``HAM10000_images_part_1/`` and ``_part_2/``)."""
    root = existing_path(path, "ham10000")
    csv = pick_file(root, options.metadata, "HAM10000_metadata*", "ham10000", lambda p: True)
    root = csv.parent if root.is_file() else root
    cols = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
    df = read_table(csv, cols)
    for c in ("lesion_id", "image_id", "dx"):
        require_values(df, c, csv)
    require_unique(df, "image_id", csv)
    unknown = np.flatnonzero(~df["dx"].isin(HAM_DX).to_numpy())
    if len(unknown):
        i = unknown[0]
        raise DataError(
            f"{csv}: {line(i)}: unknown dx {df['dx'].iloc[i]!r} (expected one of {', '.join(HAM_DX)})"
        )
    df["age"] = numeric(df, "age", csv, 0, 130)
    df["label"], df["group"] = df["dx"], df["lesion_id"]
    df["path"] = locate(df["image_id"], index_images(root), root, csv, "image_id", options.skip_missing)
    return file_records("ham10000", root, df, "ham10000_dx", options.metadata)


# --- MedMNIST (.npz) and DermaMNIST (JPEG layout) ---------------------------------------------


@dataclass(frozen=True)
class MedmnistOptions:
    file: str = _opt("", "the .npz inside PATH; empty: dermamnist.npz or the only .npz")
    label_names: tuple[str, ...] = _opt(DERMAMNIST_DX, "raw label of each integer index, in order")
    label_source: str = _opt("ham10000_dx", "namespace of label_names for task mappings")
    id_prefix: str = _opt("DermaMNIST", "image ids are <prefix>_<split>_<n>")


def load_medmnist(options: MedmnistOptions, path: str | None) -> DatasetRecords:
    """A MedMNIST v2 ``.npz`` (``{train,val,test}_{images,labels}``) with its official split."""
    root = existing_path(path, "medmnist")
    default = options.file or ("dermamnist.npz" if (root / "dermamnist.npz").is_file() else "")
    npz = pick_file(root, default, "*.npz", "medmnist", lambda p: True)
    names = np.asarray(options.label_names)
    parts = []
    try:
        with np.load(npz) as z:
            for split in SPLITS:
                for key in (f"{split}_images", f"{split}_labels"):
                    if key not in z.files:
                        raise DataError(f"{npz}: missing array {key!r} (found: {', '.join(z.files)})")
                labels = np.asarray(z[f"{split}_labels"])
                shape = z[f"{split}_images"].shape
                if labels.ndim == 2 and labels.shape[1] == 1:
                    labels = labels[:, 0]
                if labels.ndim != 1 or len(labels) != shape[0] or len(shape) not in (3, 4):
                    raise DataError(f"{npz}: {split}_labels {labels.shape} do not fit {split}_images {shape}")
                bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
                if len(bad):
                    raise DataError(
                        f"{npz}: {split}_labels row {bad[0]}: index {labels[bad[0]]} has no name "
                        f"(label_names has {len(names)})"
                    )
                ids = [f"{options.id_prefix}_{split}_{i:05d}" for i in range(len(labels))]
                parts.append(
                    pd.DataFrame(
                        {"image_id": ids, "label": names[labels], "split": split, "index": range(len(labels))}
                    )
                )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{npz}: cannot read as .npz ({exc})") from None
    frame = pd.concat(parts, ignore_index=True)
    frame["group"] = frame["image_id"]
    arrays: dict[str, np.ndarray] = {}
    lock = threading.Lock()
    splits, index = frame["split"].to_numpy(), frame["index"].to_numpy()

    def read_image(row: int) -> Image.Image:
        with lock:
            if not arrays:
                with np.load(npz) as z:
                    arrays.update({s: np.asarray(z[f"{s}_images"]) for s in SPLITS})
        arr = arrays[splits[row]][index[row]]
        if arr.dtype != np.uint8:
            raise DataError(f"{npz}: {splits[row]}_images has dtype {arr.dtype}, expected uint8")
        img = Image.fromarray(arr)
        return img.convert("RGB")

    st = npz.stat()
    ident = hashlib.sha256(f"medmnist\0{npz.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{options!r}".encode())
    return DatasetRecords(
        "medmnist", str(npz), frame.drop(columns="index"), options.label_source, read_image, ident.hexdigest()
    )


@dataclass(frozen=True)
class DermamnistOptions:
    labels: str = _opt("labels.csv", "labels CSV (image_id,dx,split), relative to PATH")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def load_dermamnist(options: DermamnistOptions, path: str | None) -> DatasetRecords:
    """DermaMNIST as JPEG files: ``labels.csv`` (image_id, dx, split) plus ``images/``."""
    root = existing_path(path, "dermamnist")
    csv = pick_file(root, options.labels, "labels*.csv", "dermamnist", csv_has("image_id", "dx", "split"))
    root = csv.parent if root.is_file() else root
    df = read_table(csv, ("image_id", "dx", "split"))
    require_values(df, "image_id", csv)
    require_unique(df, "image_id", csv)
    for column, allowed in (("dx", HAM_DX), ("split", SPLITS)):
        bad = np.flatnonzero(~df[column].isin(allowed).to_numpy())
        if len(bad):
            i = bad[0]
            raise DataError(
                f"{csv}: {line(i)}: {column} {df[column].iloc[i]!r} is not one of {', '.join(allowed)}"
            )
    df["label"], df["group"] = df["dx"], df["image_id"]
    df["path"] = locate(df["image_id"], index_images(root), root, csv, "image_id", options.skip_missing)
    return file_records("dermamnist", root, df, "ham10000_dx")


# --- Fitzpatrick17k ---------------------------------------------------------------------------

FITZ_SOURCES = {"label": "fitzpatrick17k_label", "three_partition_label": "fitzpatrick17k_three"}


@dataclass(frozen=True)
class Fitzpatrick17kOptions:
    csv: str = _opt("", "the CSV inside PATH; empty: the one CSV with md5hash and fitzpatrick_scale")
    label_column: str = _opt("label", "label (114 conditions) or three_partition_label")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def load_fitzpatrick17k(options: Fitzpatrick17kOptions, path: str | None) -> DatasetRecords:
    """Fitzpatrick17k: the CSV (md5hash, fitzpatrick_scale, label, ...) plus ``images/<md5hash>.jpg``."""
    if options.label_column not in FITZ_SOURCES:
        raise DataError(f"fitzpatrick17k: option label_column must be one of {', '.join(FITZ_SOURCES)}")
    root = existing_path(path, "fitzpatrick17k")
    csv = pick_file(root, options.csv, "*.csv", "fitzpatrick17k", csv_has("md5hash", "fitzpatrick_scale"))
    root = csv.parent if root.is_file() else root
    df = read_table(csv, ("md5hash", "fitzpatrick_scale", options.label_column))
    for c in ("md5hash", options.label_column):
        require_values(df, c, csv)
    require_unique(df, "md5hash", csv)
    scale = numeric(df, "fitzpatrick_scale", csv)
    bad = np.flatnonzero(~scale.isin([-1, 1, 2, 3, 4, 5, 6]).to_numpy())
    if len(bad):
        i = bad[0]
        raise DataError(
            f"{csv}: {line(i)}: fitzpatrick_scale {df['fitzpatrick_scale'].iloc[i]!r} is not 1-6 or -1"
        )
    df["skin_type"] = scale.where(scale > 0)
    df["image_id"], df["group"] = df["md5hash"], df["md5hash"]
    df["label"] = df[options.label_column].str.strip()
    df["path"] = locate(df["md5hash"], index_images(root), root, csv, "md5hash", options.skip_missing)
    return file_records("fitzpatrick17k", root, df, FITZ_SOURCES[options.label_column])


# --- generic manifest -------------------------------------------------------------------------

GROUP_COLUMNS = ("group", "lesion_id", "patient_id")


@dataclass(frozen=True)
class ManifestOptions:
    file: str = _opt("manifest.csv", "the manifest CSV when PATH is a folder")
    label_source: str = _opt("task", "namespace of the labels: 'task' for the task's class names")
    skip_missing: bool = _opt(False, "keep rows whose image is absent; the cache skips them")


def load_manifest(options: ManifestOptions, path: str | None) -> DatasetRecords:
    """A CSV for private sets: ``image`` (relative to the CSV or absolute), ``label``, and optional
    ``split``, ``group``/``lesion_id``/``patient_id``, ``skin_type``, any other metadata."""
    root = existing_path(path, "manifest")
    csv = root if root.is_file() else root / options.file
    df = read_table(csv, ("image", "label"))
    for c in ("image", "label"):
        require_values(df, c, csv)
    if "image_id" not in df.columns:
        df["image_id"] = df["image"]
    require_unique(df, "image_id", csv)
    df["label"] = df["label"].str.strip()
    group = next((c for c in GROUP_COLUMNS if c in df.columns), None)
    df["group"] = (
        df["image_id"] if group is None else df[group].where(df[group].str.strip().ne(""), df["image_id"])
    )
    if "split" in df.columns:
        text = df["split"].str.strip().str.lower()
        bad = np.flatnonzero(~text.isin(("", *SPLITS)).to_numpy())
        if len(bad):
            raise DataError(
                f"{csv}: {line(bad[0])}: split {df['split'].iloc[bad[0]]!r} is not train, val, test or blank"
            )
        df["split"] = text.replace("", None)
    if "skin_type" in df.columns:
        df["skin_type"] = numeric(df, "skin_type", csv, 1, 6)
    if "age" in df.columns:
        df["age"] = numeric(df, "age", csv, 0, 130)
    paths = [Path(p.strip()).expanduser() for p in df["image"]]
    for i, p in enumerate(paths):  # a relative path stays under the manifest's folder
        if not p.is_absolute() and os.path.normpath(p).split(os.sep)[0] == "..":
            raise DataError(
                f"{csv}: {line(i)}: image path {df['image'].iloc[i]!r} leaves the manifest's folder "
                f"(give an absolute path to use a file elsewhere)"
            )
    df["path"] = [str(p if p.is_absolute() else csv.parent / p) for p in paths]
    missing = [i for i, p in enumerate(df["path"]) if not os.path.isfile(p)]
    if missing and not options.skip_missing:
        i = missing[0]
        raise DataError(
            f"{csv}: {line(i)}: image file {df['path'].iloc[i]} does not exist "
            f"({len(missing)} missing in all; option skip_missing=true skips them)"
        )
    return file_records("manifest", csv, df, options.label_source)
