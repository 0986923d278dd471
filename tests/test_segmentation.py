"""Lesion segmentation: metrics against hand-computed masks, the mask layouts and their errors,
the composites' exact masks, and the two models for one step on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermbench.errors import ConfigError, DataError
from dermbench.segmentation import masks as M
from dermbench.segmentation.composites import make_composites, skin_background
from dermbench.segmentation.maskrcnn import build_maskrcnn, instances
from dermbench.segmentation.metrics import boundary_f, dice, iou, segmentation_report
from dermbench.segmentation.train import (
    TrainSettings,
    predict_maskrcnn,
    predict_unet,
    train_maskrcnn,
    train_unet,
)
from dermbench.segmentation.unet import UNet


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def test_iou_and_dice_by_hand_including_empty_masks():
    a, b = square(10, 0, 0, 4), square(10, 2, 0, 4)  # 16 px each, overlap 8, union 24
    assert iou(a, b) == pytest.approx(8 / 24) and dice(a, b) == pytest.approx(16 / 32)
    empty = np.zeros((10, 10), dtype=bool)
    assert iou(empty, empty) == dice(empty, empty) == 1.0  # a correct "no lesion"
    assert iou(a, empty) == dice(empty, a) == 0.0
    with pytest.raises(DataError, match="must be 2-d and of one size"):
        iou(a, np.zeros((9, 10)))


def test_boundary_f_tolerates_a_shift_within_its_tolerance_and_not_beyond():
    truth = square(40, 10, 10, 12)
    assert boundary_f(truth, truth) == 1.0
    assert boundary_f(square(40, 11, 11, 12), truth, tolerance=2) == 1.0
    # shifted by 6: of the 44 boundary pixels of each, the parallel sides are 6 px apart; only the
    # 6 pixels of each perpendicular side's run that overlaps the other square's side are near
    far = boundary_f(square(40, 16, 10, 12), truth, tolerance=2)
    assert 0.0 < far < 0.6
    assert boundary_f(np.zeros((40, 40), bool), truth) == 0.0


def test_the_report_gives_means_intervals_and_per_image_values():
    truths = [square(20, 2, 2, 8), square(20, 5, 5, 6), np.zeros((20, 20), bool)]
    preds = [square(20, 2, 2, 8), square(20, 6, 5, 6), np.zeros((20, 20), bool)]
    report = segmentation_report(preds, truths, n_boot=200, seed=1)
    assert report["iou"]["per_image"] == pytest.approx([1.0, 30 / 42, 1.0], abs=1e-6)
    assert report["iou"]["mean"] == pytest.approx((2 + 30 / 42) / 3)
    ci = report["dice"]["ci95"]
    assert ci["low"] <= report["dice"]["mean"] <= ci["high"]
    assert report["empty_truth"] == 1


def write_isic_task1(root: Path, n: int = 3) -> Path:
    (root / "ISIC2018_Task1-2_Training_Input").mkdir(parents=True)
    (root / "ISIC2018_Task1_Training_GroundTruth").mkdir()
    for i in range(n):
        Image.new("RGB", (40, 30), (200, 150, 120)).save(
            root / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{i:07d}.jpg"
        )
        mask = np.zeros((30, 40), np.uint8)
        mask[5:15, 10:20] = 255
        Image.fromarray(mask).save(
            root / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png"
        )
    return root


def test_isic2018_task1_layout_pairs_images_and_masks(tmp_path):
    items = M.isic2018_task1(write_isic_task1(tmp_path / "isic"))
    assert [it.image_id for it in items] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    images, masks = M.load_pairs(items, 32)
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32)
    assert masks[0].sum() == pytest.approx(10 * 10 * (32 / 40) * (32 / 30), rel=0.2)


def write_ham_with_masks(root: Path, lesions: list[str]) -> tuple[Path, Path]:
    """A HAM10000 folder with one image per entry of ``lesions`` (its lesion id) and their masks."""
    (root / "ham" / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for i, lesion in enumerate(lesions):
        Image.new("RGB", (30, 20), (180, 120, 100)).save(root / "ham" / "images" / f"ISIC_{i:07d}.jpg")
        Image.fromarray(np.eye(20, 30, dtype=np.uint8) * 255).save(
            root / "masks" / f"ISIC_{i:07d}_segmentation.png"
        )
        rows.append(f"{lesion},ISIC_{i:07d},nv,histo,40.0,male,back")
    (root / "ham" / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    return root / "ham", root / "masks"


def test_ham10000_masks_pair_with_the_adapters_images(tmp_path):
    items = M.ham10000_masks(
        *write_ham_with_masks(tmp_path, ["HAM_0", "HAM_0"])
    )  # one lesion, two photographs
    assert [it.mask.name for it in items] == [
        "ISIC_0000000_segmentation.png",
        "ISIC_0000001_segmentation.png",
    ]
    # the split keeps a lesion's photographs together, as classification's splits do
    assert [M.group_of(it) for it in items] == ["HAM_0", "HAM_0"]


def test_ham10000_mask_splits_keep_each_lesion_in_one_split(tmp_path):
    from dermbench.data.splits import make_splits
    from dermbench.segmentation.run import SegmentationConfig, load_data

    ham, masks_dir = write_ham_with_masks(tmp_path, [f"HAM_{i // 4}" for i in range(40)])  # 10 lesions x 4
    cfg = SegmentationConfig(masks=f"ham10000={ham},{masks_dir}", image_size=16)
    frame, images, masks, info = load_data(cfg)
    assert info["n"] == 40 and info["n_groups"] == 10
    splits = make_splits(frame, seed=0)
    lesions = {name: set(frame["group"].iloc[idx]) for name, idx in splits.items()}
    assert all(lesions.values())
    assert not (
        lesions["train"] & lesions["val"]
        or lesions["train"] & lesions["test"]
        or lesions["val"] & lesions["test"]
    )


def test_bad_masks_are_one_line_errors_naming_the_file(tmp_path):
    root = write_isic_task1(tmp_path / "isic")
    gt = root / "ISIC2018_Task1_Training_GroundTruth"
    Image.fromarray(np.full((30, 41), 255, np.uint8)).save(gt / "ISIC_0000000_segmentation.png")
    with pytest.raises(
        DataError, match=r"ISIC_0000000_segmentation.png: mask is 41x30 but its image is 40x30"
    ):
        M.load_pairs(M.isic2018_task1(root), 32)
    Image.fromarray(np.arange(1200, dtype=np.uint8).reshape(30, 40)).save(
        gt / "ISIC_0000000_segmentation.png"
    )
    with pytest.raises(
        DataError, match=r"ISIC_0000000_segmentation.png: mask is not binary \(values 0, 1, 2"
    ):
        M.load_pairs(M.isic2018_task1(root), 32)
    (gt / "ISIC_0000001_segmentation.png").unlink()
    with pytest.raises(DataError, match=r"ISIC_0000001.jpg: no mask ISIC_0000001_segmentation.png under"):
        M.isic2018_task1(root)


def photographs(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(150, 230, (90, 120, 3), dtype=np.uint8) for _ in range(n)]


def test_composites_change_exactly_the_pixels_their_masks_mark():
    rng = np.random.default_rng(0)
    sources = photographs()
    images, masks, meta = make_composites(sources, n=6, size=64, seed=3)
    again, _, _ = make_composites(sources, n=6, size=64, seed=3)
    assert np.array_equal(images, again) and meta["synthetic"] and "SYNTHETIC" in meta["what"]
    assert sum(meta["lesions_per_image"][2:]) >= 5  # 2-4 lesions an image, rarely fewer when crowded
    # regenerate the backgrounds from the same stream to compare pixel by pixel
    rng = np.random.default_rng(3)
    j = int(rng.integers(len(sources)))
    background = skin_background(sources[j], 64, rng)
    assert np.array_equal(images[0][~masks[0]], background[~masks[0]])
    assert (np.abs(images[0][masks[0]].astype(int) - background[masks[0]]).sum(axis=1) > 0).mean() > 0.95
    with pytest.raises(ConfigError, match="composites need n >= 1"):
        make_composites(sources, n=0)
    del rng


def test_the_unet_trains_a_step_and_predicts_masks_of_the_input_size():
    images, masks, _ = make_composites(photographs(), n=4, size=48, seed=0)
    model = UNet()
    history = train_unet(model, images, masks, TrainSettings(epochs=1, batch_size=2), progress=False)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    assert predict_unet(model, images).shape == (4, 48, 48)


def test_maskrcnn_trains_its_roi_heads_a_step_and_predicts_masks_of_the_input_size(tmp_path):
    images, masks, _ = make_composites(photographs(), n=2, size=64, seed=1)
    model, info = build_maskrcnn(64)
    assert info["init"] == "random"
    backbone_before = model.backbone.body.conv1.weight.detach().clone()
    history = train_maskrcnn(
        model, images, masks, TrainSettings(epochs=1, batch_size=2, lr=1e-3), progress=False
    )
    assert np.isfinite(history[0]["train_loss"])
    assert torch.equal(model.backbone.body.conv1.weight, backbone_before)  # only roi_heads trained
    assert predict_maskrcnn(model, images).shape == (2, 64, 64)
    weights = tmp_path / "maskrcnn.pt"
    torch.save(model.state_dict(), weights)
    loaded, info = build_maskrcnn(64, str(weights))
    assert info == {"init": str(weights), "skipped": []}
    assert torch.equal(
        loaded.roi_heads.mask_predictor.mask_fcn_logits.weight,
        model.roi_heads.mask_predictor.mask_fcn_logits.weight,
    )
    with pytest.raises(ConfigError, match=r"--init .*nothing.pt: no such weights file"):
        build_maskrcnn(64, str(tmp_path / "nothing.pt"))


def test_instances_are_the_connected_components_with_their_boxes():
    mask = square(20, 1, 1, 4) | square(20, 10, 12, 5)
    target = instances(mask)
    assert target["boxes"].tolist() == [[1, 1, 5, 5], [12, 10, 17, 15]]
    assert target["masks"].shape == (2, 20, 20) and target["labels"].tolist() == [1, 1]


@pytest.mark.realdata
def test_composites_on_real_ham10000_backgrounds(shared_data):
    folder = shared_data / "ham10000" / "images"
    sources = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.jpg"))[:5]]
    images, masks, meta = make_composites(sources, n=8, size=96, seed=0, source_ids=["a", "b", "c", "d", "e"])
    assert images.shape == (8, 96, 96, 3) and 0.03 < masks.mean() < 0.6
    assert set(meta["backgrounds"]) <= {"a", "b", "c", "d", "e"}


def test_dermbench_segment_trains_scores_records_and_shows(tmp_path, capsys):
    from dermbench.cli.main import main

    root = write_isic_task1(tmp_path / "isic", n=24)
    args = ["segment", "--masks", f"isic2018_task1={root}", "--epochs", "1", "--image-size", "32"]
    assert main([*args, "--n-boot", "50", "--out", str(tmp_path / "runs")]) == 0
    (record_path,) = list((tmp_path / "runs").rglob("record.json"))
    record = json_load(record_path)
    assert record["schema"] == "dermbench.segmentation/1" and record["data"]["synthetic"] is False
    assert set(record["metrics"]) == {"val", "test"}
    sizes = {s: v["n"] for s, v in record["data"]["splits"].items()}
    assert sum(sizes.values()) == 24 and record["metrics"]["test"]["n"] == sizes["test"]
    per_image = (record_path.parent / "predictions" / "test.csv").read_text().splitlines()
    assert per_image[0] == "image_id,iou,dice,boundary_f" and len(per_image) == sizes["test"] + 1
    capsys.readouterr()
    assert main(["show", str(record_path.parent)]) == 0
    assert "segmentation unet" in capsys.readouterr().out
    # the leaderboard ranks it on its own page, and verify recomputes its means from the scores
    assert (
        main(["leaderboard", "build", "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "site")])
        == 0
    )
    page = (tmp_path / "site" / "segmentation.html").read_text()
    assert "isic2018_task1" in page and f"{record['metrics']['test']['iou']['mean']:.3f}" in page
    assert 'href="segmentation.html"' in (tmp_path / "site" / "index.html").read_text()
    from dermbench.segmentation.run import verify_segmentation

    assert verify_segmentation(record_path.parent) == []
    record["metrics"]["test"]["iou"]["mean"] += 0.01
    record_path.write_text(json.dumps(record))
    (problem,) = verify_segmentation(record_path.parent)
    assert problem.startswith("test iou: the record says")


def test_dermbench_segment_needs_masks_or_backgrounds_and_a_known_method(tmp_path):
    from dermbench.segmentation.run import SegmentationConfig, run_segmentation

    with pytest.raises(ConfigError, match=r"unknown segmenter 'yolo' \(known: maskrcnn, unet\)"):
        run_segmentation(SegmentationConfig(method="yolo", out=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"--masks 'isic=x': expected isic2018_task1=PATH"):
        run_segmentation(SegmentationConfig(masks="isic=x", out=str(tmp_path)))


def json_load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_plugin_segmenter_runs_through_dermbench_segment(tmp_path):
    """The extension contract: a third party's segmenter is trained, scored and recorded like ours."""
    import types

    from dermbench.components import Component
    from dermbench.hookspecs import hookimpl
    from dermbench.segmentation.run import SegmentationConfig, run_segmentation
    from dermbench.testing import make_plugins

    class Threshold:  # calls dark pixels lesion
        def __init__(self, options, ctx):
            self.model, self.resolved = torch.nn.Identity(), {"rule": "grey < 100"}

        def fit(self, images, masks):
            return [{"epoch": 1, "train_loss": 0.0}]

        def predict(self, images):
            return images.mean(axis=-1) < 100

    @hookimpl
    def dermbench_register_segmenters(register):
        register(Component("dark_pixels", Threshold, "dark pixels are lesion"))

    plugin = ("dark", types.SimpleNamespace(dermbench_register_segmenters=dermbench_register_segmenters))
    root = write_isic_task1(tmp_path / "isic", n=12)
    cfg = SegmentationConfig(method="dark_pixels", masks=f"isic2018_task1={root}", image_size=32, n_boot=20,
                             out=str(tmp_path / "runs"))  # fmt: skip
    record, _ = run_segmentation(cfg, make_plugins(plugin).registries)
    assert record["resolved"] == {"device": "cpu", "rule": "grey < 100"}
    assert record["metrics"]["test"]["iou"]["mean"] == 0.0  # the fixture's lesions are not dark


def test_a_killed_unet_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    images, masks, _ = make_composites(photographs(), n=6, size=32, seed=2)
    straight = UNet()
    train_unet(straight, images, masks, TrainSettings(epochs=2, batch_size=3), progress=False)
    ckpt = tmp_path / "last.pt"
    train_unet(
        UNet(), images, masks, TrainSettings(epochs=1, batch_size=3, checkpoint=str(ckpt)), progress=False
    )
    resumed = UNet()  # "killed" after epoch 1; a new process picks the checkpoint up
    history = train_unet(
        resumed, images, masks, TrainSettings(epochs=2, batch_size=3, checkpoint=str(ckpt)), progress=False
    )
    assert [row["epoch"] for row in history] == [1, 2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_complete_or_killed_segmentation_run_is_not_silently_redone(tmp_path):
    from dermbench.segmentation.run import CHECKPOINT, SegmentationConfig, run_segmentation

    root = write_isic_task1(tmp_path / "isic", n=12)
    cfg = SegmentationConfig(
        masks=f"isic2018_task1={root}", image_size=32, epochs=1, n_boot=10, out=str(tmp_path / "runs")
    )
    _, run_dir = run_segmentation(cfg)
    assert (run_dir / CHECKPOINT).is_file()
    with pytest.raises(ConfigError, match="this run is complete"):
        run_segmentation(cfg)
    (run_dir / "record.json").unlink()  # as if killed before scoring
    with pytest.raises(ConfigError, match="a killed run left its checkpoint: --resume continues it"):
        run_segmentation(cfg)
    record, _ = run_segmentation(cfg, resume=True)
    assert [row["epoch"] for row in record["history"]] == [1]  # resumed: nothing left to train


def test_a_segmentation_sweep_runs_its_grid_summarises_and_continues(tmp_path, capsys):
    from dermbench.cli.main import main

    root = write_isic_task1(tmp_path / "isic", n=12)
    out, summary = tmp_path / "runs", tmp_path / "summary.csv"
    args = ["segment", "--masks", f"isic2018_task1={root}", "--image-size", "32", "--n-boot", "10",
            "--seeds", "0,1", "--grid", "epochs=1,2", "--out", str(out), "--summary-csv", str(summary)]  # fmt: skip
    assert main(args) == 0
    records = sorted(out.rglob("record.json"))
    assert len(records) == 4
    by_epochs: dict[int, list[float]] = {}
    for path in records:
        r = json_load(path)
        by_epochs.setdefault(r["config"]["epochs"], []).append(r["metrics"]["test"]["iou"]["mean"])
    assert sorted(by_epochs) == [1, 2] and all(len(v) == 2 for v in by_epochs.values())
    rows = summary.read_text().splitlines()
    assert rows[0] == "method,setting,seeds,test_iou,test_dice,test_boundary_f"
    one = next(r for r in rows if r.startswith("unet,epochs=1,2,"))
    mean = sum(by_epochs[1]) / 2
    assert one.split(",")[3].startswith(f"{mean:.4f} +- ")
    mtimes = [p.stat().st_mtime_ns for p in records]
    capsys.readouterr()
    assert main(args) == 0  # the same command again: every run is reused, none redone
    assert capsys.readouterr().out.count("already complete") == 4
    assert [p.stat().st_mtime_ns for p in records] == mtimes


def test_a_segmentation_grid_key_must_be_a_setting_or_option_of_the_right_type(tmp_path, capsys):
    from dermbench.cli.main import main

    root = write_isic_task1(tmp_path / "isic", n=12)
    base = ["segment", "--masks", f"isic2018_task1={root}", "--out", str(tmp_path / "runs")]
    for extra, message in [
        (["--grid", "epochs=1,two"], "--grid epochs: 'two' is not an integer"),
        (["--grid", "seed=1,2"], "--grid seed: not a sweepable setting"),
        (["--grid", "epochs"], "--grid 'epochs': expected NAME=VALUE"),
        (["--methods", "unet,yolo"], "unknown segmenter 'yolo'"),
    ]:
        assert main([*base, *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()
