"""Keep freed memory inside the process (glibc on Linux), so training steps reuse warm pages.

glibc's malloc serves large blocks from fresh `mmap`s (above a threshold that adapts up to
32 MiB) and hands memory freed at the top of its heap back to the system once more than a
threshold is free. A training loop frees and re-allocates the same large tensors every step,
so by default it page-faults on every 4 KiB of them again and again: the unrolled local search
of a LeNet-5 population (7 members) took ~12,000 minor faults per meta step, and with the
settings below ~200, which made it 15-20% faster on this project's 2-core machine.

`keep_freed_memory()` raises the mmap threshold to its maximum (32 MiB) and the trim threshold
to 2 GiB. The price: the process keeps up to that much freed memory for reuse instead of
returning it, so its resident size stays near its peak. Set LFL_MALLOC_TUNING=0 to leave
glibc's defaults. Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True if they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("LFL_MALLOC_TUNING", "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
