"""Two process-wide settings that a training step on a small CPU machine needs (``import minispike`` applies them).

**Freed memory stays for the next step** (glibc's malloc). A training step allocates and
frees the same large arrays every step (activations, their gradients: tens of megabytes
each). By default glibc serves each allocation above a threshold (at most 32 MiB) with a
fresh ``mmap`` and gives it back with ``munmap`` when it is freed; the next step's array of
the same size then page-faults every page back in, and the kernel zeroes each page first.
On the project's 2-core machine that was 15% of a cpu-preset student step (376,000 page
faults in 5 steps; docs/results.md). Two settings stop it:

    mallopt(M_MMAP_MAX, 0)            no per-array mmap: large arrays come from the heap
    mallopt(M_TRIM_THRESHOLD, 2 GiB)  the heap's free top is kept, not trimmed back

The peak resident memory stays about the same (the pages are reused, not added); the cost
is that the process keeps its peak until it exits, which suits a training or benchmark
process. On Linux with glibc only; elsewhere (macOS, musl) nothing changes.

**Idle BLAS threads give their core back** (OpenBLAS). After a matrix product OpenBLAS's
worker threads spin, waiting for the next one, for ``2^28`` CPU cycles (about 0.1 s) by
default. A step alternates products with elementwise passes that minispike runs on both
cores (``minispike.parallel``): on two cores the spinning thread takes one of them from
those passes (the teacher's GELU ran 2.4x slower inside the model than alone).
``OPENBLAS_THREAD_TIMEOUT=16`` (``2^16`` cycles, about 30 us: between two products of one
backward the threads still wait awake, after the last one they sleep) fixes it. OpenBLAS
reads the variable once, when NumPy loads it: it is set only where NumPy is not imported yet
(``python -m minispike``, a script that imports minispike first); ``state()`` says whether.
A value already in the environment is kept.

``MINISPIKE_KEEP_MEMORY=0`` / ``MINISPIKE_BLAS_SPIN=0`` leave malloc / OpenBLAS as they are.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["apply", "keep_freed_memory", "short_blas_spin", "state"]

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP = 2**31 - 1  # bytes: the largest trim threshold mallopt takes (an int): 2 GiB of free heap top kept
_state = {"reason": "not tried", "blas": "not tried"}
BLAS_SPIN = "16"  # log2 of the CPU cycles an idle OpenBLAS thread spins before it sleeps (OpenBLAS: 28)


def keep_freed_memory() -> bool:
    """The two malloc settings (once); True where they took effect. ``state()`` says why not."""
    if _state["reason"] == "applied":
        return True
    if _off("MINISPIKE_KEEP_MEMORY"):
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
    _state["reason"] = "applied"
    return True


def short_blas_spin() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` before NumPy loads OpenBLAS; True where it will take effect."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        _state["blas"] = f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']} (given)"
        return True
    if _off("MINISPIKE_BLAS_SPIN"):
        _state["blas"] = "MINISPIKE_BLAS_SPIN=0"
        return False
    if "numpy" in sys.modules:
        _state["blas"] = "NumPy was imported before minispike: OpenBLAS keeps its default spin"
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = BLAS_SPIN
    _state["blas"] = f"OPENBLAS_THREAD_TIMEOUT={BLAS_SPIN}"
    return True


def apply() -> None:
    """Both settings, once (``import minispike`` calls it before it imports NumPy)."""
    short_blas_spin()
    keep_freed_memory()


def state() -> dict:
    """What was applied: ``{"malloc": "applied" or why not, "blas": the setting or why not}``."""
    return {"malloc": _state["reason"], "blas": _state["blas"]}


def _off(variable) -> bool:
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")
