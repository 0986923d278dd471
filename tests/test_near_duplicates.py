"""Near-duplicate photographs: found through a resize and a re-encode, kept in one split, counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from dermbench.data.duplicates import DuplicateRule, merged_groups, near_duplicate_clusters, signature
from dermbench.errors import ConfigError
from dermbench.testing import run_tiny

HAM_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A smooth random picture, unlike any other seed's."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def clusters_of(images: list[Image.Image]) -> np.ndarray:
    sigs = [signature(im) for im in images]
    hashes = np.array([h for h, _ in sigs], dtype=np.uint64)
    return near_duplicate_clusters(hashes, np.stack([t for _, t in sigs]), DuplicateRule())


def test_an_image_saved_twice_resized_and_reencoded_is_one_cluster(tmp_path):
    original = photo(1)
    original.save(tmp_path / "a.png")
    original.resize((120, 90)).save(tmp_path / "b.jpg", quality=70)
    files = [tmp_path / "a.png", tmp_path / "b.jpg", *[tmp_path / f"other{i}.png" for i in range(4)]]
    for i, f in enumerate(files[2:]):
        photo(10 + i).save(f)
    found = clusters_of([Image.open(f) for f in files])
    assert found[0] == found[1] == 0
    assert len(set(found[2:])) == 4 and 0 not in found[2:]


def test_a_picture_with_the_same_layout_in_other_colours_is_no_duplicate():
    """The hash alone would join two pictures with the same layout; the thumbnails tell them apart."""
    a = photo(3)
    b = Image.fromarray(255 - np.asarray(a))  # the same shapes, other colours
    assert len(set(clusters_of([a, b]))) == 2


def test_merged_groups_join_every_group_a_cluster_touches():
    groups = np.array(["L1", "L2", "L3", "L4", "L1"])
    cluster = np.array([0, 0, 2, 2, 4])  # images 0 and 1 are copies; 2 and 3 too; 4 alone
    assert merged_groups(groups, cluster).tolist() == ["L1", "L1", "L3", "L3", "L1"]


def ham_folder(root: Path, n: int = 70) -> Path:
    """A HAM10000-layout folder of n lesions, one image each; the last image is a resized,
    re-encoded copy of the first, filed under another lesion."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        dx = HAM_DX[i % len(HAM_DX)]
        image = photo(i) if i < n - 1 else photo(0).resize((140, 105))
        image.save(root / "images" / f"ISIC_{i:07d}.jpg", quality=80 if i < n - 1 else 60)
        rows.append({"lesion_id": f"HAM_{i:07d}", "image_id": f"ISIC_{i:07d}", "dx": dx if i < n - 1 else "akiec",
                     "dx_type": "histo", "age": "50.0", "sex": "male", "localization": "back"})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.mark.parametrize("mode", ["report", "group"])
def test_a_run_reports_the_clusters_and_grouping_keeps_them_in_one_split(tmp_path, mode):
    root = ham_folder(tmp_path / "ham")
    record = run_tiny(tmp_path, task="ham7", data={"ham10000": str(root)}, near_duplicates=mode, epochs=1)
    dup = record["data"]["near_duplicates"]
    assert (dup["mode"], dup["clusters"], dup["images"]) == (mode, 1, 2)
    assert dup["examples"] == [["ISIC_0000000", "ISIC_0000069"]]
    if mode == "group":
        assert dup["clusters_across_splits"] == 0
        assert "near-duplicate photographs kept together" in record["data"]["split_protocol"]


@pytest.mark.parametrize("seed", range(4))
def test_grouping_never_splits_a_cluster_whatever_the_split_seed(tmp_path, seed):
    from dermbench.data.prepare import split_frame
    from dermbench.plugins import load_plugins
    from dermbench.run.config import resolve_config

    root = ham_folder(tmp_path / "ham")
    reg = load_plugins().registries
    settings = {"data": {"ham10000": str(root)}, "near_duplicates": "group", "split_seed": seed,
                "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    cfg = resolve_config(reg.tasks.get("ham7"), reg.methods.get("erm"), {}, settings)
    frame, idx = split_frame(cfg, reg.tasks.get("ham7"), reg)
    where = {frame["image_id"].iloc[p]: name for name, pos in idx.items() for p in pos}
    assert where["ISIC_0000000"] == where["ISIC_0000069"]


def test_an_unknown_mode_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"near_duplicates must be one of off, report, group, got 'yes'"):
        run_tiny(tmp_path, near_duplicates="yes")


@pytest.mark.realdata
def test_on_real_ham10000_no_two_lesions_share_a_photograph_and_a_copy_is_found(shared_data, tmp_path):
    """HAM10000's distinct lesions pass the hash test by the hundred but not the thumbnail test."""
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv").iloc[::20]
    images = [Image.open(shared_data / "ham10000" / "images" / f"{i}.jpg") for i in meta["image_id"]]
    copy = images[0].resize((300, 225))
    copy.save(tmp_path / "copy.jpg", quality=75)
    found = clusters_of([*images, Image.open(tmp_path / "copy.jpg")])
    lesions = np.array([*meta["lesion_id"], meta["lesion_id"].iloc[0]])
    assert found[-1] == found[0]
    for root in np.unique(found):
        assert len(set(lesions[found == root])) == 1  # a cluster never joins two lesions
