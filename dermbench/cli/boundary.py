"""The CLI's one error boundary: what a user's input or machine can cause is one line, a bug of
dermbench is a traceback with a request to report it.

- dermbench's own errors: ``ConfigError`` and ``DataError`` (bad input) exit 2, ``TrainingError``
  and ``PluginError`` (a run or a plugin that failed) exit 1;
- the operating system's (a path that is missing, a folder, unreadable or unwritable, a full
  disk): one line naming the path, exit 2 for a path the user named wrongly, 1 for the machine;
- a library's refusal of a value (``ValueError``/``TypeError`` raised inside torch, numpy, ...,
  e.g. torch's optimiser checks): one line naming the library, exit 2;
- memory exhausted: one line saying what to lower, exit 1;
- an interrupt: what was written is kept, exit 130.

``--debug`` anywhere on the command line (or ``DERMBENCH_DEBUG=1``) lets every exception through
with its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from dermbench.errors import ConfigError, DataError, DermbenchError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "DERMBENCH_DEBUG"
PACKAGE = Path(__file__).resolve().parents[1]
USER_PATH_ERRORS = (
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENAMETOOLONG,
)
REPORT = "this is a bug of dermbench: please report it with the traceback above (rerun with --debug to see it in full)"


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether debugging is on (the flag or the environment)."""
    args = list(argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    return [a for a in args if a != DEBUG_FLAG], debug


def _say(message: str) -> None:
    print(f"dermbench: error: {' '.join(str(message).split())}", file=sys.stderr)


def _os_error(exc: OSError) -> int:
    where = f" {exc.filename}" if exc.filename else ""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        _say(f"no space left on the device writing{where}: free space or choose another --out / --cache-dir")
        return 1
    _say(f"{reason}:{where}" if where else reason)
    return 2 if exc.errno in USER_PATH_ERRORS else 1


def _raised_in_a_library(exc: BaseException) -> str | None:
    """The installed library whose code raised ``exc`` (its innermost frame, in site-packages and
    not dermbench's), or None: then the exception is dermbench's own bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    parts = Path(frames[-1].filename).resolve().parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("site-packages", "dist-packages"):
            top = parts[i + 1].removesuffix(".py")
            return None if top.startswith("dermbench") else top
    return None


def guarded(action: Callable[[], int], debug: bool) -> int:
    """``action()``, every exception it lets out turned into an exit code and at most one line."""
    if debug:
        return action()
    try:
        return action()
    except (ConfigError, DataError) as exc:
        _say(str(exc))
        return 2
    except DermbenchError as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        print("dermbench: interrupted; what was written is kept (continue with --resume)", file=sys.stderr)
        return 130
    except MemoryError:
        _say("out of memory: lower --batch-size or --image-size, or use --image-memory mapped")
        return 1
    except OSError as exc:
        return _os_error(exc)
    except Exception as exc:
        library = (
            _raised_in_a_library(exc) if isinstance(exc, ValueError | TypeError | RuntimeError) else None
        )
        if library is None:
            traceback.print_exc()
            print(f"dermbench: {REPORT}", file=sys.stderr)
            return 1
        if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
            _say(f"{library}: out of memory: lower --batch-size or --image-size")
            return 1
        _say(f"{library} refused a value: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 2
