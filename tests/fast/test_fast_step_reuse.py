"""The engine reuses a group's kernel arguments from one step to the next when the
same tensors step on gradients at the same addresses (fast.engine.Engine._update_spec).
Every step must still read what the step is given: a new gradient array, new values in
the same array, a changed hyperparameter, a disabled rule, a rule hook added or removed.

Plain SGD on float64 is exact here (p - lr * g with lr and g powers of two), so each
expected parameter is written down exactly.
"""

import numpy as np
import pytest

import fast


def sgd_setup(lr=0.5, n=4):
    params = {name: fast.Parameter(np.full(n, 8.0), name=name) for name in ("w", "b")}
    opt = fast.optimizers.SGD(lr=lr)
    opt.setup(params)
    return opt, params


def give(params, **grads):
    for name, value in grads.items():
        params[name].grad = np.full(params[name].data.shape, float(value))


def test_a_new_gradient_array_is_read():
    opt, params = sgd_setup()
    give(params, w=1, b=1)
    opt.update()
    give(params, w=2, b=4)  # new arrays at new addresses
    opt.update()
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 0.5 - 1.0))
    assert np.array_equal(params["b"].data, np.full(4, 8.0 - 0.5 - 2.0))


def test_new_values_in_the_same_gradient_array_are_read():
    opt, params = sgd_setup()
    give(params, w=1, b=1)
    grad_w = params["w"].grad
    opt.update()
    grad_w[...] = 4.0
    opt.update()
    assert params["w"].grad is grad_w
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 0.5 - 2.0))


def test_a_gradient_swapped_between_parameters_is_followed():
    opt, params = sgd_setup()
    give(params, w=1, b=2)
    opt.update()
    params["w"].grad, params["b"].grad = params["b"].grad, params["w"].grad
    opt.update()
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 0.5 - 1.0))
    assert np.array_equal(params["b"].data, np.full(4, 8.0 - 1.0 - 0.5))


def test_a_changed_learning_rate_applies_at_the_next_step():
    opt, params = sgd_setup()
    give(params, w=1, b=1)
    opt.update()
    opt.lr = 0.25
    opt.update()
    params["b"].update_rule.hyperparam.lr = 2.0
    opt.update()
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 0.5 - 0.25 - 0.25))
    assert np.array_equal(params["b"].data, np.full(4, 8.0 - 0.5 - 0.25 - 2.0))


def test_disabling_and_enabling_a_rule_between_steps():
    opt, params = sgd_setup()
    give(params, w=1, b=1)
    opt.update()
    params["w"].update_rule.enabled = False
    opt.update()
    params["w"].update_rule.enabled = True
    opt.update()
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 1.0))
    assert np.array_equal(params["b"].data, np.full(4, 8.0 - 1.5))
    assert (params["w"].update_rule.t, params["b"].update_rule.t) == (2, 3)


def test_a_rule_hook_added_after_fused_steps_runs_and_leaves_once_removed():
    opt, params = sgd_setup()
    give(params, w=1, b=1)
    opt.update()
    calls = []

    def double_the_gradient(rule, param):
        calls.append(param.name)
        param.grad *= 2

    params["w"].update_rule.add_hook(double_the_gradient, name="double")
    opt.update()
    params["w"].update_rule.remove_hook("double")
    opt.update()
    assert calls == ["w"]
    # w: g = 1, then the hook's doubled g = 2 (on the view's copy: p.grad stays 1), then g = 1
    assert np.array_equal(params["w"].data, np.full(4, 8.0 - 0.5 - 1.0 - 0.5))
    assert np.array_equal(params["w"].grad, np.ones(4))
    assert np.array_equal(params["b"].data, np.full(4, 8.0 - 1.5))


@pytest.mark.parametrize("name", ["Adam", "MSVAG"])
def test_step_dependent_scalars_advance_on_reused_arguments(name, tmp_path):
    """Adam's alpha_t and MSVAG's beta_power change every step; a run of reused steps
    equals a run where every step builds its arguments anew (a fresh optimizer loaded
    from the previous step's snapshot)."""
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(4)]
    start = rng.standard_normal(6).astype(np.float32)

    def optimizer():
        return getattr(fast.optimizers, name)(profile="fixed")

    reused_param = fast.Parameter(start.copy())
    reused = optimizer()
    reused.setup({"p": reused_param})
    for g in grads:
        reused_param.grad = g.copy()
        reused.update()

    rebuilt_data = start.copy()
    snapshot = tmp_path / "snapshot.npz"
    for step, g in enumerate(grads):
        param = fast.Parameter(rebuilt_data.copy())
        opt = optimizer()
        opt.setup({"p": param})
        if step:
            fast.serializers.load_npz(snapshot, opt)
        param.grad = g.copy()
        opt.update()
        fast.serializers.save_npz(snapshot, opt)
        rebuilt_data = param.data.copy()
    assert np.array_equal(reused_param.data, rebuilt_data)
