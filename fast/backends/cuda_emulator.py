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
import hashlib
import os
import threading

import numpy

from fast.backends import cpu
from fast.backends.cuda import BLOCK, CudaBackend

SOURCES = ("update_math.h", "step_args.h", "element_pipeline.h", "cuda_driver.cu", "cuda_host_emulation.h",
           "cuda_emulator.cpp")
FLAGS = ("-O2", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-march=native",
         "-std=c++20", "-fPIC", "-shared")

_lock = threading.Lock()
_library = None


def library():
    """The emulator library, built on first use into the kernel cache."""
    global _library
    with _lock:
        if _library is None:
            cxx = cpu._compiler()
            digest = hashlib.sha256()
            for name in SOURCES:
                with open(os.path.join(cpu.KERNEL_DIR, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read())
            digest.update(" ".join(FLAGS).encode() + cpu._compiler_version(cxx).encode())
            digest.update(cpu._cpu_identity().encode())
            path = os.path.join(cpu._cache_dir(), "cudaemu-{}.so".format(digest.hexdigest()[:20]))
            if not os.path.exists(path):
                cpu.compile_shared(cxx, FLAGS, os.path.join(cpu.KERNEL_DIR, "cuda_emulator.cpp"), path)
            lib = ctypes.CDLL(path)
            lib.fast_emu_launch.argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 3
            _library = lib
        return _library


class _Done(object):
    def __init__(self, array):
        self._host = numpy.array(array, copy=True)

    def wait(self):
        return self._host


class EmulatedCudaBackend(CudaBackend):
    """CudaBackend over host memory and the emulated driver."""

    name = "cuda-emulated"

    def __init__(self):
        self.xp = numpy
        self.device_id = -1
        self._functions = {}
        self._lib = library()

    def allocate(self, n, dtype, slot):
        return numpy.empty(n, dtype=dtype)

    @staticmethod
    def pointer(array):
        return array.ctypes.data

    @staticmethod
    def to_host(array):
        return array

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
