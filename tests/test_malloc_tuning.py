"""engine.runtime.malloc_tuning: after keep_freed_memory(), a large buffer freed and allocated again is not
paged in afresh (page faults counted in a child process, so this test process keeps glibc's defaults)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from engine.runtime.malloc_tuning import keep_freed_memory
applied = keep_freed_memory() if {tune} else False
np.ones(64 << 18, np.float32)  # 64 MiB, once, so the heap has grown
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    block = np.ones(64 << 18, np.float32)
    del block
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(tune: bool, **env: str):
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), tune=tune)], capture_output=True,
                         text=True, env={**os.environ, **env}, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_freed_memory_is_reused_without_page_faults():
    applied, tuned = _page_faults(True)
    _, untuned = _page_faults(False)
    assert applied
    assert untuned >= 100  # glibc's default: each 64 MiB block is a fresh mmap, faulted in again
    assert tuned <= untuned // 20


def test_opt_out_leaves_malloc_alone():
    applied, faults = _page_faults(True, INSTSEG_MALLOC_TUNING="0")
    assert not applied and faults >= 100
