"""The CPU's memory-bandwidth limit for an optimizer step, measured in the same run.

An optimizer step is memory-bound, so no implementation can step faster than the bytes it
must move (benchmarks/bytes_per_param.py) over the bandwidth the machine gives that stream
mix. The limit is measured by a kernel built by fast's own toolchain and flags
(benchmarks/kernels/stream_limit.cpp, compiled with fast.backends.cpu.FLAGS), on every
thread of the run, with the step's mix: for Adam in fp32 one gradient stream read and
three streams (parameter, m, v) read and written; with an fp32 master the fp16
parameter is a written-only stream. It runs on arrays of the step's own size, so rows
whose arrays stay in the caches are set against a limit measured in the caches too.

A STREAM triad (a = b + s c, float32, 12 bytes per element counted, as STREAM counts)
built the same way is the cross-check.

In fp16 without a master a step also converts: every element it loads to float and every
value it stores back to fp16, and each state value it rounds (Chainer stores it in fp16)
it reads back as rounded. ConvertPass does those conversions alone, with the step's
streams: the F16C floor, the most a step with these semantics can reach on a CPU that
converts with F16C, set beside the limit.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .bytes_per_param import DTYPE_MODES, STATE_ARRAYS

KERNEL_DIR = os.path.join(os.path.dirname(__file__), "kernels")
SOURCE = "stream_limit.cpp"
TRIAD_ELEMENTS = 64 * 2**20  # float32: 3 x 256 MiB
# Streams per thread of a read pass: a pass that only reads gets more bandwidth from several
# streams per core (fast's check reads 4); 8 was the fastest of 1, 2, 4 and 8 here.
READ_STREAMS = 8

# Stream widths (bytes) of each dtype mode: gradient, read-and-written arrays, written-only.
_STREAMS = {
    "fp32": (4, 4, 0),
    "fp16+master": (2, 4, 2),
    "fp16": (2, 2, 0),
    "fp64": (8, 8, 0),
}
_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True)
class Mix:
    """The streams of one step: one dtype mode, n_state state arrays."""

    mode: str
    n_state: int

    @property
    def key(self) -> str:
        return f"{self.mode}/{self.n_state} state"

    @property
    def bytes_per_param(self) -> int:
        grad, rw, written = _STREAMS[self.mode]
        return grad + 2 * rw * (1 + self.n_state) + written


def mix_of(optimizer: str, mode: str) -> Mix:
    return Mix(mode, STATE_ARRAYS[optimizer])


# The mix moves bytes_per_param's bytes, so a step and its limit count the same bytes.
for _mode, _traffic in DTYPE_MODES.items():
    for _n in range(4):
        assert Mix(_mode, _n).bytes_per_param == (
            _traffic["param_and_grad"] + _n * _traffic["per_state"]), (_mode, _n)


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    from fast.backends import cpu

    lib = ctypes.CDLL(cpu.built_library("streamlimit", (SOURCE,), cpu.FLAGS, KERNEL_DIR))
    lib.stream_mix_pass.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                    ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                                    ctypes.c_int64]
    lib.stream_mix_pass.restype = ctypes.c_int
    lib.stream_read_pass.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64]
    lib.stream_read_pass.restype = ctypes.c_int64
    lib.stream_f16_convert_pass.argtypes = [ctypes.c_int, ctypes.c_void_p,
                                            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64]
    lib.stream_f16_convert_pass.restype = ctypes.c_int
    lib.stream_triad.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_float, ctypes.c_int64]
    lib.stream_triad.restype = None
    return lib


def _touched(n: int, width: int, slot: int) -> np.ndarray:
    """A touched array of n unsigned integers, placed in its page as fast places its
    buffers (fast.backends.cpu.staggered_empty), so neither side pays 4K aliasing."""
    from fast.backends.cpu import staggered_empty

    array = staggered_empty(n, _UNSIGNED[width], slot)
    array[...] = 1
    return array


class MixPass:
    """One pass of a mix over n elements (callable), on arrays it allocates and touches."""

    def __init__(self, mix: Mix, n: int):
        grad_w, rw_w, written_w = _STREAMS[mix.mode]
        self.mix, self.n = mix, n
        self.rw = [_touched(n, rw_w, slot) for slot in range(1 + mix.n_state)]
        self.grad = _touched(n, grad_w, 5)
        self.written = _touched(n, written_w, 6) if written_w else None
        self._rw_ptrs = (ctypes.c_void_p * 4)(*[a.ctypes.data for a in self.rw])
        self._args = (grad_w, rw_w, written_w, len(self.rw), self.grad.ctypes.data, self._rw_ptrs,
                      None if self.written is None else self.written.ctypes.data, n)

    @property
    def bytes_moved(self) -> int:
        return self.n * self.mix.bytes_per_param

    def __call__(self) -> None:
        code = library().stream_mix_pass(*self._args)
        if code != 0:
            raise RuntimeError(f"stream_mix_pass rejected {self.mix} (code {code})")

    def moved_every_stream(self, passes: int) -> bool:
        """Whether every read-and-written array gained `passes` gradients (1 each) and the
        written-only array holds the first one's value: the pass did its work."""
        expected = 1 + passes
        ok = all(int(a[0]) == expected and int(a[-1]) == expected for a in self.rw)
        if self.written is not None:
            ok = ok and int(self.written[-1]) == expected
        return ok


class ReadPass:
    """One read of the gradients of a mix over n elements (callable): the least a check for
    inf and NaN must add to a step, on an array it allocates and touches. Each thread reads
    its part of a chunk as READ_STREAMS streams walked together."""

    def __init__(self, mix: Mix, n: int):
        self.width = _STREAMS[mix.mode][0]
        self.n = n
        self.grad = _touched(n, self.width, 5)

    @property
    def bytes_moved(self) -> int:
        return self.n * self.width

    def __call__(self) -> None:
        if library().stream_read_pass(self.width, READ_STREAMS, self.grad.ctypes.data, self.n) != 1:
            raise RuntimeError("stream_read_pass did not read the array it was given")


class ConvertPass(MixPass):
    """The F16C floor of a step in fp16 without a master (callable), over the arrays of the
    fp16 mix's pass: per element the gradient and the parameter converted to float, each
    state value converted, added to, rounded back to fp16 for its store and read back from
    those bits, the parameter converted back for its store (stream_f16_convert_pass).
    Additions stand in for the step's arithmetic."""

    def __init__(self, mix: Mix, n: int):
        if mix.mode != "fp16":
            raise ValueError(f"the F16C floor is the fp16 mix's (no master), not {mix.mode}'s")
        super().__init__(mix, n)

    def __call__(self) -> None:
        code = library().stream_f16_convert_pass(len(self.rw), self.grad.ctypes.data,
                                                 self._rw_ptrs, self.n)
        if code != 0:
            raise RuntimeError(f"stream_f16_convert_pass rejected {self.mix} (code {code})")


class Triad:
    """STREAM's triad on float32 arrays of n elements (callable)."""

    def __init__(self, n: int = TRIAD_ELEMENTS):
        from fast.backends.cpu import staggered_empty

        self.n = n
        self.a, self.b, self.c = (staggered_empty(n, np.float32, slot) for slot in range(3))
        self.a[...], self.b[...], self.c[...] = 0.0, 1.0, 2.0

    @property
    def bytes_moved(self) -> int:
        return 3 * 4 * self.n

    def __call__(self) -> None:
        library().stream_triad(self.a.ctypes.data, self.b.ctypes.data, self.c.ctypes.data,
                               np.float32(0.5), self.n)
