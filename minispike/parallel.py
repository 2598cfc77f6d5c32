"""Both CPU cores for the elementwise half of a step: one op's work split into blocks, one per thread.

The matrix products already run on every core (BLAS threads), but a NumPy ufunc runs on one.
NumPy releases the GIL inside a ufunc over a large array, so threads that run the same chain
of ufuncs on disjoint blocks of an array run at the same time:

    blocks(n)                  [slice(0, a), slice(a, b), ...]          about CACHE_BLOCK elements each
    for_blocks(fn, n, xp)      [fn(block) for block in blocks(n)]      threads take the next block in turn

The blocks are small (2 MiB of float32) because the functions make several passes over
their block (LayerNorm about 8, GELU's erf about 15, LIF a few per time step): the passes
after the first then find much of the block in the cache rather than main memory.

An op that uses it writes its work once, as a function of a block (``fn(rows)``), and calls
``for_blocks``: one block is the plain path (and the reference the tests compare against),
several blocks give the same elementwise results bit for bit (the same operations on the
same numbers) and sums that differ only in the order of addition. NumPy blocks run on the
pool's threads; the strict test backend (which stands in for CuPy) cuts the same blocks and
runs them one after the other on the calling thread, so it checks the block code and gives
NumPy's numbers bit for bit; on CuPy (one kernel already fills the GPU) the function runs
once over everything. A block function takes ``xp`` from its arrays (worker threads do not
see ``backend.use``) and calls ``xp`` functions only.

``MINISPIKE_THREADS`` (default: the CPU count) sets the number of threads; ``threads_scope(1)``
turns the splitting off for a block of code.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["threads", "set_threads", "threads_scope", "blocks", "for_blocks", "MIN_BLOCK"]

MIN_BLOCK = 4096  # elements' worth of rows below which a block is not worth a thread hand-off
CACHE_BLOCK = 1 << 19  # elements (2 MiB of float32) per block: measured best of 2^15, 2^17, 2^19 (docs/results.md)
_config = {"threads": max(1, int(os.environ.get("MINISPIKE_THREADS", os.cpu_count() or 1)))}
_pool: dict = {}
_lock = threading.Lock()
_inside = threading.local()  # a block function that itself calls for_blocks runs its blocks inline
if hasattr(os, "register_at_fork"):  # a forked child has none of the pool's threads: it starts its own
    os.register_at_fork(after_in_child=_pool.clear)


def threads() -> int:
    return _config["threads"]


def set_threads(n: int) -> None:
    if int(n) < 1:
        raise ValueError(f"minispike.parallel: threads must be >= 1, got {n}")
    _config["threads"] = int(n)


@contextlib.contextmanager
def threads_scope(n: int):
    """``with threads_scope(1): ...`` runs every op in one block (the plain path)."""
    old = threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(old)


def blocks(n: int, per_row: int = 1) -> list:
    """``n`` rows cut into contiguous slices of about CACHE_BLOCK elements (at least ``threads()``
    of them, each of at least MIN_BLOCK elements); one slice when ``threads()`` is 1."""
    k = max(1, min(threads(), (n * per_row) // MIN_BLOCK, n))
    if k > 1:
        k = max(k, min(n, -(-n * per_row // CACHE_BLOCK)))
    edges = [n * i // k for i in range(k + 1)]
    return [slice(edges[i], edges[i + 1]) for i in range(k)]


def _executor(k):
    with _lock:
        if _pool.get("size") != k:
            if "executor" in _pool:
                _pool["executor"].shutdown(wait=True)
            _pool["executor"], _pool["size"] = ThreadPoolExecutor(max_workers=k, thread_name_prefix="minispike"), k
        return _pool["executor"]


def for_blocks(fn, n: int, xp, per_row: int = 1) -> list:
    """``[fn(rows) for rows in blocks(n)]``, the blocks on the pool's threads when ``xp`` is NumPy.

    ``per_row``: elements per row (sets how many rows make a block worth a thread)."""
    name = getattr(xp, "__name__", "")
    split = name in ("numpy", "minispike.strict") and not getattr(_inside, "active", False)
    parts = blocks(n, per_row) if split else [slice(0, n)]
    if len(parts) == 1 or name != "numpy":
        return [fn(p) for p in parts]
    results = [None] * len(parts)
    order = itertools.count()  # the next block to take (next() on it is atomic under the GIL)

    def take_blocks():  # this thread and k - 1 pool threads each take the next block until none is left
        _inside.active = True
        try:
            for i in iter(lambda: next(order), None):
                if i >= len(parts):
                    return
                results[i] = fn(parts[i])
        finally:
            _inside.active = False

    k = min(threads(), len(parts))
    helpers = [_executor(k - 1).submit(take_blocks) for _ in range(k - 1)]
    take_blocks()
    for h in helpers:
        h.result()  # waits, and raises what a block raised
    return results
