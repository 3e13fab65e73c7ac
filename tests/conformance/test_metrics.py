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
