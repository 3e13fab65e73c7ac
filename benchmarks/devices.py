"""The device a benchmark run measures: the CPU (NumPy) or one CUDA GPU (CuPy)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np


def cpu_core_count() -> int:
    """Cores this process may run on (its CPU affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Device:
    """Where arrays live and how to wait for work on them to finish."""

    kind: str  # "cpu" or "gpu"
    xp: ModuleType  # numpy or cupy
    threads: int  # CPU threads given to every implementation that takes a thread count

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    @property
    def torch_device(self) -> str:
        return "cuda" if self.is_gpu else "cpu"

    def synchronize(self) -> None:
        """Wait until all queued work on the device has finished (a no-op on the CPU)."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def to_device(self, array: np.ndarray):
        """The host array on the device: a GPU copy, or the array itself on the CPU."""
        return self.xp.asarray(array) if self.is_gpu else array


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        return False


def make_device(kind: str, threads: int) -> Device:
    """The Device for `--device` (`cpu` or `gpu`); `gpu` needs CuPy and a CUDA device."""
    if kind == "cpu":
        return Device("cpu", np, threads)
    if kind == "gpu":
        if not gpu_available():
            raise RuntimeError("--device gpu needs CuPy and a CUDA device; none was found")
        import cupy

        return Device("gpu", cupy, threads)
    raise ValueError(f"--device must be 'cpu' or 'gpu', got {kind!r}")
