"""``minispike.process``: freed arrays are reused without page faults, idle BLAS threads give their
core back, and each setting has its opt-out (each probe runs in a fresh interpreter)."""
import os
import subprocess
import sys

import pytest

from minispike import process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and OpenBLAS threads: Linux")

FAULTS = """
import resource
import minispike
import numpy as np
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(40 * 2**20 // 4, dtype=np.float32); del a   # 40 MiB: above glibc's largest mmap threshold
before = faults()
for _ in range(5):
    a = np.ones(40 * 2**20 // 4, dtype=np.float32); del a
print(minispike.process.state()["malloc"], "|", faults() - before)
"""

SPIN = """
import resource, time
{first}
import numpy as np
import minispike
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
a = np.ones((384, 384), dtype=np.float32)
for _ in range(20):
    a @ a
t0 = cpu()
time.sleep(0.06)   # the main thread sleeps: any CPU time now is a BLAS thread spinning
print(minispike.process.state()["blas"], "|", cpu() - t0)
"""


def _probe(code, **env):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}  # nothing else: no OPENBLAS_* from outside
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    state, value = out.rsplit("|", 1)
    return state.strip(), float(value)


def test_freed_arrays_are_reused_without_page_faults():
    state, faults = _probe(FAULTS, MINISPIKE_KEEP_MEMORY="1")
    off_state, off_faults = _probe(FAULTS, MINISPIKE_KEEP_MEMORY="0")
    assert state == "applied" and off_state == "MINISPIKE_KEEP_MEMORY=0"
    # 5 x 40 MiB: ~51,000 pages fault back in when each array is mmapped afresh, next to none when reused
    assert off_faults > 10 * max(faults, 100), (faults, off_faults)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS runs no worker thread to spin")
def test_idle_blas_threads_sleep_instead_of_spinning():
    state, short = _probe(SPIN.format(first="import minispike"))
    default_state, spun = _probe(SPIN.format(first=""), OPENBLAS_THREAD_TIMEOUT="28")  # OpenBLAS's own default
    assert state == "OPENBLAS_THREAD_TIMEOUT=16" and default_state == "OPENBLAS_THREAD_TIMEOUT=28 (given)"
    # by default a worker spins through the 60 ms sleep (about 0.1 s at 2.4 GHz); set short, it sleeps
    assert spun > 0.015 and short < 0.5 * spun, (short, spun)


def test_the_blas_setting_says_when_it_could_not_apply():
    late, _ = _probe(SPIN.format(first="import numpy"))
    assert late.startswith("NumPy was imported before minispike")
    off, _ = _probe(SPIN.format(first="import minispike"), MINISPIKE_BLAS_SPIN="0")
    assert off == "MINISPIKE_BLAS_SPIN=0"


def test_applied_once_in_this_process():
    assert process.state()["malloc"] in ("applied", "MINISPIKE_KEEP_MEMORY=0")
    if process.state()["malloc"] == "applied":
        assert process.keep_freed_memory() is True
