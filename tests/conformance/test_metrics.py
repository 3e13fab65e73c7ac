"""The error metric: normalized error, non-finite classes, unbounded elements."""
import math

import numpy as np

from conformance.compare import check_array


def test_within_and_beyond_the_bound():
    check = check_array(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.1, 3.5]),
                        np.array([0.0, 0.2, 0.25]))
    assert check.normalized[0] == 0.0
    assert check.normalized[1] == np.float64(0.1) / 0.2 or abs(check.normalized[1] - 0.5) < 1e-12
    assert check.normalized[2] == 2.0


def test_zero_bound_demands_bitwise_equality():
    check = check_array(np.array([1.0]), np.array([np.nextafter(1.0, 2.0)]), np.array([0.0]))
    assert math.isinf(check.normalized[0])


def test_non_finite_values_must_match_their_class():
    impl = np.array([np.nan, np.inf, -np.inf, 1.0, np.inf])
    ref = np.array([np.nan, np.inf, np.inf, np.nan, 1.0])
    check = check_array(impl, ref, np.full(5, 1e30))
    assert list(check.normalized[:2]) == [0.0, 0.0]
    assert all(math.isinf(x) for x in check.normalized[2:])


def test_infinite_bound_accepts_anything_and_is_counted():
    check = check_array(np.array([5.0, np.nan]), np.array([1.0, 1.0]), np.array([np.inf, np.inf]))
    assert list(check.normalized) == [0.0, 0.0]
    assert check.unbounded == 2


def test_float16_inputs_are_compared_exactly_in_float64():
    impl = np.array([0.1], dtype=np.float16)
    check = check_array(impl, np.array([float(impl[0])]), np.array([0.0]))
    assert check.normalized[0] == 0.0


def _value(impl, ref, bound, normalized, dtype):
    from conformance.results import Divergence
    return Divergence("c", 1, "/p0 param", "value", (0,), impl, ref, bound, normalized, dtype=dtype)


def test_a_divergence_says_in_words_what_differs():
    kind = _value(-math.inf, math.nan, math.inf, math.inf, "float32").describe()
    assert "impl -inf where the reference has NaN" in kind and "bound" not in kind
    finite = _value(math.nan, 0.5, 1e-7, math.inf, "float32").describe()
    assert "impl NaN where the reference has a finite 0.5" in finite
    one = float(np.float16(1.0))
    next_up = float(np.nextafter(np.float16(1.0), np.float16(2.0)))
    exact = _value(next_up, one, 0.0, math.inf, "float16").describe()
    assert "1 ulp of float16 apart where equal bits are required" in exact
    three = float(np.float32(1.0) + 3 * np.finfo(np.float32).eps)
    bounded = _value(three, 1.0, 1.2e-7, 3 * 1.1920929e-07 / 1.2e-7, "float32").describe()
    assert "(3 ulps of float32) is 2.98 x the bound 1.2e-07 (normalized error 2.98" in bounded
    from conformance.results import Divergence
    loaded = Divergence("c", 2, "/p0 state m after load", "value", (0,), next_up, one, 0.0,
                        math.inf, dtype="float16").describe()
    assert "1 ulp of float16 apart where equal bits are required (a checkpoint reloads" in loaded
    counter = Divergence("c", 3, "opt.t", "discrete", impl_value=3, ref_value=2).describe()
    assert counter == "step 3: opt.t: the implementation has 3, where the reference has 2 (compared exactly)"
    changed = Divergence("c", 1, "/p0 param", "changed").describe()
    assert "changed by an update that raised (an update that raises must change nothing)" in changed


def test_ulps_apart_counts_values_of_the_dtype_across_zero():
    from conformance.results import ulps_apart
    tiny = float(np.finfo(np.float16).smallest_subnormal)
    assert ulps_apart(-tiny, tiny, "float16") == 2 and ulps_apart(0.0, -0.0, "float32") == 0
    assert ulps_apart(1.0, 2.0, "float16") == 1024 and ulps_apart(1.0, math.inf, "float16") is None


def test_the_diagnosis_shows_the_steps_worst_element_the_tables_worst():
    """A failing case's worst (its last step error) is its divergence's normalized error:
    the worst element of the step, not the first one out of bounds."""
    import types
    import examples.my_adam as my_adam
    from conformance import generators
    from conformance.compare import check_case

    class GrowingError(my_adam.Adam):
        def update(self):
            super().update()
            for param in self.target.values():
                param.data[...] = param.data * (1 + 1e-3 * np.arange(param.data.size)
                                                .reshape(param.data.shape))
    impl = types.SimpleNamespace(Parameter=my_adam.Parameter,
                                 optimizers=types.SimpleNamespace(Adam=GrowingError))
    case = next(c for c in generators.ci_suite("ci")
                if c.name == "matrix/Adam/float32/nohook/none/chainer")
    result = check_case(impl, case)
    [divergence] = result.divergences
    assert divergence.normalized == result.step_errors[-1] == max(result.step_errors)
    # The first element out of bounds is /p0's (0-d) or /p3's [1] (its [0] is unchanged);
    # the worst is further along /p3.
    assert divergence.array == "/p3 param" and divergence.index[0] > 1, divergence.describe()
