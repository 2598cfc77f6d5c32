"""Keep freed memory for the next step: glibc's malloc told not to hand big blocks back to the kernel.

A training step allocates and frees the same large arrays every step (activations, their
gradients: tens of megabytes each). By default glibc serves each allocation above a
threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when it is
freed; the next step's array of the same size then page-faults every page back in, and the
kernel zeroes each page first. On the project's 2-core machine that was 15% of a cpu-preset
student step (376,000 page faults in 5 steps; docs/results.md). Two settings stop it:

    mallopt(M_MMAP_MAX, 0)            no per-array mmap: large arrays come from the heap
    mallopt(M_TRIM_THRESHOLD, 2 GiB)  the heap's free top is kept, not trimmed back

Freed arrays then stay in the process, and the next step's arrays reuse the same pages.
The peak resident memory stays about the same (measured +1%: the pages are reused, not
added); the cost is that the process keeps its peak until it exits, which suits a training
or benchmark process. ``import minispike`` applies it once on Linux with glibc; elsewhere
(macOS, musl) it does nothing. ``MINISPIKE_KEEP_MEMORY=0`` leaves malloc as it is.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory", "state"]

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP = 2**31 - 1  # bytes: the largest trim threshold mallopt takes (an int): 2 GiB of free heap top kept
_state = {"applied": False, "reason": "not tried"}


def keep_freed_memory() -> bool:
    """Apply the two settings (once); True where they took effect. ``state()`` says why not."""
    if _state["applied"]:
        return True
    if os.environ.get("MINISPIKE_KEEP_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        _state["reason"] = "MINISPIKE_KEEP_MEMORY=0"
        return False
    if not sys.platform.startswith("linux"):
        _state["reason"] = f"not Linux ({sys.platform})"
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _state["reason"] = "no glibc mallopt"
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP)):
        _state["reason"] = "mallopt refused"
        return False
    _state.update(applied=True, reason="applied")
    return True


def state() -> str:
    """``"applied"`` or why the settings were not applied."""
    return _state["reason"]
