"""Bad input fails before anything is written, one run per folder, readable files, no fatal record."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dermbench.errors import ConfigError, DataError
from dermbench.testing import run_tiny

FAST = {"epochs": 1, "synthetic_n": 120}


def _folders(tmp_path: Path) -> list[Path]:
    runs = tmp_path / "runs"
    return (
        [p for p in runs.rglob("*") if p.is_dir() and (p / "record.json").exists()] if runs.exists() else []
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimiser.lr": 0.5}, "slot 'optimiser' is not one this run uses .*optimizer"),
        ({"nosuchslot.x": 1}, "slot 'nosuchslot' is not one this run uses"),
        ({"scheduler.step_size": 3}, "slot 'scheduler' is not one this run uses"),  # erm has no scheduler
        ({"data.ham10000.x": 1}, "slot 'data.ham10000' is not one this run uses .*data.synthetic"),
        ({"optimizer.lrr": 1}, "adam: unknown option.s. lrr"),
        ({"stage.batch_transform": "mixup", "batch_transform.alpah": 1}, "unknown option.s. alpah"),
    ],
)
def test_a_misspelt_or_unused_option_slot_fails_before_any_folder(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        run_tiny(tmp_path, options=options, **FAST)
    assert not (tmp_path / "runs").exists()


def test_the_image_size_is_bounded_and_checked_against_memory_before_decoding(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="image_size must be between 16 and 1024 px, got 100000"):
        run_tiny(tmp_path, image_size=100000, **FAST)
    from dermbench.data import prepare

    monkeypatch.setattr(prepare, "available_memory", lambda: 2**20)  # 1 MiB free
    with pytest.raises(ConfigError, match=r"120 images at 64 px need 0.0 GiB decoded, but 0.0 GiB of memory"):
        run_tiny(tmp_path, image_size=64, image_memory="resident", **FAST)
    # mapped images (the default) need the cache's disk instead
    monkeypatch.setattr(prepare.shutil, "disk_usage", lambda p: SimpleNamespace(free=2**20))
    with pytest.raises(
        ConfigError, match=r"120 images at 64 px need up to 0.0 GiB in the image cache .*--cache-dir"
    ):
        run_tiny(tmp_path, image_size=64, **FAST)
    assert _folders(tmp_path) == []
    assert not any(p.is_dir() and p.name.startswith("tiny3-") for p in (tmp_path / "runs").rglob("*"))


def test_a_bad_value_in_a_config_file_fails_even_when_the_cli_sets_it(tmp_path, capsys):
    from dermbench.cli.main import main

    (tmp_path / "bad.toml").write_text('epochs = "ten"\n')
    args = ["run", "--config", str(tmp_path / "bad.toml"), "--epochs", "2", "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    assert "cannot read 'ten' as int" in capsys.readouterr().err


def test_the_record_is_as_readable_as_every_other_file(tmp_path):
    old = os.umask(0o022)
    try:
        record = run_tiny(tmp_path, **FAST)
    finally:
        os.umask(old)
    (path,) = list((tmp_path / "runs").rglob("record.json"))
    assert record["status"] == "complete"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert oct((path.parent / "predictions" / "test.csv").stat().st_mode & 0o777) == oct(0o644)


def test_a_second_identical_run_refuses_while_the_first_holds_the_folder(tmp_path):
    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import run_lock
    from dermbench.testing import TINY_TASK, make_plugins

    cfg = resolve_config(TINY_TASK, make_plugins().registries.methods.get("erm"), {}, _settings(tmp_path))
    with run_lock(cfg), pytest.raises(ConfigError, match="another process is running this run now"):
        run_tiny(tmp_path, **FAST)
    assert run_tiny(tmp_path, **FAST)["status"] == "complete"  # free again once released


def test_a_decode_failure_leaves_no_run_folder(tmp_path):
    from PIL import Image

    rows = []
    for i in range(30):
        Image.new("RGB", (16, 16), (i * 8, 60, 90)).save(tmp_path / f"i{i}.png")
        rows.append({"image": f"i{i}.png", "label": ["common", "rare", "rarest"][i % 3], "group": f"L{i}"})
    (tmp_path / "i4.png").write_bytes(b"not a png")
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="i4.png"):
        run_tiny(tmp_path, data={"manifest": str(tmp_path / "m.csv")}, **FAST)
    runs = tmp_path / "runs"
    assert not [p for p in runs.rglob("*") if p.is_dir() and p.name.startswith("tiny3-erm-")]


def test_one_unreadable_record_is_named_and_skipped_by_the_leaderboard(tmp_path):
    from dermbench.leaderboard.records import load_runs

    run_tiny(tmp_path, **FAST)
    (good,) = list((tmp_path / "runs").rglob("record.json"))
    broken = tmp_path / "runs" / "copy" / "record.json"
    broken.parent.mkdir(parents=True)
    broken.write_text(good.read_text()[:200])  # truncated mid-write by hand
    not_a_record = tmp_path / "runs" / "other" / "record.json"
    not_a_record.parent.mkdir()
    not_a_record.write_text(json.dumps({"schema": "something else"}))
    loaded = load_runs(tmp_path / "runs")
    assert len(loaded.runs) == 1
    reasons = {s.path: s.status for s in loaded.skipped}
    assert reasons[broken].startswith("unreadable:") and "not valid JSON" in reasons[broken]
    assert "not a dermbench run record" in reasons[not_a_record]
    shutil.rmtree(tmp_path / "runs" / "other")


def _settings(tmp_path: Path, **extra) -> dict:
    """The settings ``run_tiny`` uses, for tests that resolve a config themselves."""
    return {"profile": "smoke", "model": "tinycnn", "image_size": 32, "device": "cpu",
            "out": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), **FAST, **extra}  # fmt: skip


def test_pretrain_data_that_no_stage_reads_is_said(tmp_path):
    from PIL import Image

    from dermbench.run.config import resolve_config
    from dermbench.run.pipeline import execute
    from dermbench.testing import TINY_TASK, make_plugins

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"u{i}.png")
    pd.DataFrame({"image": [f"u{i}.png" for i in range(6)], "label": "common"}).to_csv(tmp_path / "u.csv")
    pl = make_plugins()
    cfg = resolve_config(
        TINY_TASK,
        pl.registries.methods.get("erm"),
        {},
        _settings(tmp_path, pretrain_data={"manifest": str(tmp_path / "u.csv")}),
    )
    lines: list[str] = []
    record, _ = execute(cfg, pl, progress=False, log=lines.append)
    assert any("--pretrain-data was given but no stage of method 'erm' used it" in line for line in lines)
    (extra,) = [d for d in record["data"]["datasets"] if d["role"] == "unlabelled-pretraining"]
    assert extra["n_used"] == 6 and extra["removed_held_out"] == 0


# --- a catalogue of bad or unusual images and CSVs --------------------------------------------


def _manifest(tmp_path: Path, n: int = 30, text: str | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"i{i}.png")
        rows.append({"image": f"i{i}.png", "label": ["common", "rare", "rarest"][i % 3], "group": f"L{i}"})
    path = tmp_path / "m.csv"
    if text is None:
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path.write_text(text)
    return path


def _make(mode: str, path: Path) -> np.ndarray:
    """An image of ``mode`` saved at ``path``; the RGB array dermbench must read from it."""
    from PIL import Image

    grey = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    if mode == "I;16":
        Image.fromarray(np.round(grey * 65535).astype(np.uint16)).save(path)
        return np.repeat(np.round(np.round(grey * 65535) / 257)[..., None], 3, 2).astype(np.uint8)
    if mode == "F":
        Image.fromarray(grey.astype(np.float32)).save(path)
        return np.repeat(np.round(grey.astype(np.float32).astype(np.float64) * 255)[..., None], 3, 2).astype(
            np.uint8
        )
    rgb = (np.stack([grey, 1 - grey, grey / 2], 2) * 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        img.putalpha(0)  # fully transparent: the stored colour is kept
        img.save(path)
        return rgb
    if mode == "P":
        pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        pal.save(path)
        return np.asarray(pal.convert("RGB"))
    cmyk = img.convert("CMYK")
    cmyk.save(path)  # TIFF keeps CMYK exactly
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(("mode", "suffix"), [("I;16", ".png"), ("F", ".tif"), ("RGBA", ".png"), ("P", ".png"),
                                              ("CMYK", ".tif")])  # fmt: skip
def test_every_image_mode_reads_as_the_rgb_it_shows(tmp_path, mode, suffix):
    from dermbench.data.images import open_rgb

    expected = _make(mode, tmp_path / f"x{suffix}")
    got = np.asarray(open_rgb(tmp_path / f"x{suffix}"))
    assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    if mode == "I;16":
        assert 120 < got.mean() < 135  # scaled, not clipped to white


def test_a_float_image_outside_0_1_and_a_decompression_bomb_are_named(tmp_path, monkeypatch):
    from PIL import Image

    from dermbench.data.images import open_rgb

    Image.fromarray(np.full((8, 8), 3.0, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f.tif: floating-point image with values outside \[0, 1\]"):
        open_rgb(tmp_path / "f.tif")
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is then more than twice the limit
    with pytest.raises(DataError, match=r"bomb.png: cannot decode image \(DecompressionBombError"):
        open_rgb(tmp_path / "bomb.png")


def test_a_csv_with_a_bom_reads_and_a_semicolon_csv_is_explained(tmp_path):
    path = _manifest(tmp_path)
    text = path.read_text()
    path.write_text("\ufeff" + text, encoding="utf-8")
    assert run_tiny(tmp_path, data={"manifest": str(path)}, **FAST)["status"] == "complete"
    semi = tmp_path / "semi.csv"
    semi.write_text(text.replace(",", ";"))
    with pytest.raises(DataError, match=r"semi.csv: missing column\(s\) image, label .*semicolon-separated"):
        run_tiny(tmp_path, data={"manifest": str(semi)}, **FAST)


def test_a_manifest_path_that_leaves_its_folder_is_refused(tmp_path):
    path = _manifest(tmp_path)
    df = pd.read_csv(path)
    df.loc[3, "image"] = "../../etc/passwd"
    df.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"m.csv: line 5: image path '../../etc/passwd' leaves the manifest's folder"
    ):
        run_tiny(tmp_path, data={"manifest": str(path)}, **FAST)


def test_nan_metadata_and_a_class_empty_in_a_split_are_named(tmp_path):
    path = _manifest(tmp_path)
    df = pd.read_csv(path)
    df["age"] = ["NaN" if i == 2 else "40" for i in range(len(df))]
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"m.csv: line 4: column 'age' has invalid value 'NaN'"):
        run_tiny(tmp_path, data={"manifest": str(path)}, **FAST)
    df = df.drop(columns="age")
    df.loc[df["label"] == "rarest", "label"] = "common"
    df.loc[5, "label"] = "rarest"  # one image of a class cannot be in every split
    df.to_csv(path, index=False)
    with pytest.raises(ConfigError, match="rarest"):
        run_tiny(tmp_path, data={"manifest": str(path)}, **FAST)


# --- concurrency ---------------------------------------------------------------------------------


def test_eight_runs_into_one_folder_at_once_and_two_identical_ones(tmp_path):
    """Eight different runs at once all end complete and valid; of two identical ones, one trains."""
    import subprocess
    import sys

    from dermbench.run.record import read_record

    base = ["run", "--task", "ham7", "--profile", "smoke", "--model", "tinycnn", "--synthetic-n", "150",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    seeds = [0, 1, 2, 3, 4, 5, 6, 6]  # the last two are identical
    procs = [
        subprocess.Popen([sys.executable, "-m", "dermbench.cli", *base, "--seed", str(s)], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for s in seeds
    ]  # fmt: skip
    errors = [p.communicate(timeout=600)[1] for p in procs]  # closes each pipe
    results = [(p.returncode, err) for p, err in zip(procs, errors, strict=True)]
    for code, err in results[:6]:
        assert code == 0, err
    twins = results[6:]
    assert sorted(code for code, _ in twins) in (
        [0, 0],
        [0, 2],
    )  # the second waits for nothing: reused or refused
    refused = [err for code, err in twins if code == 2]
    assert all("another process is running this run now" in err and "Traceback" not in err for err in refused)
    records = [read_record(p) for p in (tmp_path / "runs").rglob("record.json")]
    assert len(records) == 7 and all(r["status"] == "complete" for r in records)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3, 4, 5, 6]


# --- kill -9 at random points, ten times in a row --------------------------------------------------


def test_ten_kills_at_random_points_then_resume_equal_an_uninterrupted_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from dermbench.run.record import read_record

    def args(out: str) -> list[str]:
        return [sys.executable, "-m", "dermbench.cli", "run", "--task", "ham7", "--profile", "smoke", "--model",
                "tinycnn", "--epochs", "3", "--synthetic-n", "400", "--out", str(tmp_path / out), "--cache-dir",
                str(tmp_path / f"cache-{out}"), "--quiet", "--resume"]  # fmt: skip

    start = time.time()
    subprocess.run(args("whole"), check=True, cwd=tmp_path, capture_output=True)
    whole_seconds = time.time() - start
    rng = np.random.default_rng(0)
    for _ in range(10):  # during start-up, decoding, training, scoring or writing: wherever it falls
        proc = subprocess.Popen(
            args("killed"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(float(rng.uniform(0.3, whole_seconds)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(args("killed"), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (a,) = list((tmp_path / "whole").rglob("record.json"))
    found = list((tmp_path / "killed").rglob("record.json"))
    assert len(found) == 1  # one record, whatever the kills left
    ra, rb = read_record(a), read_record(found[0])
    assert rb["status"] == "complete"
    assert ra["metrics"] == rb["metrics"] and ra["history"] == [
        {**r, "seconds": ra["history"][i]["seconds"]} for i, r in enumerate(rb["history"])
    ]
    for split in ("val", "test"):
        assert (a.parent / "predictions" / f"{split}.csv").read_text() == (
            found[0].parent / "predictions" / f"{split}.csv"
        ).read_text()


def test_an_external_set_without_its_layouts_columns_says_which_columns(tmp_path):
    (tmp_path / "isic").mkdir()
    (tmp_path / "isic" / "truth.csv").write_text("a,b\n1,2\n")
    with pytest.raises(
        DataError, match=r"isic2018.*no file under .* has the columns image, MEL, .* \(truth.csv do not\)"
    ):
        run_tiny(tmp_path, test_data={"isic2018": str(tmp_path / "isic")}, **FAST)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [".locks"]  # no task, method or run folder


def test_a_header_only_metadata_csv_is_named(tmp_path):
    (tmp_path / "ham" / "images").mkdir(parents=True)
    (tmp_path / "ham" / "HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
    )
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: no rows, only a header"):
        run_tiny(tmp_path, task="ham7", data={"ham10000": str(tmp_path / "ham")}, **FAST)
