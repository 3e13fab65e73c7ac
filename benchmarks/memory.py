"""Peak extra memory of one optimizer step, beyond what it holds before the step.

CPU: two measures of one step each. tracemalloc sees every NumPy allocation (NumPy
reports its buffers to it), so its peak is the largest sum of temporaries alive at
once. The resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) also
sees memory allocated outside NumPy, by compiled kernels, but only pages newly touched.
GPU: a CuPy memory hook follows every allocation from and release to the memory pool
during the step and keeps the high-water mark of the bytes in use.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Callable

from .devices import Device


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_peak_extra_bytes(step: Callable[[], None]) -> int | None:
    """Growth of the resident set's peak during `step`, or None where Linux cannot tell."""
    if not _reset_rss_peak():
        return None
    before = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) * 1024


def traced_peak_extra_bytes(step: Callable[[], None]) -> int:
    """Peak of the memory allocated through tracemalloc-aware allocators during `step`."""
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def gpu_pool_peak_extra_bytes(step: Callable[[], None], device: Device) -> int:
    """High-water mark of CuPy memory-pool bytes in use during `step`, above the start."""
    cupy = device.xp

    class PoolHighWater(cupy.cuda.MemoryHook):
        name = "PoolHighWater"

        def __init__(self):
            self.in_use = self.peak = 0

        def malloc_postprocess(self, **kwargs):
            self.in_use += kwargs["mem_size"]
            self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, **kwargs):
            self.in_use -= kwargs["mem_size"]

    device.synchronize()
    hook = PoolHighWater()
    with hook:
        step()
        device.synchronize()
    return hook.peak


def peak_extra_bytes(step: Callable[[], None], device: Device) -> dict:
    """The measures of one step's extra memory that the device supports, in bytes."""
    if device.is_gpu:
        return {"gpu_pool_peak_extra": gpu_pool_peak_extra_bytes(step, device)}
    return {"rss_peak_extra": rss_peak_extra_bytes(step),
            "traced_peak_extra": traced_peak_extra_bytes(step)}
