"""The machine's copy bandwidth, the ceiling an optimizer step is measured against.

Copy bandwidth is 2 * nbytes / time for copying one array into another (bytes read plus
bytes written), measured on arrays far larger than the caches. On the CPU the copy runs
in one thread and in one thread per core (slices of the array copied concurrently; NumPy
releases the GIL while copying); the report uses the faster. On the GPU it is a
device-to-device copy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .devices import Device

CPU_COPY_ELEMENTS = 64 * 2**20  # fp32: 256 MiB source, 256 MiB destination
GPU_COPY_ELEMENTS = 256 * 2**20  # fp32: 1 GiB each


def copy_elements(device: Device) -> int:
    return GPU_COPY_ELEMENTS if device.is_gpu else CPU_COPY_ELEMENTS


def copy_arrays(device: Device):
    """A source and a destination of `copy_elements` fp32, both already touched."""
    n = copy_elements(device)
    source = device.xp.ones(n, dtype=np.float32)
    destination = device.xp.zeros(n, dtype=np.float32)
    return source, destination


class ThreadedCopy:
    """Copies `source` into `destination` as `threads` slices copied concurrently."""

    def __init__(self, source: np.ndarray, destination: np.ndarray, threads: int):
        bounds = np.linspace(0, source.size, threads + 1).astype(int)
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self.source, self.destination = source, destination
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _copy_slice(self, part: slice) -> None:
        np.copyto(self.destination[part], self.source[part])

    def __call__(self) -> None:
        if self.pool is None:
            np.copyto(self.destination, self.source)
        else:
            list(self.pool.map(self._copy_slice, self.slices))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
