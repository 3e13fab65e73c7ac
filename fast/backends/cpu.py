"""CPU backend: builds the shared kernel library on first use and calls it.

The library is compiled from fast/kernels/ into a cache directory keyed by a
hash of the kernel sources, the compiler flags, the compiler's version and the
CPU's features (the build uses -march=native). It
is built under a temporary name and renamed into place, so concurrent first
uses never load a half-written file.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import numpy

from fast.backends import abi_header
from fast.backends.abi import StepArgs

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "kernels")
SOURCES = (abi_header.HEADER, "update_math.h", "element_pipeline.h", "cpu_driver.cpp")
# -ffp-contract=off: no fused multiply-add, so every operation rounds as
# NumPy's does and results do not depend on whether the CPU has FMA.
# -fno-trapping-math: nothing here reads floating-point exception flags; it
# lets GCC turn the NaN-propagating selects into vector blends. It changes no
# value (unlike -ffast-math, which is never used).
FLAGS = ("-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
         "-march=native", "-std=c++17", "-fPIC", "-shared")


class KernelBuildError(RuntimeError):
    """The CPU kernels could not be compiled."""


def _compiler():
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise KernelBuildError(
            "fast needs a C++ compiler for its CPU kernels and found none: "
            "install g++ (>= 12, for _Float16) or set CXX")
    return cxx


def _compiler_version(cxx):
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise KernelBuildError("cannot run the C++ compiler {!r}: {}".format(cxx, err)) from err
    return out.stdout


def _cpu_identity():
    """The host CPU's model and feature flags: -march=native output is only
    valid on a CPU with the same features."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [l for l in f if l.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def cache_dir():
    root = os.environ.get("FAST_KERNEL_CACHE")
    if root is None:
        root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build")
        if not os.access(os.path.dirname(root), os.W_OK):
            root = os.path.join(os.path.expanduser("~"), ".cache", "fast-kernels")
    os.makedirs(root, exist_ok=True)
    return root


def built_library(prefix, sources, flags, directory=None):
    """The path of a shared library compiled from ``directory``'s ``sources`` (the last
    one is the translation unit; by default fast's kernels), built into the cache if
    missing. The name hashes the sources, the flags, the compiler's version and the CPU.
    Sources that include abi.h must be built from the header of fast.backends.abi's table
    (abi_header.AbiMismatchError otherwise)."""
    directory = directory or KERNEL_DIR  # read at call time: the mutants redirect KERNEL_DIR
    cxx = _compiler()
    digest = hashlib.sha256()
    for name in sources:
        with open(os.path.join(directory, name), "rb") as f:
            text = f.read()
        if name == abi_header.HEADER:
            abi_header.check_header(text.decode())
        digest.update(name.encode() + b"\0" + text)
    digest.update(" ".join(flags).encode())
    digest.update(_compiler_version(cxx).encode())
    digest.update(_cpu_identity().encode())
    path = os.path.join(cache_dir(), "{}-{}.so".format(prefix, digest.hexdigest()[:20]))
    if not os.path.exists(path):
        compile_shared(cxx, flags, os.path.join(directory, sources[-1]), path)
    return path


def compile_shared(cxx, flags, source, target):
    """Compile ``source`` into the shared library ``target``, atomically: it is built
    under a temporary name and renamed into place."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    cmd = [cxx, *flags, "-o", tmp, source]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise KernelBuildError("compiling {} failed:\n{}\n{}".format(
                os.path.basename(source), " ".join(cmd), res.stderr[-4000:]))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class LazyLibrary(object):
    """A kernel library loaded on first call (``built_library``), its functions declared
    by ``declare(lib)``."""

    def __init__(self, prefix, sources, flags, declare):
        self.prefix, self.sources, self.flags, self.declare = prefix, sources, flags, declare
        self._lock = threading.Lock()
        self._lib = None

    def __call__(self):
        with self._lock:
            if self._lib is None:
                lib = ctypes.CDLL(built_library(self.prefix, self.sources, self.flags))
                self.declare(lib)
                self._lib = lib
            return self._lib


def _declare(lib):
    lib.fast_update.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(StepArgs)]
    for name in ("fast_reduce", "fast_check_finite", "fast_materialize"):
        getattr(lib, name).argtypes = [ctypes.c_int, ctypes.POINTER(StepArgs)]


#: The CPU kernels (built on first use).
library = LazyLibrary("fastkernels", SOURCES, FLAGS, _declare)


def _declare_casts(lib):
    for name in ("fast_cast_f16_to_f32", "fast_cast_f32_to_f16"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        getattr(lib, name).restype = ctypes.c_int


#: float16 <-> float32 casts of host buffers (built on first use).
cast_library = LazyLibrary("fastcasts", ("convert.cpp",), FLAGS, _declare_casts)
_CASTS = {("float16", "float32"): "fast_cast_f16_to_f32", ("float32", "float16"): "fast_cast_f32_to_f16"}


def cast_into(dst, src):
    """``dst[...] = src`` for NumPy arrays of the same shape, one float16 and the other
    float32, both C-contiguous, with F16C on every thread (the same bits as NumPy's cast).
    Returns False, having done nothing, for any other pair or where F16C is missing."""
    name = _CASTS.get((src.dtype.name, dst.dtype.name))
    if (name is None or type(src) is not numpy.ndarray or type(dst) is not numpy.ndarray
            or src.shape != dst.shape or not (src.flags.c_contiguous and dst.flags.c_contiguous)):
        return False
    return getattr(cast_library(), name)(src.ctypes.data, dst.ctypes.data, src.size) == 0


def _check(code, what):
    if code != 0:
        raise RuntimeError("kernel {} rejected its arguments (code {})".format(what, code))


def staggered_empty(n, dtype, slot):
    """An uninitialised 1-D array whose address sits at its own offset within
    a 4 KiB page (slot * 576 bytes), so that the streams of one kernel pass do
    not all share the same low address bits (4K aliasing between the loads and
    stores of different buffers measured up to 3x slower)."""
    dtype = numpy.dtype(dtype)
    raw = numpy.empty(n * dtype.itemsize + 8192, dtype=numpy.uint8)
    want = (slot * 576) % 4096
    shift = (want - raw.ctypes.data) % 4096
    return raw[shift:shift + n * dtype.itemsize].view(dtype)


def host_address(array):
    """The address of a C-contiguous NumPy array's first element. Taking it through
    the buffer protocol costs a quarter of ``array.ctypes.data``, which is kept for
    what the protocol refuses (read-only and size-0 arrays)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


class HostMemory(object):
    """Buffers in host memory (NumPy), as the CPU backend and the CUDA emulator keep them."""

    xp = numpy

    def allocate(self, n, dtype, slot):
        return staggered_empty(n, dtype, slot)

    pointer = staticmethod(host_address)

    @staticmethod
    def to_host(array):
        return array


class CpuBackend(HostMemory):
    """Host memory; the compiled kernels run on the calling thread (and OpenMP)."""

    name = "cpu"
    asynchronous = False
    #: ``reduce`` also fills spec's tensor_nonfinite when it is set (one read for both)
    reduce_checks_finite = True

    @staticmethod
    def _place(spec):
        """The tables stay where they are: the argument block takes their addresses
        (again only after a table was set; a refill keeps the address)."""
        if spec.placed is None:
            for field, table in spec.tables.items():
                setattr(spec.args, field, host_address(table))
            spec.placed = "host"
        return ctypes.byref(spec.args)

    def update(self, kernel_id, mode, spec, skip=None):
        if skip is not None:
            raise ValueError("the CPU backend decides skips on the host")
        _check(library().fast_update(kernel_id, mode, self._place(spec)), "update")

    def reduce(self, mode, spec):
        """Per-tensor sums of squares into spec's tensor_gsq / tensor_psq."""
        _check(library().fast_reduce(mode, self._place(spec)), "reduce")

    def materialize(self, mode, spec):
        _check(library().fast_materialize(mode, self._place(spec)), "materialize")

    def check_finite(self, mode, spec, found=None):
        """Per-tensor non-finite flags into spec's tensor_nonfinite."""
        _check(library().fast_check_finite(mode, self._place(spec)), "check_finite")


CPU = CpuBackend()
