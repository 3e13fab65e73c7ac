"""The GPU's copy bandwidth, the limit a GPU step is measured against.

Copy bandwidth is 2 * nbytes / time for copying one array into another (bytes read plus
bytes written), measured on arrays far larger than the caches, device to device. (The
CPU's limit is measured with each step's stream mix, benchmarks/limit.py: a one-thread
NumPy copy is no limit for a compiled step on every core, which outruns it.)
"""

from __future__ import annotations

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
