"""The VAE pretraining stage: warm-up, ELBO, decoder geometry, data isolation, store and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.models.vae import build_vae, elbo_terms, kl_weight
from dermbench.stages import pretrain_vae
from dermbench.stages.encoder_store import ENCODER, META
from dermbench.testing import run_tiny

SSL = pytest.importorskip("dermbench_ssl.plugin")
IMBALANCE = pytest.importorskip("dermbench_imbalance.plugin")  # the focal loss
PLUGINS = [("ssl", SSL), ("imbalance", IMBALANCE)]


# --- KL warm-up -----------------------------------------------------------------------------


def test_linear_warm_up_rises_over_the_warm_up_fraction_then_stays():
    total = 100  # warm-up over the first half: 50 steps
    assert [kl_weight(s, total) for s in (0, 10, 25, 49, 50, 99)] == pytest.approx(
        [0.0, 0.2, 0.5, 0.98, 1.0, 1.0]
    )
    assert kl_weight(25, total, warmup_fraction=1.0, beta_max=0.5) == pytest.approx(0.125)


def test_cyclical_warm_up_repeats_per_cycle():
    # 4 cycles of 25 steps; beta rises over the first half (12.5 steps) of each
    values = [
        kl_weight(s, 100, "cyclical", cycles=4, cycle_ratio=0.5) for s in (0, 5, 12, 13, 24, 25, 30, 99)
    ]
    assert values == pytest.approx([0.0, 0.4, 0.96, 1.0, 1.0, 0.0, 0.4, 1.0])
    assert kl_weight(7, 100, "constant", beta_max=0.3) == 0.3
    with pytest.raises(ConfigError, match="kl_schedule"):
        kl_weight(0, 10, "sigmoid")


# --- ELBO and geometry ----------------------------------------------------------------------


def test_elbo_terms_by_hand_on_a_tiny_batch():
    x = torch.tensor([[[[0.0, 1.0]]], [[[0.5, 0.5]]]])  # 2 images of 1x1x2 "pixels"
    x_hat = torch.tensor([[[[0.5, 1.0]]], [[[0.0, 1.0]]]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    recon, kl = elbo_terms(x_hat, x, mu, logvar)
    # image 1: 0.25 + 0; image 2: 0.25 + 0.25 -> mean 0.375
    assert recon.item() == pytest.approx(0.375)
    # KL = -0.5 sum(1 + logvar - mu^2 - exp(logvar)): image 1: -0.5 [(1+0-1-1) + (1+ln2-0-2)]
    kl1 = -0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2) - 0 - 2))
    kl2 = -0.5 * ((1 + 0 - 0 - 1) + (1 + 0 - 4 - 1))
    assert kl.item() == pytest.approx((kl1 + kl2) / 2)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_decoder_output_is_the_input_size(size):
    vae = build_vae("convnext_atto", size, latent_dim=8, max_blocks=1)
    x = torch.rand(2, 3, size, size)
    x_hat, mu, logvar = vae(x, torch.randn(2, 8))
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (2, 8)
    assert 0.0 <= float(x_hat.detach().min()) and float(x_hat.detach().max()) <= 1.0


def test_the_encoder_is_the_classifier_backbone_state_dict():
    import timm

    vae = build_vae("convnext_atto", 32, latent_dim=8, max_blocks=1)
    cls = timm.create_model("convnext_atto", pretrained=False, num_classes=3)
    missing = set(cls.state_dict()) - set(vae.encoder.state_dict())
    assert missing == {"head.fc.weight", "head.fc.bias"}
    assert set(vae.encoder.state_dict()) <= set(cls.state_dict())


def test_bad_encoder_and_image_size_are_one_line_errors():
    with pytest.raises(ConfigError, match="mirrors a ConvNeXt encoder; model 'resnet18' is a ResNet"):
        build_vae("resnet18", 64)
    with pytest.raises(ConfigError, match="image size 40: .* multiples of 32"):
        build_vae("convnext_atto", 40)
    with pytest.raises(ConfigError, match="unknown model"):
        build_vae("convnext_nonesuch", 64)


# --- the stage in a run -----------------------------------------------------------------------


def _run(tmp_path: Path, seed: int = 0, **options) -> dict:
    opts = {"stage.pretrain.epochs": 2, "stage.frozen.epochs": 1, "stage.finetune.epochs": 1, **options}
    return run_tiny(
        tmp_path, method="ssl_vae", plugins=PLUGINS, model="convnext_atto", image_size=32, seed=seed,
        synthetic_n=120, options={"model.head_hidden": 16, "model.head_dropout": 0.5, **opts},
    )  # fmt: skip


def _pretrain(record: dict) -> dict:
    return next(s for s in record["resolved"]["stages"] if s["stage"] == "pretrain")


def test_pretraining_reads_only_training_images_and_is_reused_across_seeds(tmp_path):
    rec = _run(tmp_path, seed=0)
    pre = _pretrain(rec)
    assert pre["trained_by_this_run"] and pre["epochs"] == 2 and pre["sources"] == {"train": pre["n_images"]}
    folder = Path(pre["store"])
    meta = json.loads((folder / META).read_text())
    run_dir = Path(rec["config"]["out"]) / "tiny3" / "ssl_vae" / rec["run_id"]
    ids = {split: set(_ids(run_dir, split)) for split in ("val", "test")}
    used = set(meta["image_ids"])
    assert used and not used & ids["val"] and not used & ids["test"]
    assert len(used) == rec["data"]["splits"]["train"]["n"]
    assert (run_dir / "pretraining" / "loss_curves.png").is_file()
    assert (run_dir / "pretraining" / "reconstructions.png").is_file()
    again = _run(tmp_path, seed=1)  # another training seed: the same encoder, not trained again
    assert (
        _pretrain(again)["encoder_key"] == pre["encoder_key"] and not _pretrain(again)["trained_by_this_run"]
    )
    other = _run(tmp_path, seed=0, **{"stage.pretrain.latent_dim": 32})
    assert _pretrain(other)["encoder_key"] != pre["encoder_key"]


def _ids(run_dir: Path, split: str) -> list[str]:
    import pandas as pd

    return pd.read_csv(run_dir / "predictions" / f"{split}.csv")["image_id"].astype(str).tolist()


def test_the_encoder_reaches_the_classifier(tmp_path):
    rec = _run(tmp_path)
    folder = Path(_pretrain(rec)["store"])
    encoder = torch.load(folder / ENCODER, weights_only=True)
    run_dir = Path(rec["config"]["out"]) / "tiny3" / "ssl_vae" / rec["run_id"]
    final = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["model"]
    frozen_key = "stages.0.blocks.0.conv_dw.weight"  # stage 0 is never unfrozen
    assert torch.equal(final[frozen_key], encoder[frozen_key])


def test_a_killed_pretraining_resumes_to_the_same_encoder(tmp_path, monkeypatch):
    whole = _run(tmp_path / "whole")
    reference = torch.load(Path(_pretrain(whole)["store"]) / ENCODER, weights_only=True)
    real_epoch = pretrain_vae.vae_epoch

    def killed_in_epoch_2(options, ctx, t, data, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return real_epoch(options, ctx, t, data, epoch)

    monkeypatch.setattr(pretrain_vae, "vae_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed")
    stores = list((tmp_path / "killed" / "runs" / "pretrained" / "vae").iterdir())
    assert len(stores) == 1 and (stores[0] / "last.pt").exists() and not (stores[0] / ENCODER).exists()
    monkeypatch.setattr(pretrain_vae, "vae_epoch", real_epoch)
    resumed = _run(tmp_path / "killed")
    assert _pretrain(resumed)["encoder_key"] == _pretrain(whole)["encoder_key"]
    state = torch.load(stores[0] / ENCODER, weights_only=True)
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert not (stores[0] / "last.pt").exists()


def test_bad_pretraining_requests_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no stored vae encoder 'nope' under .* pretrain it first"):
        _run(tmp_path, **{"stage.pretrain.encoder": "nope"})
    with pytest.raises(
        ConfigError, match="pretraining has no images: use_train is off and no --pretrain-data"
    ):
        _run(tmp_path, **{"stage.pretrain.use_train": "false"})
    with pytest.raises(ConfigError, match="has no stage 'pretrian'"):
        _run(tmp_path, **{"stage.pretrian.epochs": 1})
    with pytest.raises(ConfigError, match="unknown option"):
        _run(tmp_path, **{"stage.pretrain.kl_shedule": "linear"})


@pytest.mark.realdata
def test_extra_unlabelled_data_never_holds_a_validation_or_test_lesion(shared_data, tmp_path):
    """``--pretrain-data`` naming the run's own HAM10000: every held-out lesion is removed from it."""
    import pandas as pd

    ham = str(_ham_subset(shared_data / "ham10000", tmp_path / "ham", n=900))
    rec = run_tiny(
        tmp_path, task="triage3", method="ssl_vae", plugins=PLUGINS, model="convnext_atto", image_size=32,
        batch_size=128, data={"ham10000": ham}, pretrain_data={"ham10000": ham},
        options={"stage.pretrain.epochs": 1, "stage.pretrain.decoder_blocks": 1, "stage.frozen.epochs": 1,
                 "stage.finetune.epochs": 1, "model.head_hidden": 16},
    )  # fmt: skip
    splits = rec["data"]["splits"]
    extra = next(d for d in rec["data"]["datasets"] if d["role"] == "unlabelled-pretraining")
    assert extra["removed_held_out"] == splits["val"]["n"] + splits["test"]["n"]
    assert extra["n_used"] == splits["train"]["n"]
    pre = _pretrain(rec)
    assert pre["sources"] == {"train": splits["train"]["n"], "unlabelled:ham10000": splits["train"]["n"]}
    meta = json.loads((Path(pre["store"]) / META).read_text())
    run_dir = Path(rec["config"]["out"]) / "triage3" / "ssl_vae" / rec["run_id"]
    held_out = {i for s in ("val", "test") for i in _ids(run_dir, s)}
    lesion = pd.read_csv(Path(ham) / "HAM10000_metadata.csv").set_index("image_id")["lesion_id"]
    used = {i.removeprefix("ham10000:") for i in meta["image_ids"]}
    assert not used & held_out
    assert not set(lesion.loc[sorted(used)]) & set(lesion.loc[sorted(held_out)])


def _ham_subset(ham: Path, dest: Path, n: int) -> Path:
    """``n`` random rows of the real HAM10000 metadata, with the real images (linked)."""
    import pandas as pd

    dest.mkdir(parents=True)
    pd.read_csv(ham / "HAM10000_metadata.csv").sample(n, random_state=0).to_csv(
        dest / "HAM10000_metadata.csv", index=False
    )
    (dest / "images").symlink_to(ham / "images")
    return dest


def test_a_run_resumed_after_its_pretraining_still_records_the_encoder(tmp_path):
    import types

    from dermbench.hookspecs import hookimpl
    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import execute
    from dermbench.testing import TINY_TASK, make_plugins

    class Killed(Exception):
        pass

    @hookimpl
    def dermbench_epoch_end(record, row):
        if row["stage"] == "frozen" and row["epoch"] == 1:
            raise Killed

    options = {"stage.pretrain.epochs": 1, "stage.frozen.epochs": 2, "stage.finetune.epochs": 1,
               "model.head_hidden": 16}  # fmt: skip
    settings = {"profile": "smoke", "model": "convnext_atto", "image_size": 32, "synthetic_n": 120, "device": "cpu",
                "out": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), "options": options}  # fmt: skip
    killer = types.SimpleNamespace(dermbench_epoch_end=dermbench_epoch_end, __name__="killer")
    pl = make_plugins(*PLUGINS, ("killer", killer))
    cfg = resolve_config(TINY_TASK, pl.registries.methods.get("ssl_vae"), {}, settings)
    with pytest.raises(Killed):
        execute(cfg, pl, progress=False, log=lambda *a: None)
    pl = make_plugins(*PLUGINS)
    record, _ = execute(cfg, pl, resume=True, progress=False, log=lambda *a: None)
    assert record["status"] == "complete"
    assert [s["stage"] for s in record["resolved"]["stages"]] == ["pretrain", "frozen", "finetune"]
    assert record["resolved"]["stages"][0]["encoder_key"]
