"""The host heap of a training process: large blocks served by ``mmap``, so the heap cannot creep.

glibc's ``malloc`` serves a block at or above its mmap threshold with its own ``mmap`` and hands it
back to the kernel on ``free``. The threshold is dynamic: each time such a block is freed, glibc
raises it to that block's size (up to 32 MiB on 64-bit systems), and from then on blocks of that
size come from the heap. A training loop frees a batch's float images, activations and gradients
of a few MiB to tens of MiB every step while keeping small tensors (the epoch's predictions and
labels) alive between them, and the heap then fragments: freed large blocks are split by small
allocations and the next large request extends the heap instead of reusing them (the pattern in
``tests/test_host_heap.py`` grows it by 80-780 MiB in 40 steps). Measured on
this machine (TinyCNN, 224 px, batch 32, 7,008 HAM10000 training images, one epoch, mapped or
resident images alike): the heap grew by about 17 MiB/s (1.4 GiB after 70 s) and the process's anonymous memory from
1.0 to 3.2 GiB over the 260 s epoch, and
fell back when the epoch ended.

:func:`bound_host_heap` fixes the threshold at :data:`MMAP_THRESHOLD` (``mallopt(M_MMAP_THRESHOLD,
...)``, which also turns the dynamic adjustment off); the measured growth became 0.2 MiB/s, and
``benchmarks/throughput.py`` still put dermbench at or above the in-memory ceiling (which runs
under the same threshold) at 64 px. A threshold the user set in the
environment (``MALLOC_MMAP_THRESHOLD_``, glibc's own variable) is left as it is. On a C library
other than glibc nothing is done. The setting is per process and is made once, when the first
training or prediction loop starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 1 << 20  # bytes: a 224 px batch of 32 uint8 images is 4.6 MiB, as float 18 MiB
ENV = "MALLOC_MMAP_THRESHOLD_"
# DERMBENCH_HOST_HEAP=glibc leaves glibc's dynamic threshold alone. The fixed threshold costs time
# where a model frees many blocks above it every step: EfficientNet-Lite0 at 128 px, batch 32, an
# Adam step on a batch in memory on this 2-core CPU took about 2.1 s with the threshold fixed at
# 1 MiB, 1.35-1.45 s at 16-32 MiB and 1.1-1.3 s under glibc's own policy (each block is a fresh
# mmap whose pages the kernel zeroes: 75% of the CPU time went to the kernel). Memory then grows as
# described above, which a machine with room to spare may prefer to the time.
POLICY_ENV = "DERMBENCH_HOST_HEAP"


@functools.cache
def bound_host_heap() -> dict:
    """Fix glibc's mmap threshold for this process, once; what was set, for the run record."""
    if os.environ.get(ENV):
        return {"mmap_threshold": os.environ[ENV], "set_by": f"the environment ({ENV})"}
    policy = os.environ.get(POLICY_ENV, "").strip()
    if policy == "glibc":
        return {"mmap_threshold": "dynamic", "set_by": f"the environment ({POLICY_ENV}=glibc)"}
    if policy:
        from dermbench.errors import ConfigError

        raise ConfigError(f"{POLICY_ENV}={policy!r}: expected 'glibc' (glibc's own policy), or unset")
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return {"mmap_threshold": None, "set_by": "nothing (not glibc: the C library's own policy)"}
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return {"mmap_threshold": None, "set_by": "nothing (mallopt refused the value)"}
    return {"mmap_threshold": MMAP_THRESHOLD, "set_by": "dermbench (mallopt)"}


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None for another C library (glibc alone has ``gnu_get_libc_version``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
