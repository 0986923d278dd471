"""Dataset chains: source datasets trained on in order, mapped into the task, never a held-out image."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermbench.components import Method, Ref, StageRecipe
from dermbench.data.chain import parse_chain, pixel_hashes
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.testing import make_plugins, run_tiny

CHAIN_METHOD = Method(
    "chain_test",
    "sources in order, then the target",
    stages=(StageRecipe("source", data="chain", sampler=Ref("class_stratified")), StageRecipe("target")),
)
MERGED_METHOD = Method(
    "merged_test", "sources pooled with the target", stages=(StageRecipe("pool", data="merged"),)
)


@hookimpl
def dermbench_register_methods(register):
    for m in (CHAIN_METHOD, MERGED_METHOD):
        register(m)


PLUGIN = [("chain_methods", types.SimpleNamespace(dermbench_register_methods=dermbench_register_methods))]
FAST = {"epochs": 1, "synthetic_n": 120, "batch_size": 16}


def _synthetic_chain(*seeds: int) -> dict:
    """Synthetic sources ``s<seed>`` (the generator under an alias), each from its own seed."""
    options = {}
    for s in seeds:
        options |= {f"data.s{s}.seed": s, f"data.s{s}.n": 60 + 10 * s}
    return {"chain": tuple(f"s{s}:synthetic" for s in seeds), "options": options}


def test_a_chain_of_three_datasets_runs_in_order_on_the_synthetic_sample(tmp_path):
    record = run_tiny(tmp_path, method="chain_test", plugins=PLUGIN, **FAST, **_synthetic_chain(1, 2, 3))
    assert record["status"] == "complete"
    assert [row["stage"] for row in record["history"]] == ["source:s1", "source:s2", "source:s3", "target"]
    assert [row["dataset"] for row in record["history"]] == ["s1", "s2", "s3", "synthetic"]
    sources = [d for d in record["data"]["datasets"] if d["role"] == "chain-source"]
    assert [(d["name"], d["position"], d["n_records"]) for d in sources] == [
        ("s1", 1, 70),
        ("s2", 2, 80),
        ("s3", 3, 90),
    ]
    resolved = {s["stage"]: s for s in record["resolved"]["stages"]}
    for d in sources:  # each stage trained on exactly the images its dataset kept
        assert resolved[f"source:{d['name']}"]["n_train"] == d["n_used"]
        assert resolved[f"source:{d['name']}"]["train_class_counts"] == d["class_counts"]
    assert resolved["target"]["n_train"] == record["data"]["splits"]["train"]["n"]
    from dermbench.cli.textreport import format_record

    shown = format_record(record)
    assert "stages, in order:" in shown and "source:s2" in shown
    assert "images removed, they are validation or test images of the target" in shown


def test_merged_trains_once_on_the_training_split_and_every_source(tmp_path):
    record = run_tiny(tmp_path, method="merged_test", plugins=PLUGIN, **FAST, **_synthetic_chain(5, 6))
    (stage,) = record["resolved"]["stages"]
    used = [d["n_used"] for d in record["data"]["datasets"] if d["role"] == "chain-source"]
    assert stage["n_train"] == record["data"]["splits"]["train"]["n"] + sum(used)
    assert stage["dataset"] == "synthetic+s5+s6"
    assert {row["dataset"] for row in record["history"]} == {"synthetic+s5+s6"}


# --- real data: HAM10000 as the source of Fitzpatrick17k on dermai13 -------------------------------

HAM_TO_DERMAI13 = {
    "nv": "Nev",
    "mel": "MM",
    "bcc": "BCC",
    "df": "Drmfib",
}  # by hand, from the task file's rule
FITZ_TO_DERMAI13 = {
    "seborrheic-keratosis": "SebKer", "actinic-keratosis": "ActKer", "dermatofibroma": "Drmfib",
    "pyogenic-granuloma": "UncNeop", "squamous-cell-carcinoma": "OtMalNeop", "kaposi-sarcoma": "OtMalNeop",
    "mycosis-fungoides": "OtMalNeop", "basal-cell-carcinoma": "BCC", "basal-cell-carcinoma-morpheiform": "BCC",
    "melanoma": "MM", "malignant-melanoma": "MM", "superficial-spreading-melanoma-ssm": "MM",
}  # fmt: skip


def _ham_subset(shared: Path, tmp_path: Path, n: int) -> tuple[Path, pd.DataFrame]:
    """The first ``n`` rows of the real HAM10000 metadata beside a link to its images."""
    folder = tmp_path / "ham_subset"
    folder.mkdir()
    meta = pd.read_csv(shared / "ham10000" / "HAM10000_metadata.csv").head(n)
    meta.to_csv(folder / "HAM10000_metadata.csv", index=False)
    os.symlink(shared / "ham10000" / "images", folder / "images")
    return folder, meta


def test_stage_order_and_label_counts_equal_counts_made_by_hand_from_the_csvs(shared_data, tmp_path):
    ham, meta = _ham_subset(shared_data, tmp_path, 300)
    fitz = pd.read_csv(shared_data / "fitzpatrick17k" / "fitzpatrick17k_subset.csv")
    record = run_tiny(
        tmp_path, method="chain_test", plugins=PLUGIN, task="dermai13", image_size=16, epochs=1, batch_size=16,
        data={"fitzpatrick17k": str(shared_data / "fitzpatrick17k")}, chain=(f"ham10000={ham}",),
        allow_empty_classes=True,
    )  # fmt: skip
    assert [r["stage"] for r in record["resolved"]["stages"]] == ["source:ham10000", "target"]
    source = next(d for d in record["data"]["datasets"] if d["role"] == "chain-source")
    by_hand = meta["dx"].map(HAM_TO_DERMAI13).value_counts().to_dict()
    assert {c: n for c, n in source["class_counts"].items() if n} == by_hand
    assert (
        source["dropped_unmapped"]
        == meta.loc[~meta["dx"].isin(HAM_TO_DERMAI13), "dx"].value_counts().to_dict()
    )
    assert source["removed_held_out"] == {"by_id": 0, "by_pixels": 0}
    assert record["resolved"]["stages"][0]["train_class_counts"] == source["class_counts"]
    target_by_hand = fitz["label"].map(FITZ_TO_DERMAI13).value_counts().to_dict()
    splits = record["data"]["splits"]
    total = {c: sum(splits[s]["class_counts"][c] for s in ("train", "val", "test")) for c in target_by_hand}
    assert total == target_by_hand
    assert record["resolved"]["stages"][1]["train_class_counts"] == splits["train"]["class_counts"]


def test_dermai13_drops_the_mixed_ham10000_classes_and_counts_them(shared_data):
    from dermbench.data.tasking import apply_task

    reg = make_plugins().registries
    records = reg.datasets.build("ham10000", {}, str(shared_data / "ham10000"))
    frame, dropped = apply_task(records, reg.tasks.get("dermai13"))
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")
    assert dropped == {dx: int((meta["dx"] == dx).sum()) for dx in ("akiec", "bkl", "vasc")}
    classes = reg.tasks.get("dermai13").classes
    got = pd.Series([classes[i] for i in frame["y"]]).value_counts().to_dict()
    assert got == meta["dx"].map(HAM_TO_DERMAI13).value_counts().to_dict()


# --- no held-out image in a source, by id or by pixels ---------------------------------------------


def _write_manifest(folder: Path, images: list[np.ndarray], labels: list[str], ids: list[str]) -> None:
    folder.mkdir(parents=True)
    rows = []
    for img, label, image_id in zip(images, labels, ids, strict=True):
        name = f"{image_id.replace('/', '_')}-{len(rows)}.png"
        Image.fromarray(img).save(folder / name)
        rows.append({"image": name, "image_id": image_id, "label": label})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)


def test_no_target_validation_or_test_image_is_in_any_source_stage(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["common", "rare", "rarest"]
    target_imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(90)]
    target_labels = [classes[i % 3] for i in range(90)]
    target_ids = [f"t{i}" for i in range(90)]
    _write_manifest(tmp_path / "target", target_imgs, target_labels, target_ids)
    # the source: 30 copies of target photographs under new names, 30 new images that reuse target
    # ids, 30 new images with new ids
    src_imgs = target_imgs[:30] + [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(60)]
    src_ids = [f"copy{i}" for i in range(30)] + target_ids[30:60] + [f"new{i}" for i in range(30)]
    _write_manifest(tmp_path / "source", src_imgs, target_labels, src_ids)

    from dermbench.data.prepare import prepare_data
    from dermbench.run.config import resolve_config

    pl = make_plugins(*PLUGIN)
    reg = pl.registries
    cfg = resolve_config(
        reg.tasks.get("tiny3"), reg.methods.get("chain_test"), {},
        {"profile": "smoke", "image_size": 16, "cache_dir": str(tmp_path / "cache"),
         "data": {"manifest": str(tmp_path / "target")}, "chain": (f"pub:manifest={tmp_path / 'source'}",)},
    )  # fmt: skip
    data = prepare_data(cfg, reg.tasks.get("tiny3"), reg, progress=False)
    (source,) = data.sources
    held = [s for name, s in data.splits.items() if name != "train"]
    held_ids = {i for s in held for i in s.frame["image_id"]}
    held_pixels = {h for s in held for h in pixel_hashes(s.images.numpy())}
    assert not held_ids & {i.removeprefix("pub:") for i in source.frame["image_id"]}
    assert not held_pixels & set(pixel_hashes(source.images.numpy()))
    info = next(d for d in data.info["datasets"] if d["role"] == "chain-source")
    assert info["removed_held_out"]["by_id"] == sum(i in held_ids for i in target_ids[30:60])
    assert info["removed_held_out"]["by_pixels"] == sum(i in held_ids for i in target_ids[:30])
    assert info["removed_held_out"]["by_id"] > 0 and info["removed_held_out"]["by_pixels"] > 0
    assert len(source) == 90 - sum(info["removed_held_out"].values())


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        (("nosuch=/tmp",), "--chain 'nosuch=/tmp': unknown dataset 'nosuch'"),
        (("a:synthetic", "b:synthetic", "a:synthetic"), "dataset 'a' is already in the chain"),
        (("synthetic",), "'synthetic' is the task's own training data"),
        (("ham10000",), "dataset 'ham10000' needs a path"),
        (("=x",), "expected NAME=PATH or ALIAS:ADAPTER=PATH"),
    ],
)
def test_a_bad_chain_is_a_one_line_error_naming_it_before_any_folder(tmp_path, chain, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_tiny(tmp_path, method="chain_test", plugins=PLUGIN, chain=chain, **FAST)
    assert not list((tmp_path / "runs").rglob("record.json")) if (tmp_path / "runs").exists() else True


def test_the_target_named_again_in_the_chain_is_refused(tmp_path):
    target = {"manifest": str(tmp_path)}
    with pytest.raises(ConfigError, match="is the task's own training data"):
        parse_chain((f"manifest={tmp_path}/.",), target)
    assert parse_chain((f"other:manifest={tmp_path}",), target)[0].adapter == "manifest"


def test_a_source_whose_labels_map_to_no_task_class_is_an_error_naming_it(tmp_path):
    options = {"data.s1.label_source": "ham10000_dx", "data.s1.priors": "akiec=1,vasc=1"}
    with pytest.raises(
        ConfigError, match=r"--chain .s1:synthetic.: no image of dataset 's1' maps into task 'dermai13'"
    ):
        run_tiny(tmp_path, method="chain_test", plugins=PLUGIN, task="dermai13", chain=("s1:synthetic",),
                 options=options, allow_empty_classes=True, **FAST)  # fmt: skip


def test_a_chain_method_without_a_chain_says_what_to_name(tmp_path):
    with pytest.raises(ConfigError, match=r"trains on source datasets .* name at least one with --chain"):
        run_tiny(tmp_path, method="chain_test", plugins=PLUGIN, **FAST)


def test_chain_sources_keep_their_options_under_their_own_name(tmp_path):
    with pytest.raises(ConfigError, match="slot 'data.s9' is not one this run uses"):
        run_tiny(
            tmp_path,
            method="chain_test",
            plugins=PLUGIN,
            chain=("s1:synthetic",),
            options={"data.s9.n": 5},
            **FAST,
        )


def test_a_config_file_names_the_chain_as_a_list_in_order(tmp_path):
    from dermbench.run.config import read_config_file, resolve_config

    (tmp_path / "run.toml").write_text(
        'method = "chain_test"\nchain = ["s2:synthetic", "s1:synthetic"]\n\n[options.data.s1]\nseed = 1\n'
    )
    reg = make_plugins(*PLUGIN).registries
    cfg = resolve_config(
        reg.tasks.get("tiny3"), reg.methods.get("chain_test"), read_config_file(tmp_path / "run.toml")
    )
    assert cfg.chain == ("s2:synthetic", "s1:synthetic")
    assert [s.name for s in parse_chain(cfg.chain, {})] == ["s2", "s1"]
    assert cfg.options["data.s1.seed"] == 1
    other = resolve_config(
        reg.tasks.get("tiny3"), reg.methods.get("chain_test"), {"chain": ["s1:synthetic", "s2:synthetic"]}
    )
    assert other.run_id != cfg.run_id  # the order is part of the run's identity


def test_a_sweep_leaves_the_chain_out_of_methods_that_train_on_the_target_alone(tmp_path):
    from dermbench.launch.sweep import SweepRequest, run_sweep

    settings = {"profile": "smoke", "model": "tinycnn", "synthetic_n": 120, "out": str(tmp_path / "runs"),
                "cache_dir": str(tmp_path / "c"), "chain": ("s1:synthetic",), "options": {"data.s1.seed": "1"}}  # fmt: skip
    lines: list[str] = []
    request = SweepRequest(
        tasks=("tiny3",), methods=("chain_test", "erm"), seeds=(0,), settings=settings, quiet=True
    )
    result = run_sweep(request, make_plugins(*PLUGIN), log=lines.append)
    assert result.failures == [] and len(result.records) == 2
    assert [line for line in lines if "--chain" in line] == [
        "--chain does not apply to erm (it trains on the target alone): left out of its runs"
    ]
    by_method = {r["method"]["name"]: r for r in result.records}
    assert by_method["erm"]["config"]["chain"] == []
    assert [d["role"] for d in by_method["erm"]["data"]["datasets"]] == ["train"]
    assert [d["name"] for d in by_method["chain_test"]["data"]["datasets"]] == ["synthetic", "s1"]


class Killed(Exception):
    pass


def _killer(stage: str, epoch: int) -> tuple[str, types.SimpleNamespace]:
    @hookimpl
    def dermbench_epoch_end(record, row):
        if row["stage"] == stage and row["epoch"] == epoch:
            raise Killed

    return ("killer", types.SimpleNamespace(dermbench_epoch_end=dermbench_epoch_end))


@pytest.mark.parametrize(("stage", "epoch"), [("source:s2", 2), ("target", 1)])
def test_a_chain_run_killed_in_any_stage_resumes_to_the_uninterrupted_result(tmp_path, stage, epoch):
    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import execute

    settings = {**FAST, **_synthetic_chain(1, 2), "model": "resnet18", "image_size": 16, "epochs": 2,
                "options": {**_synthetic_chain(1, 2)["options"], "stage.unfreeze_every": 1}}  # fmt: skip
    whole = run_tiny(tmp_path / "whole", method="chain_test", plugins=PLUGIN, **settings)
    with pytest.raises(Killed):
        run_tiny(tmp_path / "cut", method="chain_test", plugins=[*PLUGIN, _killer(stage, epoch)], **settings)
    pl = make_plugins(*PLUGIN)
    cfg = resolve_config(
        pl.registries.tasks.get("tiny3"), pl.registries.methods.get("chain_test"), {},
        {**settings, "profile": "smoke", "model": "resnet18", "device": "cpu",
         "out": str(tmp_path / "cut" / "runs"), "cache_dir": str(tmp_path / "cut" / "cache")},
    )  # fmt: skip
    resumed, _ = execute(cfg, pl, resume=True, progress=False, log=lambda *a: None)
    keys = ("stage", "epoch", "dataset", "trainable_blocks", "val_loss")
    assert [{k: r.get(k) for k in keys} for r in resumed["history"]] == [
        {k: r.get(k) for k in keys} for r in whole["history"]
    ]
    assert resumed["metrics"]["test"] == whole["metrics"]["test"]
    assert [s["stage"] for s in resumed["resolved"]["stages"]] == ["source:s1", "source:s2", "target"]
