"""Inputs and helpers shared by the tests of the `reference` package.

Every expected value in these tests is written out by hand from the update
equations; the helpers here only build parameters and feed gradients.
"""
import warnings

import numpy as np
import reference

# Small, exactly representable inputs: one parameter of three elements and the
# gradients of three consecutive steps.
W0 = (1.0, -2.0, 0.5)
G1 = (0.5, -1.0, 2.0)
G2 = (-1.5, 0.25, 1.0)
G3 = (2.0, 1.0, -0.5)

PROFILES = ("chainer", "fixed")

ALL_OPTIMIZERS = ("SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad",
                  "AdaDelta", "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad",
                  "AdaBound", "AMSBound", "MSVAG", "SMORMS3")


def array(values, dtype=np.float64):
    """A fresh array of `values` in `dtype`."""
    return np.array(values, dtype=dtype)


def single_param(optimizer, values=W0, dtype=np.float64, name="w"):
    """Set `optimizer` up on one new parameter holding `values`; return it."""
    param = reference.Parameter(array(values, dtype), name=name)
    optimizer.setup({name: param})
    return param


def step(optimizer, param, grad, dtype=None):
    """Hand `param` a copy of `grad` (in the parameter's dtype) and update once."""
    param.grad = array(grad, dtype or param.dtype)
    optimizer.update()


def quiet_step(optimizer, param, grad, dtype=None):
    """`step`, ignoring the warning a non-finite gradient may trigger."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step(optimizer, param, grad, dtype)


def state_copy(rule):
    """A deep copy of a rule's state mapping (None stays None)."""
    if rule.state is None:
        return None
    return {key: np.array(value, copy=True) for key, value in rule.state.items()}


def assert_bitwise_equal(actual, expected):
    """Same dtype, same shape, same bytes (NaNs included)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


def assert_states_bitwise_equal(actual, expected):
    """Two state mappings (as `state_copy` returns) hold identical arrays."""
    if expected is None:
        assert actual is None
        return
    assert actual is not None
    assert set(actual) == set(expected)
    for key in expected:
        assert_bitwise_equal(actual[key], expected[key])


def assert_close(actual, expected, rtol=1e-12):
    """Relative agreement, element by element, with no absolute slack."""
    np.testing.assert_allclose(np.asarray(actual, np.float64),
                               np.asarray(expected, np.float64),
                               rtol=rtol, atol=0)
