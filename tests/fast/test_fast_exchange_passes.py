"""The compiled passes over fast.distributed's exchange buffers (fast.backends.cpu,
fast/kernels/exchange.cpp) give NumPy's bits for every value:

- ``convert_into(dst, src, R, factor)``: ``cast_dst(round_R(float64(src) * factor))``, the
  casts (factor 1) and the mean of a block of sums (factor 1/N: ChainerMN's formula), for
  every source, rounding and destination dtype among float16/32/64;
- ``sum_f16_into``: the float16 sum of the "mpi" communicator's MPI reduction, the float16
  nearest each exact sum (NumPy's float16 addition).

Inputs: every float16 value, every float16 midpoint and its neighbours in float32 and
float64 (both sides of each rounding boundary), float32 bit patterns across the whole range,
and lengths that leave a scalar tail."""
import numpy as np
import pytest

from fast.backends import cpu

EVERY_HALF = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
DTYPES = (np.float16, np.float32, np.float64)


def compiled_or_skip(done):
    if not done:
        pytest.skip("this CPU build has no F16C/AVX2 (the exchange falls back to NumPy)")


def same_bits(got, want):
    """Equal bytes, NaN for NaN (a NaN's payload is not a value; F16C quiets it)."""
    nan = np.isnan(want)
    return (np.array_equal(np.isnan(got), nan)
            and got[~nan].tobytes() == np.ascontiguousarray(want[~nan]).tobytes())


def boundaries(dtype):
    """Every float16 midpoint and the values of ``dtype`` next to it on both sides, the
    float16 overflow edge, subnormals, zeros of both signs, infinities."""
    finite = np.sort(EVERY_HALF[np.isfinite(EVERY_HALF)].astype(np.float64))
    mid = ((finite[:-1] + finite[1:]) / 2).astype(dtype)
    edges = np.array([65504, 65519.996, 65520, 1e6, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 0.0, -0.0, np.inf],
                     dtype=dtype)
    up, down = np.nextafter(mid, dtype(np.inf)), np.nextafter(mid, dtype(-np.inf))
    return np.concatenate([mid, up, down, edges, -edges])


def inputs(dtype):
    values = [EVERY_HALF.astype(dtype)]
    if dtype != np.float16:
        values.append(boundaries(dtype))
    if dtype == np.float32:
        values.append(np.arange(0, 1 << 32, 65537, dtype=np.uint64).astype(np.uint32).view(np.float32))
    if dtype == np.float64:
        rng = np.random.default_rng(3)
        values.append(rng.standard_normal(200_000) * 10.0 ** rng.integers(-40, 40, 200_000))
    out = np.concatenate(values)
    return out[:out.size - (out.size % 8 == 0)]  # a scalar tail


def chainermn_mean(sums, round_dtype, dst_dtype, n):
    with np.errstate(over="ignore", invalid="ignore"):
        return (sums.astype(np.float64) * (1.0 / n)).astype(round_dtype).astype(dst_dtype)


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("round_dtype", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_casts_and_means_are_chainermns_formula_bit_for_bit(src, round_dtype, dst):
    sums = inputs(src)
    for n in (1, 2, 3, 4, 6, 7, 8, 12, 1024):
        out = np.empty(sums.size, dst)
        compiled_or_skip(cpu.convert_into(out, sums, round_dtype, 1.0 / n))
        assert same_bits(out, chainermn_mean(sums, round_dtype, dst, n)), (src, round_dtype, dst, n)


def test_a_float64_rounds_to_float16_once():
    """Round to odd through float32 keeps float64 -> float16 one rounding: a float64 just off
    a float16 midpoint rounds the way it lies (through float32 with round to nearest, it
    would land on the midpoint and round to even)."""
    lo, hi = np.float64(1.0), np.float64(1.0 + 2.0 ** -10)
    mid = (lo + hi) / 2
    values = np.array([np.nextafter(mid, 2.0), np.nextafter(mid, 0.0), mid, -np.nextafter(mid, 2.0)])
    out = np.empty(4, np.float16)
    compiled_or_skip(cpu.convert_into(out, values, np.float16, 1.0))
    assert out.tolist() == [hi, lo, lo, -hi] == values.astype(np.float16).tolist()
    assert values.astype(np.float32).astype(np.float16)[0] == lo  # what double rounding gives


def test_the_mean_in_place():
    sums = inputs(np.float16)
    out = sums.copy()
    compiled_or_skip(cpu.convert_into(out, out, np.float16, 1.0 / 6))
    assert same_bits(out, chainermn_mean(sums, np.float16, np.float16, 6))


def test_other_arrays_are_left_to_the_caller():
    a = np.ones(16, np.float32)
    assert not cpu.convert_into(np.empty(16, np.int32), a)
    assert not cpu.convert_into(np.empty(8, np.float16), a[::2])
    assert not cpu.convert_into(np.empty(15, np.float16), a)
    assert not cpu.sum_f16_into(np.empty(16, np.float16), a)


def test_float16_sums_are_the_nearest_float16_of_each_exact_sum():
    """Every float16 value plus partners: random ones, and ones sharing its exponent with
    random low bits (many exact ties, both sides of each boundary); NumPy's float16
    addition rounds the exact sum once. Also the order MPI calls with (incoming first)."""
    rng = np.random.default_rng(5)
    bits = np.arange(1 << 16, dtype=np.uint16)
    for k in range(16):
        if k % 2:
            partner = (bits ^ rng.integers(0, 1 << int(rng.integers(1, 16)), bits.size, dtype=np.uint16))
        else:
            partner = rng.integers(0, 1 << 16, bits.size, dtype=np.uint16)
        incoming, inout = EVERY_HALF[:-1], partner.astype(np.uint16).view(np.float16)[:-1].copy()
        with np.errstate(over="ignore", invalid="ignore"):
            want = incoming + inout
        compiled_or_skip(cpu.sum_f16_into(inout, incoming))
        assert same_bits(inout, want), k


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_the_gradients_packed_one_after_another(src, dst):
    """pack_into: each array cast to the buffer's dtype (NumPy's bits), None as zeros of its
    size, in order from the buffer's start; the rest of the buffer untouched; arrays it does
    not take refused with nothing written."""
    rng = np.random.default_rng(7)
    values = inputs(src)
    arrays = [values[:1000].reshape(10, 100), None, np.asarray(values[5], src), values[-333:],
              np.zeros(0, src), rng.standard_normal(70_001).astype(src)]
    sizes = [1000, 17, 1, 333, 0, 70_001]
    buffer = np.full(sum(sizes) + 9, 3.0, dst)
    compiled_or_skip(cpu.pack_into(buffer, arrays, sizes))
    offset = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for a, n in zip(arrays, sizes):
            want = np.zeros(n, dst) if a is None else a.reshape(-1).astype(dst)
            assert same_bits(buffer[offset:offset + n], want), (src, dst, n)
            offset += n
    assert (buffer[offset:] == 3.0).all()
    untouched = np.full(8, 3.0, dst)
    assert not cpu.pack_into(untouched, [np.ones(4, src)], [5])
    assert not cpu.pack_into(untouched, [np.ones(9, src)], [9])
    assert not cpu.pack_into(untouched, [np.ones(4, src)[::2], np.ones(2, src)], [2, 2])
    assert not cpu.pack_into(untouched, [np.ones(4, np.float32), np.ones(2, np.float64)], [4, 2])
    assert (untouched == 3.0).all()
