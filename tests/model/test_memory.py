"""``retain_freed_memory``: glibc keeps freed large blocks, so the next allocation of the same
size is served without page faults (what made batch-16 steps slow); opt-out by environment."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource
import numpy as np
from mirror_model.train import retain_freed_memory
on = retain_freed_memory()
assert retain_freed_memory() == on  # once per process, same answer
a = np.ones(8 << 20)  # 64 MB: above glibc's largest mmap threshold
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    b = np.ones(8 << 20)
    del b
print(on, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the setting is glibc's")


def _faults(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "MIRROR_CPU_ALLOCATOR"}
    if env_value is not None:
        env["MIRROR_CPU_ALLOCATOR"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    on, faults = out.stdout.split()
    return on == "True", int(faults)


@glibc
def test_freed_blocks_are_reused_without_page_faults():
    on, kept = _faults(None)
    off, default = _faults("default")
    assert on and not off
    assert default > 100  # glibc maps each 64 MB block afresh: its pages fault in again
    assert kept < default / 20  # kept: the same pages are reused


def test_cpu_training_setup_applies_it(monkeypatch):
    from mirror_model.train import _loop

    calls = []
    monkeypatch.setattr(_loop, "retain_freed_memory", lambda: calls.append(1) or True)
    import torch

    from mirror_model.config import TrainConfig
    from mirror_model.train import DistInfo

    _loop._setup(torch.nn.Linear(2, 2), TrainConfig(device="cpu"), None, {}, False, DistInfo())
    assert calls == [1]
