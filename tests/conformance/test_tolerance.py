"""The error model: every bound holds for real fp32 evaluations, and is not vacuous."""
import math

import numpy as np
import pytest

from conformance import tolerance
from conformance.tolerance import Tracked, TrackedArithmetic, half_ulp


def _adam_like_fp32(p, g, m, v, lr, b1, b2, eps):
    f = np.float32
    m = f(b1) * m + (f(1) - f(b1)) * g
    v = f(b2) * v + (f(1) - f(b2)) * g * g
    return p - f(lr) * m / (np.sqrt(v) + f(eps)), m, v


def _adam_like(ctx, p, g, m, v, lr, b1, b2, eps):
    b1, b2, lr, eps = (ctx.scalar(x) for x in (b1, b2, lr, eps))
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * m / (ctx.sqrt(v) + eps), m, v


@pytest.mark.parametrize("seed", range(5))
def test_bound_holds_for_a_float32_evaluation(seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(200).astype(np.float32) * s for s in (1, 1e-3, 1, 1e-2)]
    arrays[3] = np.abs(arrays[3])
    fp32 = _adam_like_fp32(*arrays, 1e-3, 0.9, 0.999, 1e-8)
    ctx = TrackedArithmetic("float32")
    tracked = _adam_like(ctx, *(ctx.array(a) for a in arrays), 1e-3, 0.9, 0.999, 1e-8)
    for actual, expected in zip(fp32, tracked):
        value, bound = ctx.to_float64(expected), ctx.bounds(expected)
        assert np.all(np.abs(actual.astype(np.float64) - value) <= bound)


def test_bound_is_not_vacuous():
    """The bound stays within a few hundred ulps of the result here; a 1e-3 error is caught."""
    ctx = TrackedArithmetic("float32")
    x = ctx.array(np.linspace(0.5, 2.0, 50, dtype=np.float32))
    y = ctx.sqrt(x * x + ctx.scalar(0.1)) / (x + 1)
    value, bound = ctx.to_float64(y), ctx.bounds(y)
    assert np.all(bound < 100 * 2.0 ** -24 * np.abs(value))
    assert np.all(bound < 1e-3 * np.abs(value))


def test_exact_inputs_carry_no_bound():
    ctx = TrackedArithmetic("float32")
    x = ctx.array(np.array([1.5, -2.25], dtype=np.float16))
    assert list(ctx.bounds(x)) == [0.0, 0.0]
    assert ctx.scalar(0.5).bound == 0.0
    assert ctx.scalar(0.1).bound == pytest.approx(0.1 * ctx.u)


def test_constants_are_exact_in_float64_compute_but_not_in_float32():
    assert TrackedArithmetic("float64").scalar(0.1).bound == 0.0
    assert TrackedArithmetic("float32").scalar(0.1).bound > 0.0


def test_round_to_stores_the_rounded_value_and_bounds_the_whole_interval():
    ctx = TrackedArithmetic("float32")
    third = ctx.scalar(1.0) / 3
    r = ctx.round_to(third, "float16")[()]
    assert r.value == float(np.float16(1 / 3))
    assert r.bound == 0.0          # every value within the bound rounds to the same fp16
    ulp = 2.0 ** -12               # fp16 spacing at 1/3
    boundary = float(np.float16(1 / 3)) + ulp / 2
    straddling = ctx.round_to(Tracked(boundary, 1e-6, ctx.u), "float16")[()]
    assert straddling.bound == ulp


def test_round_to_bound_holds_for_double_rounding():
    """fp16(fp32 result) against round(reference) for values near fp16 rounding boundaries."""
    ctx = TrackedArithmetic("float32")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(2000)
    y = ctx.array(x.astype(np.float32)) * ctx.scalar(1.1) + ctx.scalar(0.3)
    stored = ctx.round_to(y, "float16")
    fp32 = (x.astype(np.float32) * np.float32(1.1) + np.float32(0.3)).astype(np.float16)
    err = np.abs(fp32.astype(np.float64) - ctx.to_float64(stored))
    assert np.all(err <= ctx.bounds(stored))


def test_round_to_overflows_like_a_cast():
    ctx = TrackedArithmetic("float32")
    r = ctx.round_to(ctx.array(np.array([1e5, -1e5])), "float16")
    assert [t.value for t in r] == [math.inf, -math.inf]


def test_half_ulp_of_zero_is_half_the_smallest_subnormal():
    assert half_ulp(0.0, np.float16) == 2.0 ** -25


def test_division_by_a_denominator_within_its_bound_of_zero_is_unbounded():
    ctx = TrackedArithmetic("float32")
    tiny = Tracked(1e-12, 1e-11, ctx.u)
    assert math.isinf((ctx.scalar(1.0) / tiny).bound)


def test_sqrt_near_zero_uses_the_square_root_of_the_bound():
    ctx = TrackedArithmetic("float32")
    r = ctx.sqrt(Tracked(0.0, 1e-12, ctx.u))
    assert r.bound == pytest.approx(1e-6)


def test_sum_bound_covers_any_summation_order():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1000).astype(np.float32) * 1e3
    ctx = TrackedArithmetic("float32")
    s = ctx.sum(ctx.array(values))
    for order in (values, values[::-1], np.sort(values)):
        acc = np.float32(0)
        for v in order:
            acc = np.float32(acc + v)
        assert abs(float(acc) - s.value) <= s.bound


def test_maximum_keeps_the_larger_bound():
    ctx = TrackedArithmetic("float32")
    m = ctx.maximum(Tracked(1.0, 1e-3, ctx.u), Tracked(1.0005, 1e-6, ctx.u))
    assert m.value == 1.0005 and m.bound == 1e-3


def test_ambiguous_comparisons_are_recorded_and_can_be_flipped():
    ctx = TrackedArithmetic("float32")
    close = Tracked(1.0, 1e-3, ctx.u)
    with tolerance.decisions() as log:
        assert close > 0.9999
        assert not (close > 1.5)
    assert log.ambiguous == 1
    with tolerance.decisions(flip="all") as log:
        assert not (close > 0.9999)
        assert not (close > 1.5)
    assert log.ambiguous == 1
    with tolerance.decisions(flip=1) as log:
        assert close > 0.9999        # decision 0 kept
        assert not (close < 1.0001)  # decision 1 flipped
    assert log.ambiguous == 2


def test_exact_comparisons_are_never_ambiguous():
    ctx = TrackedArithmetic("float32")
    with tolerance.decisions(flip="all") as log:
        assert ctx.scalar(0.5) > 0.25
        assert ctx.sum(ctx.array(np.zeros(5))) == 0
    assert log.ambiguous == 0


def test_unit_roundoff_includes_the_reference_own_float64_rounding():
    assert TrackedArithmetic("float32").u == 2.0 ** -24 + 2.0 ** -53
    assert TrackedArithmetic("float64").u == 2.0 ** -52


def test_an_intermediate_that_can_overflow_the_compute_dtype_is_unbounded():
    """g * g of a float32 gradient of 3e19 is 9e38 exactly but inf in float32 (as Chainer
    computes it): the product, and what follows from it, accepts any value. A product that
    stays below the threshold keeps a finite bound; in float64 compute the reference's own
    evaluation overflows as the implementation's does, and nothing changes."""
    f32 = TrackedArithmetic("float32")
    big, small = f32.number(np.float32(3e19)), f32.number(np.float32(1e19))
    assert math.isinf((big * big).bound) and math.isinf((big * big * 0.001).bound)
    assert math.isfinite((small * small).bound)
    f64 = TrackedArithmetic("float64")
    assert math.isfinite((f64.number(3e19) * f64.number(3e19)).bound)


def test_the_overflow_threshold_is_where_a_cast_starts_rounding_to_inf():
    for name, u in (("float16", 2.0 ** -11), ("float32", 2.0 ** -24)):
        threshold = tolerance._OVERFLOW[u + 2.0 ** -53]
        dtype = np.dtype(name).type
        with np.errstate(over="ignore"):
            assert np.isinf(dtype(threshold)) and np.isfinite(dtype(np.nextafter(threshold, 0)))
