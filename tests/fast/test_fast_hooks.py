"""Optimizer hooks: each one's effect on the gradient, checked through one SGD step
(p1 = p0 - lr * hooked(g)) against Chainer's formulas evaluated in float64."""

import numpy as np
import pytest

import fast
from fast_testkit import PROFILES, gradients, make_optimizer, run_steps, set_grads

LR = 0.1


def one_hooked_sgd_step(hook, mode="float64", profile="chainer"):
    """(params before, gradients, params after) of one SGD step with `hook` installed."""
    opt, params = make_optimizer("SGD", mode, profile, lr=LR)
    opt.add_hook(hook)
    before = {k: p.data.astype(np.float64) for k, p in params.items()}
    grads = gradients(params, 0)
    set_grads(params, {k: g.copy() for k, g in grads.items()})
    opt.update()
    after = {k: p.data for k, p in params.items()}
    return before, {k: g.astype(np.float64) for k, g in grads.items()}, after, params


def assert_sgd_step_used(hooked, before, after):
    for key in before:
        np.testing.assert_allclose(after[key], before[key] - LR * hooked[key],
                                   rtol=1e-14, atol=1e-16, err_msg=key)


@pytest.mark.parametrize("profile", PROFILES)
def test_weight_decay_adds_rate_times_parameter(profile):
    before, g, after, _ = one_hooked_sgd_step(fast.optimizer_hooks.WeightDecay(0.05),
                                              profile=profile)
    assert_sgd_step_used({k: g[k] + 0.05 * before[k] for k in g}, before, after)


@pytest.mark.parametrize("profile", PROFILES)
def test_lasso_adds_rate_times_sign(profile):
    before, g, after, _ = one_hooked_sgd_step(fast.optimizer_hooks.Lasso(0.05), profile=profile)
    assert_sgd_step_used({k: g[k] + 0.05 * np.sign(before[k]) for k in g}, before, after)


@pytest.mark.parametrize("profile", PROFILES)
def test_gradient_hard_clipping_clips_each_element(profile):
    hook = fast.optimizer_hooks.GradientHardClipping(-0.3, 0.2)
    before, g, after, _ = one_hooked_sgd_step(hook, profile=profile)
    assert_sgd_step_used({k: np.clip(g[k], -0.3, 0.2) for k in g}, before, after)


@pytest.mark.parametrize("profile", PROFILES)
def test_gradient_clipping_rescales_to_the_global_norm(profile):
    before, g, after, _ = one_hooked_sgd_step(fast.optimizer_hooks.GradientClipping(0.5),
                                              profile=profile)
    norm = np.sqrt(sum(np.sum(v * v) for v in g.values()))
    assert norm > 0.5
    assert_sgd_step_used({k: g[k] * (0.5 / norm) for k in g}, before, after)


@pytest.mark.parametrize("profile", PROFILES)
def test_gradient_lars_scales_each_parameter_by_its_trust_ratio(profile):
    hook = fast.optimizer_hooks.GradientLARS(threshold=1e-3, weight_decay=0.01, eps=1e-9)
    before, g, after, _ = one_hooked_sgd_step(hook, profile=profile)
    hooked = {}
    for k in g:
        p_norm, g_norm = np.linalg.norm(before[k]), np.linalg.norm(g[k])
        rate = p_norm / (1e-9 + g_norm + 0.01 * p_norm) if p_norm > 1e-3 else 1.0
        hooked[k] = (g[k] + 0.01 * before[k]) * rate
    assert_sgd_step_used(hooked, before, after)


def test_gradient_noise_calls_noise_func_with_chainers_arguments():
    """Chainer calls noise_func(xp, shape, dtype, hook, rule): the fifth argument is the
    parameter's update rule (named `opt` in Chainer's signature), seen before its step."""
    opt, params = make_optimizer("SGD", "float64", lr=LR)
    params["b"].update_rule.enabled = False
    run_steps(opt, params, 1)
    params["b"].update_rule.enabled = True
    calls = []

    def constant_noise(xp, shape, dtype, hook, rule):
        calls.append((xp, shape, np.dtype(dtype), hook, rule.t))
        return xp.full(shape, 0.25, dtype=dtype)

    hook = fast.optimizer_hooks.GradientNoise(eta=0.3, noise_func=constant_noise)
    opt.add_hook(hook)
    before = {k: p.data.copy() for k, p in params.items()}
    grads = gradients(params, 1)
    set_grads(params, {k: g.copy() for k, g in grads.items()})
    opt.update()

    assert sorted((c[1], c[4]) for c in calls) == [((3, 4), 1), ((5,), 0)]
    assert all(c[0] is np and c[2] == np.float64 and c[3] is hook for c in calls)
    assert_sgd_step_used({k: grads[k] + 0.25 for k in grads}, before,
                         {k: p.data for k, p in params.items()})


def test_fixed_profile_hooks_see_the_fp32_master_on_the_first_step():
    """fp16 + master, fixed profile: WeightDecay adds rate * master (fp32) and
    GradientClipping takes the norm of that fp32 gradient, from the very first step."""
    opt, params = make_optimizer("SGD", "fp16_master", "fixed", lr=LR)
    opt.add_hook(fast.optimizer_hooks.WeightDecay(0.05))
    opt.add_hook(fast.optimizer_hooks.GradientClipping(0.5))
    master = {k: p.data.astype(np.float64) for k, p in params.items()}
    grads = gradients(params, 0)
    set_grads(params, grads)
    opt.update()

    hooked = {k: grads[k].astype(np.float64) + 0.05 * master[k] for k in grads}
    norm = np.sqrt(sum(np.sum(v * v) for v in hooked.values()))
    expected = {k: master[k] - LR * hooked[k] * min(1.0, 0.5 / norm) for k in hooked}
    for key, p in params.items():
        np.testing.assert_allclose(p.update_rule.fp32_param, expected[key], rtol=1e-6,
                                   atol=1e-7, err_msg=key)


def test_fixed_profile_lars_uses_the_fp32_master_norm_on_the_first_step():
    opt, params = make_optimizer("SGD", "fp16_master", "fixed", lr=LR)
    opt.add_hook(fast.optimizer_hooks.GradientLARS(threshold=1e-3, weight_decay=0.01))
    master = {k: p.data.astype(np.float64) for k, p in params.items()}
    grads = gradients(params, 0)
    set_grads(params, grads)
    opt.update()

    for key, p in params.items():
        g = grads[key].astype(np.float64)
        p_norm, g_norm = np.linalg.norm(master[key]), np.linalg.norm(g)
        rate = p_norm / (1e-9 + g_norm + 0.01 * p_norm)
        expected = master[key] - LR * (g + 0.01 * master[key]) * rate
        np.testing.assert_allclose(p.update_rule.fp32_param, expected, rtol=1e-6, atol=1e-7,
                                   err_msg=key)


@pytest.mark.parametrize("profile", PROFILES)
def test_rule_level_lars_norms_follow_the_profile_on_fp16(profile):
    """A per-rule GradientLARS on fp16: the ``chainer`` profile takes NumPy's fp16 norm, where
    2.4e-5 ** 2 underflows to 0 (rate = |p| / (eps + wd |p|)); ``fixed`` takes it in float64.
    Found by the deep hypothesis campaign (a 0-d parameter, fixed profile)."""
    p0, g0 = np.float16(-0.809), np.float16(2.396e-05)
    param = fast.Parameter(np.array(p0))
    param.grad = np.array(g0)
    opt = fast.optimizers.SGD(lr=LR, profile=profile)
    opt.setup({"w": param})
    param.update_rule.add_hook(fast.optimizer_hooks.GradientLARS(0.01, 0.001))
    assert param.update_rule.profile == profile
    opt.update()

    g_norm = 0.0 if profile == "chainer" else abs(float(g0))
    rate = abs(float(p0)) / (1e-9 + g_norm + 0.001 * abs(float(p0)))
    hooked = np.float16(np.float16(float(g0) + 0.001 * float(p0)) * rate)
    expected = np.float16(float(p0) - np.float64(LR) * np.float64(hooked))
    assert param.data == expected, (param.data, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(-0.3, 0.2), (0.0, 0.0), (-0.0, 0.5), (-np.inf, 0.1)])
def test_gradient_hard_clipping_of_special_values_matches_the_reference_bitwise(bounds, dtype):
    """The kernel's clip keeps NumPy's rules: a NaN stays (with its sign), -0 and +0 at a
    zero bound, infinities clipped. Compared bit for bit with `reference` (p = 0, lr = 1)."""
    import reference
    specials = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 0.25, -0.25, 0.1, -1e-30,
                         1e30, 5e-324 if dtype == np.float64 else 1e-45], dtype=dtype)
    results = []
    for impl in (fast, reference):
        p = impl.Parameter(np.zeros(specials.size, dtype=dtype))
        opt = impl.optimizers.SGD(lr=1.0)
        opt.setup({"p": p})
        opt.add_hook(impl.optimizer_hooks.GradientHardClipping(*bounds))
        p.grad = specials.copy()
        opt.update()
        results.append(np.asarray(p.data).copy())
    assert results[0].tobytes() == results[1].tobytes(), (results[0], results[1])
