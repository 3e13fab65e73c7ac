"""Parameter groups: per-rule hyperparameter overrides, disabled rules and mixed dtypes
must give each parameter exactly the update it would get on its own."""

import numpy as np
import pytest

import fast
from fast_testkit import (
    OPTIMIZER_NAMES, assert_same_snapshot, gradients, make_optimizer, make_params, run_steps,
    set_grads, snapshot, ulp_distance,
)

# The first hyperparameter of each optimizer, and an overriding value for it.
OVERRIDES = {
    "SGD": ("lr", 0.5), "MomentumSGD": ("momentum", 0.5),
    "CorrectedMomentumSGD": ("lr", 0.05), "NesterovAG": ("lr", 0.05),
    "AdaGrad": ("lr", 0.01), "AdaDelta": ("rho", 0.5), "RMSprop": ("alpha", 0.5),
    "RMSpropGraves": ("lr", 1e-3), "Adam": ("beta1", 0.5), "AdamW": ("alpha", 0.01),
    "AMSGrad": ("beta2", 0.9), "AdaBound": ("final_lr", 100.0), "AMSBound": ("gamma", 1.0),
    "MSVAG": ("lr", 0.01), "SMORMS3": ("lr", 0.01),
}


def assert_close_in_ulps(actual, expected, ulps, what):
    distance = ulp_distance(np.asarray(actual), np.asarray(expected))
    assert distance.size == 0 or distance.max() <= ulps, (
        f"{what}: {distance.max():.1f} ulps apart")


def lone_run(name, mode, shapes, key, seed, steps, **hyper):
    """The parameter `key` of a multi-parameter run, updated alone by its own optimizer."""
    opt, params = make_optimizer(name, mode, shapes={key: shapes[key]}, **hyper)
    params[key].data[...] = make_params(shapes, params[key].dtype, seed)[key].data
    for step in range(steps):
        params[key].grad = gradients(make_params(shapes, params[key].dtype, seed), step)[key]
        opt.update()
    return params[key]


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_rule_override_affects_only_its_parameter(name):
    shapes = {"w": (3, 4), "b": (5,)}
    key, value = OVERRIDES[name]
    opt, params = make_optimizer(name, "float32", shapes=shapes)
    setattr(params["w"].update_rule.hyperparam, key, value)
    run_steps(opt, params, 3)

    alone_w = lone_run(name, "float32", shapes, "w", 0, 3, **{key: value})
    alone_b = lone_run(name, "float32", shapes, "b", 0, 3)
    assert_close_in_ulps(params["w"].data, alone_w.data, 2, "overridden w")
    assert_close_in_ulps(params["b"].data, alone_b.data, 2, "default b")
    default_w = lone_run(name, "float32", shapes, "w", 0, 3)
    assert not np.allclose(params["w"].data, default_w.data, rtol=1e-5, atol=0)


@pytest.mark.parametrize("mode", ["float32", "fp16_master"])
@pytest.mark.parametrize("name", ["Adam", "MomentumSGD", "RMSpropGraves", "MSVAG"])
def test_disabled_rule_leaves_its_parameter_and_state_untouched(name, mode):
    opt, params = make_optimizer(name, mode)
    run_steps(opt, params, 2)
    params["b"].update_rule.enabled = False
    frozen = {k: v for k, v in snapshot(opt, params).items() if k.startswith("b.")}
    w_before = params["w"].data.copy()
    run_steps(opt, params, 2, first_step=2)
    assert_same_snapshot(frozen, {k: v for k, v in snapshot(opt, params).items()
                                  if k.startswith("b.")})
    assert params["w"].update_rule.t == 4
    assert np.any(params["w"].data != w_before)


def test_rule_disabled_before_its_first_step_never_gets_state():
    opt, params = make_optimizer("Adam")
    params["w"].update_rule.enabled = False
    w_before = params["w"].data.copy()
    run_steps(opt, params, 2)
    assert params["w"].update_rule.state is None
    assert params["w"].update_rule.t == 0
    np.testing.assert_array_equal(params["w"].data, w_before)
    assert params["b"].update_rule.t == 2


def test_re_enabled_rule_continues_from_its_own_state():
    opt, params = make_optimizer("MomentumSGD", "float64")
    run_steps(opt, params, 1)
    params["w"].update_rule.enabled = False
    run_steps(opt, params, 2, first_step=1)
    params["w"].update_rule.enabled = True
    run_steps(opt, params, 1, first_step=3)
    assert params["w"].update_rule.t == 2
    assert params["b"].update_rule.t == 4


@pytest.mark.parametrize("name", ["Adam", "MomentumSGD", "AdaDelta", "SMORMS3", "AMSBound"])
def test_mixed_dtypes_update_each_parameter_as_if_alone(name):
    """float64, float32 and fp16 (with master) parameters in one optimizer."""
    dtypes = {"d": np.float64, "s": np.float32, "h": np.float16}
    rng = np.random.default_rng(3)
    values = {k: (0.1 * rng.standard_normal(6)).astype(dt) for k, dt in dtypes.items()}
    grads = [{k: rng.standard_normal(6).astype(dt) for k, dt in dtypes.items()}
             for _ in range(3)]

    def run(keys):
        params = {k: fast.Parameter(values[k].copy(), name=k) for k in keys}
        opt = getattr(fast.optimizers, name)().setup(params)
        opt.use_fp32_update()
        for step_grads in grads:
            set_grads(params, {k: step_grads[k] for k in keys})
            opt.update()
        return params

    together = run(list(dtypes))
    for key in dtypes:
        alone = run([key])[key]
        assert together[key].dtype == dtypes[key]
        np.testing.assert_array_equal(together[key].data, alone.data, err_msg=key)
        for state_key, value in alone.update_rule.state.items():
            np.testing.assert_array_equal(together[key].update_rule.state[state_key], value,
                                          err_msg=f"{key}.{state_key}")
    assert together["h"].update_rule.fp32_param is not None
    assert together["s"].update_rule.fp32_param is None


def test_changing_an_optimizer_hyperparameter_between_steps_takes_effect():
    opt, params = make_optimizer("SGD", "float64", lr=0.1)
    run_steps(opt, params, 1)
    opt.lr = 0.0
    before = snapshot(opt, params)
    run_steps(opt, params, 1, first_step=1)
    for key, p in params.items():
        np.testing.assert_array_equal(p.data, before[key + ".data"])


@pytest.mark.parametrize("name, key, value, twin", [
    ("Adam", "amsgrad", True, "AMSGrad"),
    ("RMSprop", "eps_inside_sqrt", True, None),
])
def test_override_that_changes_the_kernel_variant(name, key, value, twin):
    """A per-rule flag that selects another update (and, for amsgrad, another state
    layout) moves that parameter to its own group, before its first step."""
    shapes = {"w": (3, 4), "b": (5,)}
    opt, params = make_optimizer(name, "float32", shapes=shapes)
    setattr(params["w"].update_rule.hyperparam, key, value)
    run_steps(opt, params, 3)

    if twin is None:
        alone_w = lone_run(name, "float32", shapes, "w", 0, 3, **{key: value})
    else:
        alone_w = lone_run(twin, "float32", shapes, "w", 0, 3)
    alone_b = lone_run(name, "float32", shapes, "b", 0, 3)
    assert_close_in_ulps(params["w"].data, alone_w.data, 2, "overridden w")
    assert_close_in_ulps(params["b"].data, alone_b.data, 2, "default b")
    assert set(params["w"].update_rule.state) == set(alone_w.update_rule.state)
    assert set(params["b"].update_rule.state) == set(alone_b.update_rule.state)


def test_adabound_switched_on_after_setup_raises_as_in_chainer():
    """Chainer records initial_alpha only when a rule is created with adabound on; turning
    it on later leaves the rule without one, and Chainer's update_core raises AttributeError,
    midway through the step: opt.t and the rule's t have advanced, nothing else changed."""
    opt, params = make_optimizer("Adam", "float32")
    run_steps(opt, params, 1)
    params["w"].update_rule.hyperparam.adabound = True
    before = snapshot(opt, params)
    with pytest.raises(AttributeError, match="initial_alpha"):
        run_steps(opt, params, 1, first_step=1)
    after = snapshot(opt, params)
    assert (after.pop("opt.t"), after.pop("w.t")) == (before.pop("opt.t") + 1, before.pop("w.t") + 1)
    assert_same_snapshot(before, after)
