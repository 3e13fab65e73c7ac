"""Bad input meets a clear error and leaves everything as it was; edge-case input that is
valid (None grads, size-0 and scalar parameters) is handled as Chainer handles it."""

import math

import numpy as np
import pytest

import fast
from fast_testkit import (
    OPTIMIZER_NAMES, assert_finite, assert_same_snapshot, gradients, make_optimizer,
    run_steps, set_grads, snapshot,
)


def assign_grads_and_update(opt, params, grads):
    """The error may come from the grad setter or from update(); both count."""
    set_grads(params, grads)
    opt.update()


def started_optimizer(name="Adam", mode="float32"):
    opt, params = make_optimizer(name, mode)
    run_steps(opt, params, 2)
    return opt, params


@pytest.mark.parametrize("mode", ["float32", "fp16_master"])
def test_grad_with_wrong_shape_raises_value_error_and_changes_nothing(mode):
    opt, params = started_optimizer(mode=mode)
    grads = gradients(params, 5)
    grads["b"] = np.ones((6,), grads["b"].dtype)
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match="shape"):
        assign_grads_and_update(opt, params, grads)
    assert_same_snapshot(before, snapshot(opt, params))


@pytest.mark.parametrize("mode", ["float32", "fp16_master"])
def test_grad_with_wrong_dtype_raises_type_error_and_changes_nothing(mode):
    opt, params = started_optimizer(mode=mode)
    grads = gradients(params, 5)
    grads["b"] = grads["b"].astype(np.float64)
    before = snapshot(opt, params)
    with pytest.raises(TypeError, match="dtype"):
        assign_grads_and_update(opt, params, grads)
    assert_same_snapshot(before, snapshot(opt, params))


def test_grad_that_is_not_an_array_raises_type_error():
    opt, params = started_optimizer()
    grads = gradients(params, 5)
    grads["b"] = grads["b"].tolist()
    before = snapshot(opt, params)
    with pytest.raises(TypeError):
        assign_grads_and_update(opt, params, grads)
    assert_same_snapshot(before, snapshot(opt, params))


NON_FINITE_HYPERPARAMETERS = [
    ("SGD", "lr", math.nan), ("MomentumSGD", "momentum", -math.inf), ("Adam", "alpha", math.inf),
    ("Adam", "eps", math.nan), ("RMSprop", "eps", math.inf), ("AdaBound", "final_lr", math.nan),
    ("MSVAG", "beta", math.nan),
]


@pytest.mark.parametrize("name, key, value", NON_FINITE_HYPERPARAMETERS)
def test_non_finite_constructor_argument_raises_no_later_than_the_first_step(name, key, value):
    params = {"w": fast.Parameter(np.ones(3, np.float32), name="w")}
    with pytest.raises(ValueError, match=key):
        opt = getattr(fast.optimizers, name)(**{key: value}).setup(params)
        params["w"].grad = np.ones(3, np.float32)
        opt.update()
    np.testing.assert_array_equal(params["w"].data, 1.0)


@pytest.mark.parametrize("name, key, value", NON_FINITE_HYPERPARAMETERS)
def test_non_finite_hyperparameter_set_later_raises_and_changes_nothing(name, key, value):
    opt, params = started_optimizer(name)
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=key):
        setattr(opt, key, value)
        assign_grads_and_update(opt, params, gradients(params, 5))
    assert_same_snapshot(before, snapshot(opt, params))


def test_non_finite_rule_override_raises_and_changes_nothing():
    opt, params = started_optimizer("Adam")
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match="beta1"):
        params["b"].update_rule.hyperparam.beta1 = math.nan
        assign_grads_and_update(opt, params, gradients(params, 5))
    assert_same_snapshot(before, snapshot(opt, params))


def test_setup_with_something_that_holds_no_parameters_raises_type_error():
    with pytest.raises(TypeError):
        fast.optimizers.SGD().setup(42)


def test_update_before_setup_raises_runtime_error():
    with pytest.raises(RuntimeError):
        fast.optimizers.SGD().update()


@pytest.mark.parametrize("mode", ["float32", "fp16_master", "fp16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_none_grad_is_treated_as_zeros(name, mode):
    def run(last_grad_of_b):
        opt, params = make_optimizer(name, mode)
        run_steps(opt, params, 2)
        grads = gradients(params, 2)
        grads["b"] = last_grad_of_b(params["b"])
        set_grads(params, grads)
        opt.update()
        return snapshot(opt, params)

    with_none = run(lambda p: None)
    with_zeros = run(lambda p: np.zeros(p.shape, p.dtype))
    assert with_none["b.t"] == 3
    assert_same_snapshot(with_zeros, with_none)


def test_none_grad_on_the_first_step_initialises_state():
    opt, params = make_optimizer("Adam")
    opt.update()
    for p in params.values():
        assert p.update_rule.t == 1
        for value in p.update_rule.state.values():
            np.testing.assert_array_equal(value, 0)


@pytest.mark.parametrize("mode", ["float64", "float32", "fp16_master", "fp16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_size_zero_and_scalar_parameters(name, mode):
    opt, params = make_optimizer(name, mode, shapes={"empty": (0, 3), "scalar": (),
                                                     "vector": (4,)})
    scalar_before = params["scalar"].data.copy()
    run_steps(opt, params, 3)
    empty, scalar = params["empty"], params["scalar"]
    assert empty.data.shape == (0, 3) and empty.update_rule.t == 3
    assert all(v.shape == (0, 3) for v in empty.update_rule.state.values())
    assert scalar.data.shape == () and scalar.update_rule.t == 3
    assert_finite(scalar.data, "scalar")
    assert scalar.data != scalar_before
    assert all(v.shape == () for v in scalar.update_rule.state.values())


@pytest.mark.parametrize("value, error", [
    ([1.0, 2.0], TypeError),
    (np.arange(3), TypeError),
    (np.ones(3, np.complex64), TypeError),
])
def test_parameter_rejects_what_cannot_be_optimized(value, error):
    with pytest.raises(error):
        fast.Parameter(value)


def test_assigning_data_of_another_shape_raises_and_keeps_the_value():
    opt, params = started_optimizer()
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match="shape"):
        params["w"].data = np.zeros((4, 3), np.float32)
    assert_same_snapshot(before, snapshot(opt, params))
