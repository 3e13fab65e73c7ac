"""The CUDA backend with its device replaced by the host, for machines without a GPU.

``EmulatedCudaBackend`` is ``CudaBackend`` with its device primitives swapped:
buffers are NumPy arrays and a launch runs cuda_driver.cu compiled by g++
with cuda_host_emulation.h (blocks one after another; threads in a loop, or
one host thread each for the kernel with barriers). Everything else (the
argument packing, the grids, the device skip flag, the two-pass reduction,
the engine's asynchronous path) is the CUDA backend's own code. It is slow
and exists for tests; it says nothing about CuPy, NVRTC or the GPU's fp16
arithmetic.
"""
import ctypes

import numpy

from fast.backends import abi_header, cpu
from fast.backends.cuda import BLOCK, CudaBackend

SOURCES = (abi_header.HEADER, "update_math.h", "element_pipeline.h", "cuda_driver.cu", "cuda_host_emulation.h",
           "cuda_emulator.cpp")
FLAGS = ("-O2", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-march=native",
         "-std=c++20", "-fPIC", "-shared")


def _declare(lib):
    lib.fast_emu_launch.argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 3


#: The emulator library (built on first use into the kernel cache).
library = cpu.LazyLibrary("cudaemu", SOURCES, FLAGS, _declare)


class _Done(object):
    def __init__(self, array):
        self._host = numpy.array(array, copy=True)

    def wait(self):
        return self._host


class EmulatedCudaBackend(cpu.HostMemory, CudaBackend):
    """CudaBackend over host memory and the emulated driver."""

    name = "cuda-emulated"

    def __init__(self):
        self.xp = numpy
        self.device_id = -1
        self._lib = library()

    def _empty_bytes(self, n):
        return numpy.empty(n, dtype=numpy.uint8)

    def _upload(self, device_buffer, host_bytes):
        device_buffer[...] = host_bytes

    def _launch(self, kind, kernel_id, mode, grid, args_buffer, *extra):
        pointers = [self.pointer(x) for x in extra] + [None] * (2 - len(extra))
        code = self._lib.fast_emu_launch(kind, -1 if kernel_id is None else kernel_id,
                                         -1 if mode is None else mode, grid, BLOCK,
                                         self.pointer(args_buffer), *pointers)
        if code != 0:
            raise RuntimeError("emulated kernel {} rejected its arguments (code {})".format(kind, code))

    def start_copy_to_host(self, array):
        return _Done(array)
