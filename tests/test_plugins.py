"""The plugin system: registration, duplicates, broken plugins, entry points, env vars."""

from __future__ import annotations

import types
from dataclasses import dataclass
from importlib import metadata

import pytest

from dermbench.components import KINDS, Component, Method
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.plugins import load_plugins


def plugin(**hooks):
    """An inline plugin: a namespace of hook implementations."""
    ns = types.SimpleNamespace(__name__="inline")
    for name, fn in hooks.items():
        setattr(ns, name, _impl(fn, name))
    return ns


def _impl(fn, name):
    def wrapper(register):
        return fn(register)

    wrapper.__name__ = name
    return hookimpl(wrapper)


@dataclass(frozen=True)
class GammaOptions:
    gamma: float = 2.0
    name: str = "x"
    on: bool = False


def _loss(name):
    return lambda register: register(Component(name, lambda o, ctx: o, "a loss", options=GammaOptions))


def test_builtins_register_every_core_kind():
    reg = load_plugins(autoload=False).registries
    for kind, name in [
        ("tasks", "ham7"),
        ("losses", "ce"),
        ("optimizers", "adam"),
        ("schedulers", "cosine"),
        ("stages", "supervised"),
        ("methods", "erm"),
        ("models", "tinycnn"),
    ]:
        assert name in reg.of(kind), (kind, name)
    assert set(KINDS) >= {"datasets", "posthoc", "predictors", "explainers", "metrics", "samplers"}


def test_inline_plugin_registers_with_its_name_and_typed_options():
    pl = load_plugins(extra=[("mine", plugin(dermbench_register_losses=_loss("myloss")))], autoload=False)
    comp = pl.registries.losses.get("myloss")
    assert comp.plugin == "mine"
    opts = comp.make_options({"gamma": "0.5", "on": "true"})
    assert opts == GammaOptions(gamma=0.5, name="x", on=True)
    with pytest.raises(ConfigError, match="unknown option.*gama.*known: gamma, name, on"):
        comp.make_options({"gama": "1"})
    with pytest.raises(ConfigError, match="myloss.gamma: cannot read 'abc' as float"):
        comp.make_options({"gamma": "abc"})


def test_register_takes_a_list_and_a_duplicate_inside_it_is_refused():
    def several(register):
        register([Component(n, lambda o, ctx: o, "a loss", options=GammaOptions) for n in ("l1", "l2")])

    pl = load_plugins(extra=[("many", plugin(dermbench_register_losses=several))], autoload=False)
    assert {"l1", "l2"} <= set(pl.registries.losses.names()) and not pl.failures

    def twice(register):
        register([Component("l3", lambda o, ctx: o, "a loss", options=GammaOptions)] * 2)

    pl = load_plugins(extra=[("twice", plugin(dermbench_register_losses=twice))], autoload=False)
    assert "l3" not in pl.registries.losses.names() and "'l3' is registered twice" in pl.failures[0].error


def test_duplicate_name_is_refused_naming_both_plugins():
    pl = load_plugins(
        extra=[
            ("first", plugin(dermbench_register_losses=_loss("dup"))),
            ("second", plugin(dermbench_register_losses=_loss("dup"))),
        ],
        autoload=False,
    )
    assert pl.registries.losses.get("dup").plugin == "first"
    (failure,) = pl.failures
    assert failure.name == "second"
    assert (
        "'dup' is registered twice" in failure.error
        and "'first'" in failure.error
        and "'second'" in failure.error
    )


def test_duplicate_of_a_builtin_is_refused():
    pl = load_plugins(extra=[("clash", plugin(dermbench_register_losses=_loss("ce")))], autoload=False)
    assert pl.registries.losses.get("ce").plugin == "dermbench.builtin.losses"
    assert "dermbench.builtin.losses" in pl.failures[0].error


def test_plugin_that_raises_is_reported_and_leaves_nothing_half_registered():
    def bad(register):
        register(Component("half", lambda o, c: None, "registered before the crash"))
        raise RuntimeError("boom")

    good = plugin(dermbench_register_losses=_loss("fine"))
    pl = load_plugins(
        extra=[("broken", plugin(dermbench_register_losses=bad)), ("good", good)], autoload=False
    )
    assert [f.name for f in pl.failures] == ["broken"]
    assert "RuntimeError: boom" in pl.failures[0].error
    assert "half" not in pl.registries.losses
    assert "fine" in pl.registries.losses


def test_unknown_name_lists_known_ones():
    reg = load_plugins(autoload=False).registries
    with pytest.raises(ConfigError, match=r"unknown method 'nope' \(known: .*erm"):
        reg.methods.get("nope")


class _FakeDist:
    version = "9.9"


class _FakeEP:
    def __init__(self, name, target):
        self.name, self.value, self.dist, self._target = name, f"fake:{name}", _FakeDist(), target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _fake_entry_points(monkeypatch, eps):
    monkeypatch.setattr("dermbench.plugins.manager._entry_points", lambda: sorted(eps, key=lambda e: e.name))


def test_entry_point_that_fails_to_import_is_reported_by_name(monkeypatch):
    eps = [
        _FakeEP("broken", ImportError("No module named 'missing_dep'")),
        _FakeEP("works", plugin(dermbench_register_methods=lambda r: r(Method("m1", "a method")))),
    ]
    _fake_entry_points(monkeypatch, eps)
    pl = load_plugins(autoload=True)
    assert "m1" in pl.registries.methods
    (failure,) = pl.failures
    assert failure.name == "broken" and "missing_dep" in failure.error
    assert pl.versions()["works"] == "9.9"


def test_env_vars_restrict_entry_point_loading(monkeypatch):
    eps = [
        _FakeEP("a", plugin(dermbench_register_methods=lambda r: r(Method("ma", "a")))),
        _FakeEP("b", plugin(dermbench_register_methods=lambda r: r(Method("mb", "b")))),
    ]
    _fake_entry_points(monkeypatch, eps)
    monkeypatch.setenv("DERMBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = load_plugins().registries
    assert "ma" not in reg.methods and "mb" not in reg.methods
    monkeypatch.setenv("DERMBENCH_LOAD_PLUGINS", "b")
    reg = load_plugins().registries
    assert "mb" in reg.methods and "ma" not in reg.methods
    monkeypatch.delenv("DERMBENCH_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("DERMBENCH_LOAD_PLUGINS", "b,ghost")
    pl = load_plugins()
    assert [f.name for f in pl.failures] == ["ghost"]


def test_first_party_plugins_are_installed_through_the_entry_point_group():
    names = {ep.name for ep in metadata.entry_points(group="dermbench")}
    if not names:
        pytest.skip("no first-party plugin installed (run `make install-test`)")
    pl = load_plugins(autoload=True)
    assert not pl.failures, pl.failures
    sources = {p.name: p.source for p in pl.info}
    assert all(sources[n] == "entry-point" for n in names)


def test_a_misspelt_hook_is_reported_as_that_plugins_failure():
    typo = types.SimpleNamespace(__name__="typo")
    typo.dermbench_register_loss = hookimpl(_loss("never"))  # "losses" is the hook
    pl = load_plugins(extra=[("typo", typo)], autoload=False)
    (failure,) = pl.failures
    assert failure.name == "typo"
    assert (
        "dermbench_register_loss is not a dermbench hook (did you mean dermbench_register_losses?)"
        in failure.error
    )
    assert "never" not in pl.registries.losses


def test_registering_the_wrong_kind_of_object_is_refused():
    wrong = plugin(dermbench_register_methods=_loss("not_a_method"))
    pl = load_plugins(extra=[("wrong", wrong)], autoload=False)
    assert "registered a Component as one of the methods; register a Method" in pl.failures[0].error


def test_a_later_plugin_replaces_a_default():
    other = types.SimpleNamespace(__name__="other")
    other.dermbench_default_component = hookimpl(lambda kind: "focal_default" if kind == "losses" else None)
    pl = load_plugins(extra=[("other", other)], autoload=False)
    assert pl.default("losses") == "focal_default"
    assert pl.default("methods") == "erm"
