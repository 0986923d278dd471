"""ITA: the CIELAB conversion against reference values, the lesion-exclusion rule on built images,
the synthetic sample's recorded ITA, and the rank correlation with Fitzpatrick types on the real
Fitzpatrick17k subset (Groh et al., CVPR-W 2021)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from dermbench.data.synthetic import SyntheticOptions, lab_to_rgb, load_synthetic
from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.ita import (
    ita_for_images,
    ita_from_lab,
    ita_groups,
    ita_of_image,
    ring_mask,
    srgb_to_lab,
)

# --- sRGB -> CIELAB -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),  # the D65 white point
        ((128, 128, 128), (53.585, 0.0, 0.0)),  # mid grey
        ((255, 0, 0), (53.2408, 80.0925, 67.2032)),  # sRGB primaries (CIE 15:2004 formulas)
        ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
        ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
    ],
)
def test_srgb_to_lab_reference_values(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> None:
    got = srgb_to_lab(np.array(rgb, dtype=np.uint8))
    np.testing.assert_allclose(got, lab, atol=0.01)


def test_srgb_to_lab_agrees_with_opencv_and_inverts_the_synthetic_generator() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    colours = rng.random((500, 3)).astype(np.float32)
    ours = srgb_to_lab(colours)
    theirs = cv2.cvtColor(colours[None], cv2.COLOR_RGB2LAB)[0]
    assert np.abs(ours - theirs).max() < 0.5  # OpenCV's float path interpolates its curves
    # the synthetic sample renders skin from Lab with the inverse formulas; in gamut we get Lab back
    lab = np.column_stack([rng.uniform(25, 75, 200), rng.uniform(5, 15, 200), rng.uniform(10, 25, 200)])
    np.testing.assert_allclose(srgb_to_lab(lab_to_rgb(lab)), lab, atol=0.05)


def test_srgb_to_lab_rejects_non_rgb() -> None:
    with pytest.raises(DataError, match="3 channels"):
        srgb_to_lab(np.zeros((4, 4)))


def test_ita_formula_and_b_near_zero() -> None:
    assert ita_from_lab(60.0, 10.0) == pytest.approx(math.degrees(math.atan(1.0)))
    assert ita_from_lab(40.0, 10.0) == pytest.approx(-45.0)
    assert ita_from_lab(50.0, 17.0) == pytest.approx(0.0)
    # b* <= 0 is not skin: the angle saturates at +-90 instead of flipping sign or dividing by zero
    np.testing.assert_allclose(ita_from_lab([70.0, 30.0, 70.0], [0.0, 0.0, -5.0]), [90.0, -90.0, 90.0])
    assert np.isfinite(ita_from_lab(50.0, 0.0))


# --- the lesion-exclusion rule on built images ----------------------------------------------


def _skin(L: float, a: float, b: float, h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    """A skin-coloured image with mild texture noise."""
    rgb = lab_to_rgb(np.array([L, a, b]))
    noise = np.random.default_rng(seed).normal(0, 0.01, (h, w, 3))
    return (np.clip(rgb + noise, 0, 1) * 255 + 0.5).astype(np.uint8)


def _truth(L: float, b: float) -> float:
    return float(ita_from_lab(L, b))


def test_uniform_skin_gives_its_own_ita() -> None:
    for L, a, b in [(70, 8, 16), (55, 10, 18), (35, 9, 14)]:
        assert ita_of_image(_skin(L, a, b)) == pytest.approx(_truth(L, b), abs=1.0)


def test_central_lesion_and_hair_do_not_move_ita() -> None:
    img = _skin(68, 9, 17)
    yy, xx = np.mgrid[:60, :80]
    img[((yy - 30) / 27) ** 2 + ((xx - 40) / 37) ** 2 < 1] = (70, 40, 30)  # a dark lesion, reaching the ring
    img[:, 5:7] = (20, 15, 10)  # hairs crossing the border ring
    img[50:52, :] = (25, 20, 15)
    assert ita_of_image(img) == pytest.approx(_truth(68, 17), abs=1.5)
    # without the exclusions (ring 0.5 = whole image, no Otsu split) the lesion drags ITA down
    assert ita_of_image(img, ring=0.5, min_separation=1e9) < _truth(68, 17) - 5


def test_grey_background_and_dark_skin_majority() -> None:
    img = _skin(38, 10, 15)
    img[:, :18] = (215, 215, 212)  # a pale grey wall on one side: no chroma, not skin
    assert ita_of_image(img) == pytest.approx(_truth(38, 15), abs=1.5)
    # a pale, skin-hued sheet covering less of the ring than the dark skin does: the dark majority stays
    img2 = _skin(38, 10, 15)
    img2[:, :14] = (235, 215, 200)
    assert ita_of_image(img2) == pytest.approx(_truth(38, 15), abs=3.0)


def test_black_image_is_nan_and_grouped_unknown() -> None:
    ita = ita_for_images(np.zeros((2, 20, 20, 3), dtype=np.uint8))
    assert np.isnan(ita).all()
    labels, _ = ita_groups(ita)
    assert labels.tolist() == ["unknown", "unknown"]


def test_batched_equals_one_by_one_and_lists_of_sizes() -> None:
    imgs = np.stack([_skin(30 + 6 * i, 8, 12 + i, seed=i) for i in range(9)])
    batched = ita_for_images(imgs)
    single = np.array([ita_of_image(x) for x in imgs])
    np.testing.assert_array_equal(batched, single)
    mixed = [imgs[0], imgs[1][:40, :50], imgs[2][:, :33]]
    np.testing.assert_allclose(ita_for_images(mixed), [ita_of_image(x) for x in mixed])


def test_bad_images_and_ring_rejected() -> None:
    with pytest.raises(DataError, match="uint8"):
        ita_for_images(np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(DataError, match=r"\(N, H, W, 3\)"):
        ita_for_images(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="ring"):
        ring_mask(10, 10, 0.7)


def test_ring_mask_shape() -> None:
    m = ring_mask(10, 20, 0.2)
    assert m[0].all() and m[:, 0].all() and not m[5, 10]
    assert m.sum() == 10 * 20 - (10 - 4) * (20 - 4)


def test_synthetic_sample_recorded_ita_is_recovered() -> None:
    records = load_synthetic(SyntheticOptions(n=120, image_size=64, seed=3))
    imgs = np.stack([np.asarray(records.read_image(i)) for i in range(len(records))])
    measured = ita_for_images(imgs)
    truth = records.frame["ita"].to_numpy()
    assert spearmanr(measured, truth).statistic > 0.95
    assert np.median(np.abs(measured - truth)) < 5.0


# --- groups ---------------------------------------------------------------------------------


def test_binary28_groups_at_the_paper_cut() -> None:
    labels, record = ita_groups([28.0001, 28.0, -10.0, 80.0, np.nan])
    assert labels.tolist() == ["light", "dark", "dark", "light", "unknown"]
    assert record["cut_points"] == [28.0] and record["scheme"] == "binary28"


def test_chardon6_bands_and_boundaries() -> None:
    values = [56, 55, 42, 41, 29, 28, 11, 10, -29, -30, -60]
    labels, record = ita_groups(values, "chardon6")
    assert labels.tolist() == [
        "very_light",
        "light",
        "light",
        "intermediate",
        "intermediate",
        "tan",
        "tan",
        "brown",
        "brown",
        "dark",
        "dark",
    ]
    assert record["cut_points"] == [-30.0, 10.0, 28.0, 41.0, 55.0]


def test_custom_cut_points_recorded_and_checked() -> None:
    labels, record = ita_groups([19.0, 21.0], "binary28", cut_points=[20])
    assert labels.tolist() == ["dark", "light"] and record["cut_points"] == [20.0]
    with pytest.raises(ConfigError, match="needs 5 cut_points"):
        ita_groups([1.0], "chardon6", cut_points=[0, 1])
    with pytest.raises(ConfigError, match="strictly increasing"):
        ita_groups([1.0], "chardon6", cut_points=[0, 1, 1, 2, 3])
    with pytest.raises(ConfigError, match="unknown ITA group scheme"):
        ita_groups([1.0], "six")


# --- real clinical photographs --------------------------------------------------------------


@pytest.mark.realdata
def test_ita_falls_with_fitzpatrick_type_on_fitzpatrick17k(shared_data) -> None:
    root = shared_data / "fitzpatrick17k"
    df = pd.read_csv(root / "fitzpatrick17k_subset.csv")
    df = df[df["fitzpatrick_scale"].between(1, 6)].sort_values("md5hash")
    df = df.groupby("fitzpatrick_scale").head(50)  # up to 50 per type, deterministic
    imgs = [np.asarray(Image.open(root / "images" / f"{h}.jpg").convert("RGB")) for h in df["md5hash"]]
    ita = ita_for_images(imgs)
    assert np.isfinite(ita).all()
    rho = spearmanr(ita, df["fitzpatrick_scale"]).statistic
    # measured -0.45 on all 1,376 typed images and -0.53 on this subset; the bound leaves margin
    assert rho < -0.3
    means = pd.Series(ita).groupby(df["fitzpatrick_scale"].to_numpy()).mean()
    assert means[1] > means[3] > means[5]


def test_a_lesion_mask_replaces_the_ring_with_the_skin_outside_the_lesion() -> None:
    """A lesion touching the border fills most of the ring; the ring rule then measures the lesion,
    the mask measures the skin."""
    skin = _skin(70, 8, 16)
    lesion = _skin(30, 12, 10, seed=1)
    mask = np.zeros(skin.shape[:2], dtype=bool)
    mask[:, :56] = True  # the left 70% of the image, across the border ring
    img = np.where(mask[..., None], lesion, skin)
    assert abs(ita_of_image(img) - _truth(70, 16)) > 10.0
    assert ita_of_image(img, lesion_mask=mask) == pytest.approx(_truth(70, 16), abs=1.0)
    batch = ita_for_images(np.stack([img, img]), lesion_masks=np.stack([mask, mask]))
    assert batch == pytest.approx([_truth(70, 16)] * 2, abs=1.0)
    with pytest.raises(DataError, match=r"lesion masks must have shape \(2, 60, 80\)"):
        ita_for_images(np.stack([img, img]), lesion_masks=mask[None])


def test_the_ring_measures_as_a_lesion_mask_of_everything_inside_it() -> None:
    """Only the ring's pixels are converted on the ring path; the ITA is the general path's, where
    the 'lesion' is the ring's inside, to the last bit."""
    rng = np.random.default_rng(3)
    skins = [_skin(40 + 8 * i, 6 + i, 10 + 2 * i, seed=i) for i in range(4)]
    imgs = np.stack(skins)
    imgs[:, 20:40, 25:55] = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)  # a lesion inside
    inside = np.broadcast_to(~ring_mask(*imgs.shape[1:3], 0.2), imgs.shape[:3])
    ring = ita_for_images(imgs, ring=0.2)
    assert np.isfinite(ring).all()
    assert np.array_equal(ring, ita_for_images(imgs, lesion_masks=inside))
