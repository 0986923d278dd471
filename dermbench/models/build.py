"""Models: a registered architecture by name, else any timm backbone, initialised as asked.

``--init imagenet`` loads timm's pretrained weights (from the Hugging Face cache or hub);
``--init PATH`` loads a local weights file (timm/torchvision state dict, ``.pth``/``.bin``/
``.safetensors``); ``--init random`` trains from scratch. With no network and no cached weights,
the error says how to provide a local file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn

from dermbench.errors import ConfigError
from dermbench.models.packaged_weights import load_packaged, missing_message, sha256_of, source_for
from dermbench.models.parts import attach_mlp_head, classifier_module, split_head_options
from dermbench.models.weights_io import load_tensors
from dermbench.plugins.contract import ModelContext


def create_timm_model(
    name: str, ctx: ModelContext, head: tuple[int, float] | None = None, **kwargs: Any
) -> nn.Module:
    """A timm model with ``ctx.num_classes`` outputs, initialised as ``ctx.init`` says; ``head``
    (hidden width, dropout) replaces its linear classifier with an MLP head."""
    model = _create_timm_model(name, ctx, head, kwargs)
    if head is not None and ctx.init in ("random", "imagenet"):
        attach_mlp_head(model, *head)
    return model


def _create_timm_model(name: str, ctx: ModelContext, head: Any, kwargs: dict[str, Any]) -> nn.Module:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ConfigError(f"unknown model {name!r}: not registered and not a timm model{hint}")
    if ctx.init == "random":
        try:
            return timm.create_model(
                name, pretrained=False, num_classes=ctx.num_classes, in_chans=ctx.in_chans, **kwargs
            )
        except TypeError as exc:
            raise ConfigError(f"model {name!r}: bad model option(s) {sorted(kwargs)}: {exc}") from None
    if ctx.init == "imagenet":
        return _imagenet(name, ctx, kwargs)
    return _from_file(name, ctx, head, kwargs)


def _imagenet(name: str, ctx: ModelContext, kwargs: dict[str, Any]) -> nn.Module:
    """ImageNet weights: timm's from the Hugging Face cache or hub first, else a registry package's
    (``dermbench.models.packaged_weights``) when one is installed, else an error saying what to do.
    Either way ``model.pretrained_cfg["weights"]`` says where the weights came from."""
    source = source_for(name)
    hub_error = "not in the Hugging Face cache, and the hub cannot be reached"
    if hub_weights_reachable(name):
        try:
            model = timm.create_model(
                name, pretrained=True, num_classes=ctx.num_classes, in_chans=ctx.in_chans, **kwargs
            )
        except TypeError as exc:
            raise ConfigError(f"model {name!r}: bad model option(s) {sorted(kwargs)}: {exc}") from None
        except Exception as exc:  # offline after all, or no pretrained tag
            hub_error = (
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            )
        else:
            cfg = model.pretrained_cfg
            model.pretrained_cfg = {
                **cfg,
                "weights": {"source": "timm hub", "pretrained_cfg": _cfg_name(cfg)},
            }
            model.dermbench_head_from_weights = ctx.num_classes == cfg.get("num_classes")
            return model
    if source is not None and source.path() is not None and ctx.in_chans == 3:
        model = _create_timm_model(
            name, ModelContext(ctx.num_classes, ctx.image_size, "random"), None, kwargs
        )
        info = load_packaged(model, name, source)
        model.pretrained_cfg = {**model.pretrained_cfg, "weights": info}
        model.dermbench_head_from_weights = False  # the packages' heads are ImageNet's 1000 classes
        return model
    raise ConfigError(f"{missing_message(name, source)} (timm: {hub_error})")


def _cfg_name(cfg: dict[str, Any]) -> str:
    return f"{cfg.get('architecture')}.{cfg.get('tag')}" if cfg.get("tag") else str(cfg.get("architecture"))


def describe_init_weights(model: nn.Module, init: str) -> dict[str, Any]:
    """What the run record says of the weights a model started from (``resolved.init_weights``),
    and how its classifier started (``head``)."""
    if init == "random":
        return {"source": "random"}
    head = {"head": getattr(model, "dermbench_head_init", "the model's own")}
    if getattr(model, "dermbench_head_from_weights", False):
        head = {"head": "from the weights"}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if isinstance(cfg.get("weights"), dict):
        return {**cfg["weights"], **head}
    if init == "imagenet":
        return {"source": "model's own", "pretrained_cfg": _cfg_name(cfg) if cfg else None, **head}
    path = Path(init)
    return {
        "source": "file",
        "file": str(path),
        "sha256": sha256_of(path) if path.is_file() else None,
        **head,
    }


def hub_weights_reachable(name: str, timeout: float = 3.0) -> bool:
    """Whether timm can get ``name``'s pretrained weights: cached, or the hub answers within
    ``timeout`` seconds. Checked first so that an offline machine fails at once, not after the
    hub client's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        return True  # not hosted on the hub: let timm try its own source
    repo = repo.split("@")[0]
    names = (
        getattr(cfg, "hf_hub_filename", None),
        "model.safetensors",
        "pytorch_model.bin",
        "open_clip_pytorch_model.bin",
    )
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in names if f):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_file(name: str, ctx: ModelContext, head: Any, kwargs: dict[str, Any]) -> nn.Module:
    """Load a local weights file, strictly: every backbone weight must be found and fit.

    Only the classifier may be missing or of another shape (a new task has other classes); it is
    then freshly initialised. Anything else is an error, never a silent partial load.
    """
    path = Path(ctx.init)
    if not path.is_file():
        raise ConfigError(f"--init {ctx.init!r}: expected imagenet, random or a weights file that exists")
    model = create_timm_model(
        name, ModelContext(ctx.num_classes, ctx.image_size, "random", ctx.in_chans), head, **kwargs
    )
    state = load_tensors(path, "--init")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    loaded = load_backbone(model, state, f"--init {path}: cannot load these weights into {name!r}")
    model.dermbench_head_from_weights = loaded
    return model


def load_backbone(model: nn.Module, state: dict[str, Any], where: str) -> bool:
    """Load ``state`` into ``model`` strictly: every weight but the classifier's must be found and
    fit. A classifier of another shape (another task's classes, a linear head where the model has
    an MLP) is left out and stays freshly initialised; anything else is an error, never a silent
    partial load. Returns whether the classifier came from ``state``."""
    own = model.state_dict()
    head_keys, prefix = classifier_keys(model)
    state = {
        k: v
        for k, v in state.items()
        if not (k.startswith(prefix) and (k not in own or v.shape != own[k].shape))
    }
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        raise ConfigError(
            f"{where}: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(wrong_shape)} of another shape (e.g. {wrong_shape[:3]})"
        )
    model.load_state_dict(state, strict=False)
    return bool(head_keys) and head_keys <= set(state)


def classifier_keys(model: nn.Module) -> tuple[set[str], str]:
    """The classifier's parameter names and their common prefix (``head.fc.``); none if it has none."""
    if not hasattr(model, "get_classifier"):
        return set(), "\0"
    head = classifier_module(model)
    prefix = next((n + "." for n, m in model.named_modules() if m is head), "\0")
    return {k for k in model.state_dict() if k.startswith(prefix)}, prefix


HEAD_INITS = ("fan_in", "model")


def build_model(
    name: str,
    ctx: ModelContext,
    registry: Any,
    options: dict[str, Any] | None = None,
    head_init: str = "model",
) -> nn.Module:
    """A registered model by name, else a timm model (options go to ``timm.create_model``, e.g.
    drop_rate). ``head_init`` says how a timm model's new classifier starts when the rest comes
    from weights: ``fan_in`` (:func:`reset_new_head`) or ``model`` (the architecture's own init)."""
    if name in registry:
        model = registry.build(name, options or {}, ctx)
        model.dermbench_head_init = "the registered model's own"
        return model
    rest, head = split_head_options(dict(options or {}))
    model = create_timm_model(name, ctx, head, **{k: literal_option(v) for k, v in rest.items()})
    model.dermbench_head_init = "the model's own"
    if head is not None:
        model.dermbench_head_init = "the MLP head's layers: PyTorch's default (fan-in)"
    elif head_init == "fan_in" and getattr(model, "dermbench_head_from_weights", True) is False:
        reset_new_head(model)
    return model


def reset_new_head(model: nn.Module) -> None:
    """Re-draw a new classifier's layers with PyTorch's default for them, scaled by fan-in:
    weights and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the scale of a new head in torchvision's
    and Keras's fine-tuning recipes. Some architectures initialise their classifier for ImageNet's
    1000 classes (timm's EfficientNet and MobileNet: U(+-1/sqrt(fan_out)), std 0.41 for 2 classes
    over 1280 features), which starts a few-class head with logits of size ~10."""
    for m in classifier_module(model).modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            m.reset_parameters()
    model.dermbench_head_init = "fan_in: PyTorch's default, U(+-1/sqrt(fan_in))"


def literal_option(value: Any) -> Any:
    """``--opt model.drop_rate=0.4`` arrives as a string; timm wants the number."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def build_run_model(cfg: Any, task: Any, registries: Any) -> nn.Module:
    """The model a run trains: ``cfg.model`` with ``task``'s classes, initialised as ``cfg.init``."""
    ctx = ModelContext(num_classes=task.num_classes, image_size=cfg.image_size, init=cfg.init)
    head_init = getattr(cfg, "head_init", "model")
    return build_model(cfg.model, ctx, registries.models, cfg.component_options("model"), head_init)
