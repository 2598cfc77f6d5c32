"""``minispike.allocator``: glibc keeps freed arrays for the next step; an opt-out leaves malloc alone."""
import subprocess
import sys

import numpy as np
import pytest

from minispike import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")

PROBE = """
import resource, time, numpy as np
import minispike
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(40 * 2**20 // 4, dtype=np.float32); del a   # 40 MiB: above glibc's largest mmap threshold
before = faults()
for _ in range(5):
    a = np.ones(40 * 2**20 // 4, dtype=np.float32); del a
print(minispike.allocator.state(), faults() - before)
"""


def _probe(env_value):
    env = {"PATH": "/usr/bin:/bin", "MINISPIKE_KEEP_MEMORY": env_value}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
    state, faults = out.rsplit(None, 1)
    return state, int(faults)


def test_freed_arrays_are_reused_without_page_faults():
    state, faults = _probe("1")
    off_state, off_faults = _probe("0")
    assert state == "applied" and off_state == "MINISPIKE_KEEP_MEMORY=0"
    # 5 x 40 MiB: ~51,000 pages fault back in when each array is mmapped afresh, next to none when reused
    assert off_faults > 10 * max(faults, 100), (faults, off_faults)


def test_applied_in_this_process_and_idempotent():
    assert allocator.state() in ("applied", "MINISPIKE_KEEP_MEMORY=0")
    if allocator.state() == "applied":
        assert allocator.keep_freed_memory() is True
    np.ones(1)  # malloc still works
