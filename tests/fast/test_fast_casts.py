"""fast.backends.cpu.cast_into: the F16C float16 <-> float32 casts of host buffers that
fast.distributed's exchange uses must give NumPy's bits for every value."""
import numpy as np
import pytest

from fast.backends import cpu


def f16c_or_skip(dst, src):
    if not cpu.cast_into(dst, src):
        pytest.skip("this CPU build has no F16C (the exchange casts with NumPy)")


def test_every_float16_widens_to_numpys_float32():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    out = np.empty(every.size, np.float32)
    f16c_or_skip(out, every)
    want = every.astype(np.float32)
    assert np.array_equal(out, want, equal_nan=True)
    assert np.array_equal(out[~np.isnan(want)].view(np.uint32), want[~np.isnan(want)].view(np.uint32))


def test_float32_rounds_to_numpys_float16_at_every_boundary():
    """Every float16 midpoint and its float32 neighbours (ties to even), the overflow edge
    (65520 rounds to inf), subnormals, zeros of both signs, a sweep of float32 bit patterns,
    and a length that leaves a scalar tail."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = np.sort(halves[np.isfinite(halves)].astype(np.float64))
    mid = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)
    edges = np.float32([65504, 65519.996, 65520, 1e6, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 0.0, -0.0, np.inf])
    sweep = np.arange(0, 1 << 32, 65537, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
                             edges, -edges, sweep])[:-3]
    out = np.empty(values.size, np.float16)
    f16c_or_skip(out, values)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16)
    keep = ~np.isnan(want)
    assert values.size % 8 != 0
    assert np.array_equal(np.isnan(out), ~keep)
    assert np.array_equal(out[keep].view(np.uint16), want[keep].view(np.uint16))


def test_other_pairs_and_layouts_are_left_to_numpy():
    a = np.ones(16, np.float32)
    assert not cpu.cast_into(np.empty(16, np.float64), a)
    assert not cpu.cast_into(np.empty(8, np.float16), a[::2])
    assert not cpu.cast_into(np.empty(15, np.float16), a)
