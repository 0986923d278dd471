"""No file dermbench reads as weights can run code: a planted pickle in every loading place.

The plant is a ``torch.save``d object whose unpickling calls ``open(marker, "w")``. Loaded the
unsafe way it creates the marker (checked first, so the plant is real); every dermbench loading
place must refuse it with one line naming the file, and the marker must not appear.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.models.weights_io import load_tensors
from dermbench.plugins.contract import ModelContext

ROOT = Path(__file__).resolve().parents[1]


class _Plant:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def planted(tmp_path):
    """(a function writing a planted file at a path, the marker it would create)."""
    marker = tmp_path / "code-ran"

    def plant(path: Path, wrap=lambda p: {"model": p}) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(wrap(_Plant(marker)), path)
        return path

    probe = plant(tmp_path / "probe.pt")
    torch.load(probe, weights_only=False)["model"].close()  # the unsafe way: the plant must really run
    assert marker.exists()
    marker.unlink()
    yield plant, marker
    assert not marker.exists(), "a planted checkpoint ran its code"


def _refused(exc_info, path: Path) -> None:
    text = str(exc_info.value)
    assert "\n" not in text and str(path) in text and "refused" in text
    assert "weights_only=False" not in text


def test_the_loader_refuses_a_plant_with_one_line(planted, tmp_path):
    plant, marker = planted
    path = plant(tmp_path / "w.pt")
    with pytest.raises(ConfigError) as exc:
        load_tensors(path, "--init")
    _refused(exc, path)


def test_a_plugin_that_widens_torchs_allowlist_does_not_widen_what_dermbench_loads(tmp_path):
    """A package that calls torch.serialization.add_safe_globals([eval]) made weights_only=True
    run a planted eval; the load sets such globals aside, and gives them back after."""
    import builtins

    marker = tmp_path / "code-ran"

    class EvalPlant:
        def __reduce__(self):
            return (builtins.eval, (f"open({str(marker)!r}, 'w').close()",))

    torch.save({"model": EvalPlant()}, tmp_path / "w.pt")
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([builtins.eval])  # what a careless plugin could do
    try:
        torch.load(tmp_path / "w.pt", weights_only=True)  # torch alone: the plant runs
        assert marker.exists()
        marker.unlink()
        for where in ("--init", "checkpoint"):
            with pytest.raises(ConfigError) as exc:
                load_tensors(tmp_path / "w.pt", where)
            _refused(exc, tmp_path / "w.pt")
        assert not marker.exists()
        assert builtins.eval in torch.serialization.get_safe_globals()  # the plugin's list is intact
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def test_corrupt_missing_and_folder_files_are_one_line_each(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip archive")
    text_file = tmp_path / "notes.pt"
    text_file.write_text("hello")
    bad_st = tmp_path / "w.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    for path, words in [
        (corrupt, "corrupt or not a torch weights file"),
        (text_file, "weights file"),
        (bad_st, "corrupt safetensors file"),
        (tmp_path / "absent.pt", "missing"),
        (tmp_path, "a folder"),
    ]:
        with pytest.raises(ConfigError) as exc:
            load_tensors(path, "checkpoint")
        assert words in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_plain_state_dict_and_a_checkpoint_of_plain_values_load(tmp_path):
    path = tmp_path / "last.pt"
    state = {
        "model": {"w": torch.ones(2)},
        "history": [{"epoch": 1, "loss": 0.5}],
        "rng": torch.get_rng_state(),
    }
    torch.save(state, path)
    back = load_tensors(path, "checkpoint")
    assert torch.equal(back["model"]["w"], torch.ones(2)) and back["history"] == state["history"]


def test_init_weights_of_a_timm_model(planted, tmp_path):
    from dermbench.models.build import create_timm_model

    plant, _ = planted
    path = plant(tmp_path / "init.pth", wrap=lambda p: {"conv1.weight": p})
    with pytest.raises(ConfigError) as exc:
        create_timm_model("test_resnet", ModelContext(num_classes=5, image_size=32, init=str(path)))
    _refused(exc, path)


def test_run_checkpoints_last_best_and_final(planted, tmp_path):
    from dermbench.stages.checkpoints import load_state, load_weights

    plant, _ = planted
    for name, load in [("last.pt", load_state), ("best-0.pt", load_weights), ("final.pt", load_weights)]:
        path = plant(tmp_path / "checkpoints" / name)
        with pytest.raises(ConfigError) as exc:
            load(path)
        _refused(exc, path)


def test_stored_encoder_and_gate(planted, tmp_path):
    from dermbench.gate.autoencoder import GateOptions
    from dermbench.gate.fit import MODEL, _load
    from dermbench.models.build import create_timm_model
    from dermbench.stages.encoder_store import ENCODER, load_encoder_into

    plant, _ = planted
    encoder = plant(tmp_path / "enc" / ENCODER, wrap=lambda p: {"conv1.weight": p})
    model = create_timm_model("test_resnet", ModelContext(num_classes=3, image_size=32, init="random"))
    with pytest.raises(ConfigError) as exc:
        load_encoder_into(model, encoder.parent)
    _refused(exc, encoder)
    gate = plant(tmp_path / "gate" / MODEL, wrap=lambda p: {"encoder.0.weight": p})
    with pytest.raises(ConfigError) as exc:
        _load(gate.parent, 32, GateOptions(), torch.device("cpu"))
    _refused(exc, gate)


def test_segmentation_checkpoint_on_resume(planted, tmp_path):
    from dermbench.segmentation.train import TrainSettings, _train

    plant, _ = planted
    ckpt = plant(tmp_path / "seg" / "checkpoint.pt")
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = TrainSettings(epochs=1, checkpoint=str(ckpt))
    with pytest.raises(ConfigError) as exc:
        _train(model, opt, lambda m, idx: m(torch.ones(len(idx), 2)).sum(), 4, settings, "seg", False)
    _refused(exc, ckpt)


def test_mask_rcnn_init(planted, tmp_path):
    from dermbench.segmentation.maskrcnn import build_maskrcnn

    plant, _ = planted
    path = plant(tmp_path / "maskrcnn.pth")
    with pytest.raises(ConfigError) as exc:
        build_maskrcnn(64, str(path))
    _refused(exc, path)


def test_the_cli_prints_one_line_for_a_planted_init(planted, tmp_path, capsys):
    from dermbench.cli import main

    plant, _ = planted
    path = plant(tmp_path / "planted.pth", wrap=lambda p: {"conv1.weight": p})
    args = ["run", "--task", "ham7", "--method", "erm", "--model", "test_resnet", "--profile", "smoke"]
    code = main([*args, "--init", str(path), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "refused" in err[0] and str(path) in err[0]


def test_no_other_module_calls_torch_load():
    """Every load goes through ``dermbench.models.weights_io``: a new ``torch.load`` elsewhere fails here."""
    sources = [*ROOT.glob("dermbench/**/*.py"), *ROOT.glob("plugins/*/*/**/*.py"), *ROOT.glob("scripts/*.py")]
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if path.name != "weights_io.py"
        and "/tests/" not in str(path)
        and re.search(r"\btorch\.load\(|\bfrom torch import load\b", path.read_text())
    ]
    assert len(sources) > 50 and offenders == []
