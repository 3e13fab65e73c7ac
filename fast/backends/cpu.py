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

from fast.backends import abi, abi_header
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


def _declare_exchange(lib):
    lib.fast_convert.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_int64, ctypes.c_double, ctypes.c_int]
    lib.fast_sum_f16.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.fast_pack.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_int]
    for name in ("fast_convert", "fast_sum_f16", "fast_pack", "fast_default_threads"):
        getattr(lib, name).restype = ctypes.c_int


#: The element passes of fast.distributed's exchange buffers (built on first use).
exchange_library = LazyLibrary("fastexchange", (abi_header.HEADER, "exchange.cpp"), FLAGS, _declare_exchange)


def _host_buffer(array):
    """Whether ``array`` is a C-contiguous NumPy array (what the compiled passes take)."""
    return type(array) is numpy.ndarray and array.flags.c_contiguous


def convert_into(dst, src, round_dtype=None, factor=1.0):
    """``dst[...] = cast_dst(round_R(float64(src) * factor))``, R = ``round_dtype`` (by
    default ``dst``'s dtype): a cast with factor 1, and fast.distributed's mean of a block of
    sums with factor 1/N. Host float16/32/64 arrays of one shape, C-contiguous (``dst`` may
    be ``src``); each rounding to nearest even, as NumPy rounds, float64 to float16 in one
    rounding. Runs on ``threads()`` threads. Returns False, having done nothing, for any
    other arrays or where the build lacks F16C or AVX2."""
    round_dtype = dst.dtype if round_dtype is None else numpy.dtype(round_dtype)
    names = [a.name for a in (src.dtype, round_dtype, dst.dtype)]
    if (any(name not in _DTYPE_CODES for name in names) or not (_host_buffer(src) and _host_buffer(dst))
            or src.shape != dst.shape):
        return False
    codes = [_DTYPE_CODES[name] for name in names]
    return exchange_library().fast_convert(*codes, src.ctypes.data, dst.ctypes.data, src.size, float(factor),
                                           threads()) == 0


def pack_into(dst, arrays, sizes):
    """Copy (cast) ``arrays`` (host arrays of one float16/32/64 dtype, C-contiguous, of
    ``sizes`` elements; None: that many zeros) one after another into the start of ``dst`` (a
    C-contiguous host float16/32/64 array), in one compiled call with streaming stores.
    Returns False, having done nothing, for other arrays, sizes that do not match, too few
    elements in ``dst``, or where the build lacks F16C or AVX2."""
    present = [a for a in arrays if a is not None]
    dtypes = {a.dtype for a in present}
    if len(dtypes) > 1 or not _host_buffer(dst) or dst.dtype.name not in _DTYPE_CODES:
        return False
    src_dtype = dtypes.pop() if dtypes else dst.dtype
    if src_dtype.name not in _DTYPE_CODES or not all(_host_buffer(a) for a in present):
        return False
    counts = numpy.array(sizes, dtype=numpy.int64)
    if (len(counts) != len(arrays) or int(counts.sum()) > dst.size
            or any(a is not None and a.size != n for a, n in zip(arrays, sizes))):
        return False
    pointers = numpy.array([0 if a is None else host_address(a) for a in arrays], dtype=numpy.uint64)
    return exchange_library().fast_pack(_DTYPE_CODES[src_dtype.name], _DTYPE_CODES[dst.dtype.name],
                                        pointers.ctypes.data, counts.ctypes.data, len(arrays), dst.ctypes.data,
                                        threads()) == 0


def sum_f16_into(inout, incoming):
    """``inout[...] = incoming + inout`` for host float16 arrays of one size, C-contiguous,
    each sum rounded once to float16 (the float16 nearest the exact sum). Returns False,
    having done nothing, for other arrays or where the build lacks F16C or AVX2."""
    if not (_host_buffer(inout) and _host_buffer(incoming) and inout.dtype == incoming.dtype == numpy.float16
            and inout.size == incoming.size):
        return False
    return exchange_library().fast_sum_f16(incoming.ctypes.data, inout.ctypes.data, inout.size, threads()) == 0


_DTYPE_CODES = {name: abi.dtype_code(name) for _, name in abi.DTYPES}

#: The OpenMP threads of fast's CPU passes (None: OpenMP's default), and who chose them.
_threads = {"count": None, "chosen_by": None}


def set_threads(count, chosen_by="user"):
    """Run fast's CPU passes (the update kernels and the exchange passes) on ``count``
    OpenMP threads from now on; None: OpenMP's default (``OMP_NUM_THREADS``, else every
    core). ``chosen_by`` records who chose ("user", or fast.distributed's "share")."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("the thread count must be a positive int or None, got {!r}".format(count))
    _threads["count"], _threads["chosen_by"] = count, (None if count is None else chosen_by)


def threads():
    """The thread count fast's CPU passes are given (0: OpenMP's default)."""
    return _threads["count"] or 0


def threads_chosen_by():
    """Who set the thread count: "user", "share" (fast.distributed), or None (unset)."""
    return _threads["chosen_by"]


def effective_threads():
    """The threads a large CPU pass runs on now."""
    return _threads["count"] or exchange_library().fast_default_threads()


def _check(code, what):
    if code != 0:
        raise RuntimeError("kernel {} rejected its arguments (code {})".format(what, code))


def staggered_empty(n, dtype, slot, origin=0):
    """An uninitialised 1-D array whose address sits at its own offset within
    a 4 KiB page (slot * 576 bytes past ``origin``'s offset), so that the streams
    of one kernel pass do not all share the same low address bits (4K aliasing
    between the loads and stores of different buffers measured up to 3x slower)."""
    dtype = numpy.dtype(dtype)
    raw = numpy.empty(n * dtype.itemsize + 8192, dtype=numpy.uint8)
    want = (origin + slot * 576) % 4096
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

    def allocate(self, n, dtype, slot, beside=None):
        """``n`` elements of ``dtype``, placed by ``slot`` within a page, relative to the
        array ``beside`` of the same group (one kept elsewhere) where given."""
        return staggered_empty(n, dtype, slot, 0 if beside is None or beside.size == 0 else host_address(beside))

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
        spec.args.threads = threads()
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
