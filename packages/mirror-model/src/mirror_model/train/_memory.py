"""Keep freed memory for reuse during CPU training (glibc's allocator).

glibc serves every allocation above its mmap threshold (32 MB at most) with a fresh ``mmap``
and gives it back with ``munmap`` when freed, so a tensor that large is page-faulted in (and
zeroed by the kernel) anew at every step. Activations grow with the batch, so the cost does
too: at batch 16 of the reference configuration a step made 7.5 million minor page faults
(30 GB of pages) and took 51.5 s; with freed memory kept, 134 thousand faults and 32.9 s
(``benchmarks/bench_pretrain.py``, docs/benchmarks.md). ``M_MMAP_MAX = 0`` serves large
blocks from the heap and ``M_TRIM_THRESHOLD`` at its maximum keeps the heap's free top, so
the next step reuses the same pages.

The price: memory freed during training returns to the operating system only when the
process exits, and fragmentation raised the peak by about a fifth at batch 16. The setting
is process-wide and one-way, made once, by training on the CPU; the environment variable
``MIRROR_CPU_ALLOCATOR=default`` leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV = "MIRROR_CPU_ALLOCATOR"
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_state: dict[str, bool] = {}


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (once per process); True when in effect.

    Returns
    -------
    False where the C library is not glibc, where ``MIRROR_CPU_ALLOCATOR=default`` asks to leave
    it alone, or where ``mallopt`` refused.
    """
    if "done" in _state:
        return _state["done"]
    ok = False
    if os.environ.get(ENV, "retain") != "default" and platform.system() == "Linux" \
            and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) & bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):
            ok = False
    _state["done"] = ok
    return ok
