"""The decode-once cache: same pixels as a direct decode, hits without decoding, bad files named."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.data import adapters as A
from dermbench.data import cache
from dermbench.data.cache import default_cache_dir, load_images
from dermbench.data.synthetic import SyntheticOptions, load_synthetic
from dermbench.errors import DataError


def gradient(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def reference(path: Path, size: int) -> np.ndarray:
    """What the cache promises: RGB, squashed to size x size, bilinear with antialiasing."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        name = f"img/p{i}.png" if i % 2 else f"img/p{i}.jpg"
        gradient(20 + 3 * i, 14 + i, i).save(root / name)
        rows.append({"image": name, "label": "nv"})
    Image.new("L", (9, 9), 77).save(root / "img" / "grey.png")  # converted to RGB
    rows.append({"image": "img/grey.png", "label": "mel"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def load(root: Path) -> A.DatasetRecords:
    return A.load_manifest(A.ManifestOptions(skip_missing=True), str(root))


def test_pixels_match_a_direct_decode_and_rows_keep_their_order(dataset: Path, tmp_path: Path) -> None:
    rec = load(dataset)
    rows = np.array([6, 0, 3])
    images, kept, skipped = load_images(rec, rows, 16, tmp_path / "c", progress=False)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert kept.tolist() == [6, 0, 3] and skipped == []
    for out, r in zip(images, rows, strict=True):
        assert (out == reference(Path(rec.frame["path"].iloc[r]), 16)).all()
    assert (images[0] == 77).all()


def test_second_load_is_a_cache_hit(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = load(dataset)
    first, _, _ = load_images(rec, np.arange(7), 12, tmp_path / "c", progress=False)

    def fail(*args: object) -> np.ndarray:
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode", fail)
    again, kept, _ = load_images(load(dataset), np.arange(7)[::-1], 12, tmp_path / "c", progress=False)
    assert (again == first[::-1]).all() and kept.tolist() == list(range(6, -1, -1))
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another entry
        load_images(rec, np.arange(7), 13, tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_a_changed_file_is_decoded_again(dataset: Path, tmp_path: Path) -> None:
    before, _, _ = load_images(load(dataset), np.array([1]), 8, tmp_path / "c", progress=False)
    Image.new("RGB", (30, 30), (1, 2, 3)).save(dataset / "img" / "p1.png")
    after, _, _ = load_images(load(dataset), np.array([1]), 8, tmp_path / "c", progress=False)
    assert not (before == after).all() and (after == (1, 2, 3)).all()


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    gradient(64, 64, 9).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "content", "message"),
    [
        ("corrupt", b"this is not an image at all", "cannot decode image"),
        ("truncated", jpeg_bytes()[:400], "cannot decode image"),
        ("empty", b"", "cannot decode image"),
        ("missing", None, "image file does not exist"),
    ],
)
def test_bad_images_are_named_or_skipped(
    dataset: Path, tmp_path: Path, kind: str, content: bytes | None, message: str
) -> None:
    bad = dataset / "img" / "p2.jpg"
    if content is None:
        bad.unlink()
    else:
        bad.write_bytes(content)
    rec = load(dataset)
    with pytest.raises(DataError, match=rf"{bad}: {message}"):
        load_images(rec, np.arange(7), 8, tmp_path / "c", progress=False)
    with pytest.raises(DataError, match=rf"{bad}: {message}"):  # a cached failure is reported alike
        load_images(rec, np.arange(7), 8, tmp_path / "c", progress=False)
    images, kept, skipped = load_images(rec, np.arange(7), 8, tmp_path / "c", skip_bad=True, progress=False)
    assert kept.tolist() == [0, 1, 3, 4, 5, 6] and len(images) == 6
    assert len(skipped) == 1
    entry = skipped[0]
    assert entry["row"] == 2 and entry["image_id"] == "img/p2.jpg" and entry["path"] == str(bad)
    assert message in entry["error"]
    ok, _, none = load_images(rec, np.array([0, 1]), 8, tmp_path / "c", progress=False)
    assert none == [] and len(ok) == 2  # rows that avoid the bad image need no skipping


def test_synthetic_images_are_cached_at_any_size(tmp_path: Path) -> None:
    rec = load_synthetic(SyntheticOptions(n=60, priors={"a": 1, "b": 1}))
    images, kept, _ = load_images(rec, np.arange(60), 32, tmp_path, progress=False)
    native = np.asarray(rec.read_image(5).resize((32, 32), Image.Resampling.BILINEAR))
    assert (images[5] == native).all() and len(kept) == 60


def test_shards_cover_large_row_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "SHARD", 16)
    rec = load_synthetic(SyntheticOptions(n=50, image_size=8, priors={"a": 1, "b": 1}))
    rows = np.array([49, 3, 17, 33, 16])
    images, kept, _ = load_images(rec, rows, 8, tmp_path, progress=False)
    assert kept.tolist() == rows.tolist()
    for out, r in zip(images, rows, strict=True):
        assert (out == np.asarray(rec.read_image(int(r)))).all()
    assert len(list(tmp_path.rglob("shard-*.npy"))) == 4
    with pytest.raises(DataError, match="row positions outside"):
        load_images(rec, np.array([50]), 8, tmp_path, progress=False)


def test_default_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DERMBENCH_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("DERMBENCH_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "dermbench"


@pytest.mark.realdata
def test_real_ham10000_images(shared_data: Path, tmp_path: Path) -> None:
    rec = A.load_ham10000(A.Ham10000Options(), str(shared_data / "ham10000"))
    rows = np.arange(0, 1000, 40)  # one cache shard: decodes 1024 images, not 10015
    images, kept, skipped = load_images(rec, rows, 32, tmp_path, progress=False)
    assert images.shape == (len(rows), 32, 32, 3) and skipped == []
    for i in (0, len(rows) - 1):
        assert (images[i] == reference(Path(rec.frame["path"].iloc[rows[i]]), 32)).all()
