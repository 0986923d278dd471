"""The autoencoder gate: PSNR as scikit-image computes it, a threshold set on validation alone, the
store, out-of-distribution sets, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.gate import CORRUPTIONS
from dermbench.gate.autoencoder import ConvAutoencoder, GateOptions, psnr
from dermbench.gate.ood import CORRUPTIONS as DEFINED
from dermbench.gate.ood import corrupt
from dermbench.gate.report import choose_threshold
from dermbench.gate.sharpness import laplacian_variance, sharpness_floor
from dermbench.testing import run_tiny

GATE = {"gate": "autoencoder", "epochs": 1, "synthetic_n": 120, "image_size": 32}
FAST_GATE = {"gate.epochs": 2, "gate.depth": 3, "gate.latent_dim": 32}


def test_psnr_equals_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 16, 16))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    ours = psnr(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    theirs = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x, y, strict=True)]
    assert np.allclose(ours, theirs)


def test_the_autoencoder_reconstructs_the_input_size_and_refuses_a_size_it_cannot_halve():
    model = ConvAutoencoder(32, latent_dim=16, depth=3, channels=8)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(
        ConfigError, match="gate option depth=4: the image size 24 must divide by 2\\^depth = 16"
    ):
        ConvAutoencoder(24, latent_dim=16, depth=4, channels=8)


def test_every_corruption_is_defined_and_keeps_the_images_shape():
    assert tuple(DEFINED) == CORRUPTIONS
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    for name in CORRUPTIONS:
        out = corrupt(images, name)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert not torch.equal(out, images)
    assert corrupt(images, "blank").unique().tolist() == [128]


def test_the_threshold_is_the_papers_or_a_validation_quantile():
    val = np.arange(100.0)
    assert choose_threshold(GateOptions(), val) == (25.0, "fixed")
    t, source = choose_threshold(GateOptions(accept_rate=0.9), val)
    assert t == pytest.approx(np.quantile(val, 0.1)) and "validation" in source
    assert (val > t).mean() == pytest.approx(0.9, abs=0.01)


def test_sharpness_is_the_variance_of_scipys_laplacian_on_the_interior():
    from scipy.ndimage import laplace

    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 12, 10, 3), dtype=np.uint8))
    grey = images.numpy().astype(np.float64).mean(-1) / 255.0
    expected = [laplace(g)[1:-1, 1:-1].var() for g in grey]
    assert np.allclose(laplacian_variance(images), expected)
    assert laplacian_variance(corrupt(images, "blank")).tolist() == [0.0, 0.0, 0.0]


def test_the_sharpness_floor_is_a_validation_quantile_or_off():
    val = np.arange(1.0, 101.0)
    assert sharpness_floor(val, 0.05) == pytest.approx(np.quantile(val, 0.05))
    assert sharpness_floor(val, 0.0) == float("-inf")
    with pytest.raises(ConfigError, match="sharpness_reject_rate must be in \\[0, 1\\), got 1.0"):
        sharpness_floor(val, 1.0)


def test_a_gated_run_records_coverage_accepted_metrics_and_ood_sets_from_validation_alone(tmp_path):
    options = {**FAST_GATE, "gate.accept_rate": 0.8}
    record = run_tiny(tmp_path, options=options, ood_data={"noise": "", "invert": ""}, **GATE)
    gate = record["gate"]
    run_dir = next((tmp_path / "runs").rglob("record.json")).parent
    val = pd.read_csv(run_dir / gate["scores"]["val"])
    test = pd.read_csv(run_dir / gate["scores"]["test"])
    assert gate["threshold_db"] == pytest.approx(np.quantile(val["psnr"], 0.2), rel=1e-5)
    assert gate["threshold_db"] != pytest.approx(np.quantile(test["psnr"], 0.2), rel=1e-5)
    s = gate["splits"]["test"]
    assert s["coverage"] == pytest.approx(test["accepted"].mean()) and s["n"] == len(test)
    # the sharpness floor is set on validation too, and an image passes only both tests
    assert gate["sharpness_floor"] == pytest.approx(np.quantile(val["sharpness"], 0.01), rel=1e-5)
    both = (test["psnr"] > gate["threshold_db"]) & (test["sharpness"] > gate["sharpness_floor"])
    assert (test["accepted"] == both).all()
    assert s["refused_by"]["sharpness"] == pytest.approx(
        (test["sharpness"] <= gate["sharpness_floor"]).mean()
    )
    assert set(s["accepted"]) == {"macro_f1", "accuracy", "balanced_accuracy"}
    assert 0 <= s["selective"]["psnr"]["aurc"] <= 1
    assert gate["ood"]["noise"]["synthetic"] is True and gate["ood"]["noise"]["n"] == len(test)
    assert 0 <= gate["ood"]["invert"]["auroc_psnr_test_vs_ood"] <= 1
    assert gate["trained_by_this_run"] is True
    again = run_tiny(tmp_path, options=options, seed=1, **GATE)  # another seed: the same training split
    assert again["gate"]["key"] == gate["key"] and again["gate"]["trained_by_this_run"] is False


def test_a_stored_gate_for_another_image_size_or_task_is_refused(tmp_path):
    record = run_tiny(tmp_path, options=FAST_GATE, **GATE)
    key = record["gate"]["key"]
    with pytest.raises(
        ConfigError,
        match=f"gate option key='{key}': the stored gate was trained on 32 px images, this run's are 64 px",
    ):
        run_tiny(tmp_path, options={**FAST_GATE, "gate.key": key}, **{**GATE, "image_size": 64})
    with pytest.raises(ConfigError, match="the stored gate was trained for task 'tiny3', not 'ham7'"):
        run_tiny(tmp_path, task="ham7", options={**FAST_GATE, "gate.key": key}, **GATE)
    with pytest.raises(ConfigError, match="gate option key='nosuch': no stored gate under"):
        run_tiny(tmp_path, options={**FAST_GATE, "gate.key": "nosuch"}, **GATE)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ood_data": {"noise": ""}}, "--ood-data measures a gate: add --gate autoencoder"),
        ({**GATE, "ood_data": {"smudge": ""}}, "--ood-data 'smudge': no such corruption"),
        ({**GATE, "gate": "vae"}, "--gate must be one of autoencoder, got 'vae'"),
        ({**GATE, "options": {"gate.latent": 3}}, "gate: unknown option.s. latent"),
        ({**GATE, "options": {"gate.accept_rate": 1.5}}, "accept_rate must be in \\[0, 1\\)"),
        (
            {**GATE, "options": {"gate.sharpness_reject_rate": -0.1}},
            "sharpness_reject_rate must be in \\[0, 1\\)",
        ),
    ],
)
def test_bad_gate_settings_are_one_line_errors_before_any_folder(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        run_tiny(tmp_path, **settings)
    assert not list((tmp_path / "runs").rglob("record.json")) if (tmp_path / "runs").exists() else True


def test_an_ood_folder_with_no_images_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.csv").write_text("image,label\n")
    with pytest.raises(Exception, match=str(empty)):
        run_tiny(tmp_path, options=FAST_GATE, ood_data={"manifest": str(empty)}, **GATE)


def test_a_gate_trained_on_real_ham10000_rejects_noise_blank_and_blur_and_accepts_held_out_lesions(
    shared_data, tmp_path
):
    """1,000 HAM10000 images at 32 px, the gate's defaults but 5 epochs, the threshold accepting 95%
    of validation."""
    import os

    ham = tmp_path / "ham"
    ham.mkdir()
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")
    meta.sample(1000, random_state=0).to_csv(ham / "HAM10000_metadata.csv", index=False)
    os.symlink(shared_data / "ham10000" / "images", ham / "images")
    record = run_tiny(
        tmp_path, task="ham7", image_size=32, epochs=1, data={"ham10000": str(ham)},
        gate="autoencoder", options={"gate.epochs": 5, "gate.accept_rate": 0.95},
        ood_data={"noise": "", "blank": "", "blur": "", "fitzpatrick17k": str(shared_data / "fitzpatrick17k")},
    )  # fmt: skip
    gate = record["gate"]
    assert gate["splits"]["test"]["coverage"] > 0.85  # held-out HAM10000 images: most accepted
    assert gate["ood"]["noise"]["rejection_rate"] > 0.95
    # a flat or heavily blurred frame reconstructs well (PSNR alone lets it pass); it has no detail
    assert gate["ood"]["blank"]["rejection_rate"] > 0.95 and gate["ood"]["blur"]["rejection_rate"] > 0.95
    assert gate["ood"]["blank"]["refused_by"]["sharpness"] == 1.0
    # a clinical photograph is less like a dermoscopic image than a held-out dermoscopic one
    assert gate["ood"]["fitzpatrick17k"]["psnr_mean"] < gate["splits"]["test"]["psnr_mean"]
