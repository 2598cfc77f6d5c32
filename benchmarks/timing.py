"""What both benchmarks measure with: the times of repeated calls and the process's peak memory."""
import resource
import sys
import time


def time_calls(fn, warmup, repeats, synchronize=lambda: None):
    """The wall times of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; ``synchronize``
    waits for the device before each timer stops (CuPy runs kernels asynchronously)."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mb():
    """The most resident memory this process has held, in MB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20
