"""Reading weight and checkpoint files: the one place dermbench calls ``torch.load``.

Every file a user, a plugin or another machine can supply (``--init`` weights, ``last.pt`` and the
other checkpoints of a run, stored encoders and gates, segmentation checkpoints, packaged ImageNet
weights) is read here with ``weights_only=True``: tensors, numbers, strings and containers of them,
never arbitrary Python objects, so a planted file cannot run code. ``weights_only=True`` trusts
torch's process-wide allowlist of extra globals, which any imported package (a third-party plugin)
can widen with ``torch.serialization.add_safe_globals``: one that allows ``eval`` lets a planted
file run code through it. So the allowlist is emptied for the load and put back after: dermbench
reads with torch's own safe types alone. A ``.safetensors`` file is read with safetensors. A file that cannot be read is one line naming it, never torch's own multi-page
text (which suggests ``weights_only=False``, the one thing dermbench must not do).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermbench.errors import ConfigError

if TYPE_CHECKING:
    import torch

REFUSED = (
    "refused: it holds Python objects beyond tensors and plain values, and loading those could run "
    "code; dermbench reads only weights (save them with torch.save(model.state_dict(), PATH) or as "
    ".safetensors)"
)


def load_tensors(path: str | Path, what: str, map_location: torch.device | str = "cpu") -> Any:
    """The content of ``path`` (a state dict or a checkpoint of plain values), loaded safely.

    ``what`` names the file's role in the error (``--init``, ``checkpoint``, ``stored encoder``).
    Raises ``ConfigError`` with one line for a missing, unreadable, corrupt or unsafe file.
    """
    import torch  # here, not at import: plugins import this module and stay light until they load

    path = Path(path)
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "missing"
        raise ConfigError(f"{what} {path}: {kind}, expected a weights file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, what, map_location)
    try:
        with torchs_own_safe_types():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _is_unsafe_global(exc):
            raise ConfigError(f"{what} {path}: {REFUSED}") from None
        raise ConfigError(f"{what} {path}: not a torch weights file ({_first_line(exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    except (RuntimeError, EOFError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"{what} {path}: corrupt or not a torch weights file ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


@contextlib.contextmanager
def torchs_own_safe_types() -> Iterator[None]:
    """Within: torch's weights-only unpickler allows its own safe types alone; the globals anything
    in the process added (``add_safe_globals``, ``safe_globals``) are set aside, then restored."""
    import torch.serialization as serialization

    added = serialization.get_safe_globals()
    serialization.clear_safe_globals()
    try:
        yield
    finally:
        serialization.clear_safe_globals()
        serialization.add_safe_globals(added)


def _load_safetensors(path: Path, what: str, map_location: torch.device | str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{what} {path}: corrupt safetensors file ({_first_line(exc)})") from None


def _is_unsafe_global(exc: pickle.UnpicklingError) -> bool:
    """Whether torch refused the file for a global (a class or function) outside its allowlist."""
    text = str(exc)
    return "Weights only load failed" in text and ("GLOBAL" in text or "Unsupported" in text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
