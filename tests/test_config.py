"""Config resolution: defaults < profile < method profile < file < CLI."""

from __future__ import annotations

import pytest

from dermbench.components import Method
from dermbench.errors import ConfigError
from dermbench.plugins import load_plugins
from dermbench.run.config import parse_assignments, read_config_file, resolve_config


@pytest.fixture(scope="module")
def ham7():
    return load_plugins(autoload=False).registries.tasks.get("ham7")


def test_precedence(ham7, tmp_path):
    method = Method(
        "m", "x", profiles={"quick": {"epochs": 7, "lr": 0.5}, "paper": {"epochs": 100, "image_size": 224}}
    )
    cfg = resolve_config(ham7, method)
    assert (cfg.profile, cfg.epochs, cfg.lr, cfg.image_size) == ("quick", 7, 0.5, 64)
    f = tmp_path / "c.toml"
    f.write_text('epochs = 3\nlr = 0.1\n[options.loss]\ngamma = 2.0\n[data]\nham10000 = "/x"\n')
    file_settings = read_config_file(f)
    cfg = resolve_config(ham7, method, file_settings, {"lr": "0.01"})
    assert (cfg.epochs, cfg.lr) == (3, 0.01)
    assert cfg.options == {"loss.gamma": 2.0} and cfg.data == {"ham10000": "/x"}
    paper = resolve_config(ham7, method, {}, {"profile": "paper"})
    assert (paper.epochs, paper.image_size, paper.model) == (100, 224, "resnet50")
    uniform = resolve_config(ham7, method, {}, {"profile": "uniform"})
    assert (uniform.epochs, uniform.init) == (30, "imagenet")


def test_identity_ignores_output_locations(ham7):
    m = Method("m", "x")
    a = resolve_config(ham7, m, {}, {"out": "a", "device": "cpu"})
    b = resolve_config(ham7, m, {}, {"out": "b", "device": "auto"})
    c = resolve_config(ham7, m, {}, {"seed": "1"})
    assert a.run_id == b.run_id != c.run_id


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": "zero"}, "config.epochs: cannot read 'zero' as int"),
        ({"epochs": "0"}, "epochs must be >= 1"),
        ({"bogus": "1"}, "unknown option"),
        ({"select": "best"}, "select must be"),
        ({"profile": "fast"}, "unknown profile 'fast'"),
        ({"options": {"gamma": "1"}}, "expected SLOT.NAME"),
    ],
)
def test_bad_settings_are_named(ham7, settings, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(ham7, Method("m", "x"), {}, settings)


def test_paper_profile_needs_the_method_to_define_one(ham7):
    with pytest.raises(ConfigError, match="defines no 'paper' profile"):
        resolve_config(ham7, Method("m", "x"), {}, {"profile": "paper"})


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [")
    with pytest.raises(ConfigError, match="bad.toml"):
        read_config_file(bad)
    bad.write_text("epoch = 3")
    with pytest.raises(ConfigError, match="unknown setting.*epoch"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_assignments(["ham10000"], "--data")
