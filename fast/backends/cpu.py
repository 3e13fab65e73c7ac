"""CPU backend: builds the shared kernel library on first use and calls it.

The library is compiled from fast/kernels/ into a cache directory keyed by a
hash of the kernel sources, the compiler flags and the compiler's version. It
is built under a temporary name and renamed into place, so concurrent first
uses never load a half-written file.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

import numpy

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "kernels")
SOURCES = ("update_math.h", "step_args.h", "cpu_driver.cpp")
# -ffp-contract=off: no fused multiply-add, so every operation rounds as
# NumPy's does and results do not depend on whether the CPU has FMA.
FLAGS = ("-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off",
         "-march=native", "-std=c++17", "-fPIC", "-shared")
MAX_STATE = 3
N_HPARAMS = 12

MODE_FLOAT64, MODE_FLOAT32, MODE_FP16_MASTER, MODE_FP16, MODE_FP16_MASTER_FIXED = range(5)


class KernelBuildError(RuntimeError):
    """The CPU kernels could not be compiled."""


class StepArgs(ctypes.Structure):
    """ctypes mirror of ``FastStepArgs`` in kernels/step_args.h."""
    _fields_ = [
        ("n_tensors", ctypes.c_int64),
        ("n_chunks", ctypes.c_int64),
        ("chunk_tensor", ctypes.c_void_p),
        ("chunk_begin", ctypes.c_void_p),
        ("chunk_end", ctypes.c_void_p),
        ("tensor_offset", ctypes.c_void_p),
        ("tensor_active", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("param", ctypes.c_void_p),
        ("master", ctypes.c_void_p),
        ("state", ctypes.c_void_p * MAX_STATE),
        ("hparams", ctypes.c_void_p),
        ("unscale_divisor", ctypes.c_double),
        ("unscale", ctypes.c_int32),
        ("unscale_first", ctypes.c_int32),
        ("hooks_read_master", ctypes.c_int32),
        ("n_hooks", ctypes.c_int32),
        ("hook_kind", ctypes.c_void_p),
        ("hook_a", ctypes.c_void_p),
        ("hook_b", ctypes.c_void_p),
        ("hook_noise", ctypes.c_void_p),
        ("tensor_gsq", ctypes.c_void_p),
        ("tensor_psq", ctypes.c_void_p),
        ("tensor_nonfinite", ctypes.c_void_p),
        ("grad_out", ctypes.c_void_p),
        ("out_param_dtype", ctypes.c_int32),
    ]


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


def _cache_dir():
    root = os.environ.get("FAST_KERNEL_CACHE")
    if root is None:
        root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build")
        if not os.access(os.path.dirname(root), os.W_OK):
            root = os.path.join(os.path.expanduser("~"), ".cache", "fast-kernels")
    os.makedirs(root, exist_ok=True)
    return root


def library_path():
    """The cache path of the library for the current sources, flags and compiler."""
    cxx = _compiler()
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(KERNEL_DIR, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    digest.update(" ".join(FLAGS).encode())
    digest.update(_compiler_version(cxx).encode())
    return cxx, os.path.join(_cache_dir(), "fastkernels-{}.so".format(digest.hexdigest()[:20]))


def build(cxx, target):
    """Compile the kernels into ``target`` atomically."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    cmd = [cxx, *FLAGS, "-o", tmp, os.path.join(KERNEL_DIR, "cpu_driver.cpp")]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise KernelBuildError("compiling the CPU kernels failed:\n{}\n{}".format(
                " ".join(cmd), res.stderr[-4000:]))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_lock = threading.Lock()
_library = None


def library():
    """The loaded kernel library (built on first use)."""
    global _library
    with _lock:
        if _library is None:
            cxx, path = library_path()
            if not os.path.exists(path):
                build(cxx, path)
            lib = ctypes.CDLL(path)
            for name in ("fast_update",):
                getattr(lib, name).argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(StepArgs)]
            for name in ("fast_reduce", "fast_check_finite", "fast_materialize"):
                getattr(lib, name).argtypes = [ctypes.c_int, ctypes.POINTER(StepArgs)]
            _library = lib
        return _library


def _check(code, what):
    if code != 0:
        raise RuntimeError("kernel {} rejected its arguments (code {})".format(what, code))


def update(kernel_id, mode, args):
    _check(library().fast_update(kernel_id, mode, ctypes.byref(args)), "update")


def reduce(mode, args):
    _check(library().fast_reduce(mode, ctypes.byref(args)), "reduce")


def materialize(mode, args):
    _check(library().fast_materialize(mode, ctypes.byref(args)), "materialize")


def check_finite(mode, args):
    _check(library().fast_check_finite(mode, ctypes.byref(args)), "check_finite")


xp = numpy
name = "cpu"
