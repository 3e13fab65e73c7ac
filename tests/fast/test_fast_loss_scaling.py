"""Loss scaling: the dynamic scale sequence, skipped non-finite steps, unscaling, and
what optimizer hooks see in each profile."""

import warnings

import numpy as np
import pytest

import fast
from fast_testkit import (
    DTYPE_MODES, OPTIMIZER_NAMES, PROFILES, assert_same_snapshot, gradients, make_optimizer, make_params,
    run_steps, same_bits, set_grads, snapshot,
)


def step_with_non_finite_grad(opt, params, bad_value):
    """One update whose gradients carry `bad_value` in one element of one parameter."""
    grads = gradients(params, 99, scale=opt.loss_scale)
    grads["b"][2] = bad_value
    set_grads(params, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Chainer warns about the non-finite gradient
        opt.update()


def assert_skipped_step_changed_only_counters(before, after):
    """A skipped step: opt.t advanced by one, the loss scale halved, all else bitwise."""
    assert after["opt.t"] == before["opt.t"] + 1
    assert after["opt.loss_scale"] == before["opt.loss_scale"] / 2
    after = dict(after, **{"opt.t": before["opt.t"], "opt.loss_scale": before["opt.loss_scale"]})
    assert_same_snapshot(before, after)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_non_finite_step_is_skipped_bitwise_fp16_master(name, profile):
    opt, params = make_optimizer(name, "fp16_master", profile)
    opt.loss_scaling()
    run_steps(opt, params, 2)
    assert opt.loss_scale == 4.0
    before = snapshot(opt, params)
    step_with_non_finite_grad(opt, params, np.inf)
    assert_skipped_step_changed_only_counters(before, snapshot(opt, params))


@pytest.mark.parametrize("bad_value", [np.nan, -np.inf])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", list(DTYPE_MODES))
def test_non_finite_step_is_skipped_bitwise_in_every_mode(mode, profile, bad_value):
    opt, params = make_optimizer("AMSGrad", mode, profile)
    opt.loss_scaling()
    run_steps(opt, params, 3)
    before = snapshot(opt, params)
    step_with_non_finite_grad(opt, params, bad_value)
    assert_skipped_step_changed_only_counters(before, snapshot(opt, params))


@pytest.mark.parametrize("profile", PROFILES)
def test_training_resumes_normally_after_a_skipped_step(profile):
    opt, params = make_optimizer("Adam", "fp16_master", profile)
    opt.loss_scaling()
    run_steps(opt, params, 2)
    step_with_non_finite_grad(opt, params, np.inf)
    before = snapshot(opt, params)
    run_steps(opt, params, 1, first_step=3)
    for key, p in params.items():
        assert p.update_rule.t == 3
        assert np.any(p.update_rule.fp32_param != before[key + ".fp32_param"])
    assert opt.t == 4


def expected_dynamic_scales(events, interval):
    """Chainer's loss-scale sequence after each step; events: True for a non-finite step."""
    scale, multiplier, seen_non_finite, sequence = 1.0, 2.0 ** (1.0 / interval), False, []
    for non_finite in events:
        if non_finite:
            factor, seen_non_finite = 0.5, True
        else:
            factor = multiplier if seen_non_finite else 2.0
        scale = max(1, min(65504, scale * factor))
        sequence.append(scale)
    return sequence


@pytest.mark.parametrize("profile", PROFILES)
def test_dynamic_scale_sequence_matches_chainer_exactly(profile):
    events = [False] * 3 + [True] + [False] * 5 + [True, True] + [False] * 2
    opt, params = make_optimizer("MomentumSGD", "fp16_master", profile)
    opt.loss_scaling(interval=3)
    observed = []
    for step, non_finite in enumerate(events):
        if non_finite:
            step_with_non_finite_grad(opt, params, np.nan)
        else:
            run_steps(opt, params, 1, first_step=step)
        observed.append(opt.loss_scale)
    assert observed == expected_dynamic_scales(events, 3)


def test_dynamic_scale_is_clamped_to_fp16_max_and_to_one():
    opt, params = make_optimizer("SGD", "fp16_master", lr=1e-6)
    opt.loss_scaling()
    grads = {key: np.full(p.shape, 1e-3, np.float16) for key, p in params.items()}
    for _ in range(20):
        set_grads(params, grads)
        opt.update()
    assert opt.loss_scale == 65504
    for _ in range(17):
        step_with_non_finite_grad(opt, params, np.inf)
    assert opt.loss_scale == 1.0


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_power_of_two_loss_scale_is_divided_out_exactly(name):
    """Scaling a float64 gradient by 2**k and dividing it out is exact, so a run with
    static loss scaling matches the unscaled run bitwise."""
    scaled, p_scaled = make_optimizer(name, "float64")
    scaled.set_loss_scale(1024.0)
    plain, p_plain = make_optimizer(name, "float64")
    run_steps(scaled, p_scaled, 3)
    run_steps(plain, p_plain, 3)
    for key in p_plain:
        np.testing.assert_array_equal(p_scaled[key].data, p_plain[key].data, err_msg=key)


def test_static_loss_scaling_does_not_skip_non_finite_steps():
    """Chainer checks gradients only under dynamic scaling: a static scale applies the
    step whatever the gradients hold."""
    opt, params = make_optimizer("SGD", "float32")
    opt.set_loss_scale(8.0)
    step_with_non_finite_grad(opt, params, np.inf)
    assert params["b"].update_rule.t == 1
    assert np.isinf(params["b"].data[2])
    assert opt.loss_scale == 8.0


def test_check_nan_in_grads_and_is_safe_to_update():
    opt, params = make_optimizer("SGD", "float32")
    opt.loss_scaling()
    set_grads(params, gradients(params, 0))
    opt.check_nan_in_grads()
    assert opt.is_safe_to_update()
    params["w"].grad[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.check_nan_in_grads()
    assert not opt.is_safe_to_update()
    opt.update_loss_scale()
    assert opt.loss_scale == 1.0


def clipped_sgd_run(profile, scale, threshold):
    opt, params = make_optimizer("SGD", "float64", profile, lr=0.1)
    opt.add_hook(fast.optimizer_hooks.GradientClipping(threshold))
    if scale is not None:
        opt.set_loss_scale(scale)
    run_steps(opt, params, 2)
    return params


def test_fixed_profile_clips_the_unscaled_gradient():
    scaled = clipped_sgd_run("fixed", 256.0, threshold=0.5)
    unscaled = clipped_sgd_run("fixed", None, threshold=0.5)
    for key in unscaled:
        np.testing.assert_allclose(scaled[key].data, unscaled[key].data, rtol=1e-14)


def test_chainer_profile_clips_the_scaled_gradient():
    """Chainer's quirk: the hook sees S * g, so the effective threshold is threshold / S."""
    scaled = clipped_sgd_run("chainer", 256.0, threshold=0.5)
    unscaled = clipped_sgd_run("chainer", None, threshold=0.5 / 256.0)
    plain = clipped_sgd_run("chainer", None, threshold=0.5)
    for key in unscaled:
        np.testing.assert_allclose(scaled[key].data, unscaled[key].data, rtol=1e-14)
        assert not np.allclose(scaled[key].data, plain[key].data, rtol=1e-6)


@pytest.mark.parametrize("profile", PROFILES)
def test_weight_decay_is_independent_of_the_loss_scale(profile):
    def run(scale):
        opt, params = make_optimizer("SGD", "float64", profile, lr=0.1)
        opt.add_hook(fast.optimizer_hooks.WeightDecay(0.01))
        if scale is not None:
            opt.set_loss_scale(scale)
        run_steps(opt, params, 2)
        return params
    scaled, unscaled = run(64.0), run(None)
    for key in unscaled:
        np.testing.assert_allclose(scaled[key].data, unscaled[key].data, rtol=1e-14)


@pytest.mark.parametrize("profile", PROFILES)
def test_gradient_clipping_of_zero_gradients_stays_finite(profile):
    opt, params = make_optimizer("Adam", "fp16_master", profile)
    opt.add_hook(fast.optimizer_hooks.GradientClipping(1.0))
    opt.loss_scaling()
    before = {key: p.data.copy() for key, p in params.items()}
    for _ in range(2):
        set_grads(params, {key: np.zeros(p.shape, p.dtype) for key, p in params.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update()
    for key, p in params.items():
        np.testing.assert_array_equal(p.data, before[key], err_msg=key)
        assert all(np.all(np.isfinite(v)) for v in p.update_rule.state.values())


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("shape, expected", [((1,), 0.08526611328125), ((), 0.085205078125)])
def test_fp16_gradient_is_unscaled_as_numpy_1_casts_the_scale(profile, shape, expected):
    # Chainer's grad /= loss_scale under NumPy 1.26: an n-d fp16 gradient is divided by
    # float16(1.1) = 1.099609375; a 0-d one counts as a scalar, so the division is
    # float64. SGD with lr = 1 from 0 exposes the unscaled gradient.
    opt = fast.optimizers.SGD(lr=1.0, profile=profile)
    param = fast.Parameter(np.zeros(shape, np.float16), name="w")
    opt.setup({"w": param})
    opt.loss_scaling(scale=1.1)
    param.grad = np.full(shape, 0.09375, np.float16)  # already scaled
    opt.update()
    assert param.data.reshape(()) == np.float16(-expected)


def _clipping_optimizer(threshold=1e-3, profile="chainer", mode="float32"):
    opt, params = make_optimizer("Adam", mode, profile, shapes={"a": (70001,), "b": (3, 5), "c": (7,)})
    opt.loss_scaling()
    opt.add_hook(fast.optimizer_hooks.WeightDecay(1e-4))
    opt.add_hook(fast.optimizer_hooks.GradientClipping(threshold))
    return opt, params


@pytest.mark.parametrize("bad", [None, ("a", 70000), ("b", 14), ("c", 0)])
def test_check_in_the_norm_pass_gives_both_results(bad):
    """Engine.nonfinite_names_and_sums_of_squares: the names of nonfinite_names() and the
    sums of sums_of_squares(), bitwise, from the one reduction pass."""
    opt, params = _clipping_optimizer()
    grads = gradients(params, 0)
    if bad is not None:
        grads[bad[0]].reshape(-1)[bad[1]] = np.nan
    set_grads(params, grads)
    engine = opt.engine
    engine.collect_grads()
    ops = [fast.hook_ops.ConstOp(fast.hook_ops.ADD_PARAM, 1e-4)]
    scales = engine.loss_scales(8.0)
    names, (gsq, psq) = engine.nonfinite_names_and_sums_of_squares(ops, scales)
    assert names == engine.nonfinite_names() == ([] if bad is None else ["/" + bad[0]])
    expected_g, expected_p = engine.sums_of_squares(ops, scales)
    assert same_bits(gsq, expected_g) and same_bits(psq, expected_p)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", list(DTYPE_MODES))
def test_dynamic_scaling_with_clipping_reads_the_gradients_once(monkeypatch, mode, profile):
    """With GradientClipping planned, the non-finite check is made in its norm pass: no
    separate check, and the step (skipped or not) is bitwise the one of the separate check."""
    results = []
    for fused in (True, False):
        opt, params = _clipping_optimizer(profile=profile, mode=mode)
        if not fused:
            monkeypatch.setattr(type(opt), "_check_joining_hooks", lambda self: None)
        else:
            calls = []
            monkeypatch.setattr(opt.engine, "nonfinite_names", lambda: calls.append(1) or [])
        run_steps(opt, params, 2)
        step_with_non_finite_grad(opt, params, np.inf)
        run_steps(opt, params, 1, first_step=5)
        monkeypatch.undo()
        if fused:
            assert calls == []
        results.append(snapshot(opt, params))
    assert_same_snapshot(results[0], results[1])


def test_the_non_finite_warning_names_the_parameter_with_clipping():
    opt, params = _clipping_optimizer()
    run_steps(opt, params, 1)
    grads = gradients(params, 3, scale=opt.loss_scale)
    grads["c"][6] = -np.inf
    set_grads(params, grads)
    before = snapshot(opt, params)
    with pytest.warns(UserWarning, match=r"param.grad of /c \(iteration: 1"):
        opt.update()
    assert_skipped_step_changed_only_counters(before, snapshot(opt, params))


def test_the_engines_scope_combines_the_one_pass_flags_and_sums():
    """What an engine's tensors are part of (its scope: fast.distributed's ZeRO combines over
    the ranks) combines the non-finite flags and the sums of squares of the one reduction
    pass, once each per step, and what it returns is what the hooks use."""
    from fast.engine import LocalScope
    calls = []

    class Quadrupling(LocalScope):
        def combine_flags(self, bad):
            calls.append("flags")
            return bad

        def combine_sums(self, gsq, psq):
            calls.append("sums")
            return gsq * 4.0, psq

    results = []
    for scope in (None, Quadrupling()):
        params = make_params({"a": (70001,), "b": (3, 5)}, np.float32)
        for p in params.values():
            p.data[...] = 0
        opt = fast.optimizers.SGD(lr=0.5).setup(params, scope=scope)
        opt.loss_scaling()
        opt.add_hook(fast.optimizer_hooks.GradientClipping(1e-3))
        run_steps(opt, params, 1)
        results.append({k: p.data.copy() for k, p in params.items()})
    assert calls == ["flags", "sums"]
    # the norm the hook saw doubled: from zero, the clipped step is exactly half as long
    for k in results[0]:
        np.testing.assert_array_equal(results[1][k], results[0][k] / 2)


@pytest.mark.parametrize("scale", [65504.0, 3.0, 1000.0, 0.3, 1024.0])
def test_fp16_unscale_by_inverse_gives_the_division(scale):
    """Without a master, a large group's fp16 lanes unscale by the scale's inverse where that
    gives the division's result for every fp16 value (cpu_driver.cpp,
    f16_quotient_by_inverse: 65504, 3 and 1024 do; 1000 and 0.3 do not and keep the division).
    Every finite fp16 value, as a gradient in a group past 2^20 elements, steps bitwise as in
    the tile path, which divides (a GradientHardClipping that clips nothing sends it there)."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    values = bits.view(np.float16)[np.isfinite(bits.view(np.float16))]
    grad = np.tile(values, 17)  # 1,079,296 elements
    rng = np.random.default_rng(0)
    start = np.array(0.1 * rng.standard_normal(grad.size), dtype=np.float16)
    results = []
    for clip in (False, True):
        param = fast.Parameter(start.copy(), name="w")
        opt = fast.optimizers.Adam()
        opt.setup({"w": param})
        opt.set_loss_scale(scale)
        if clip:
            opt.add_hook(fast.optimizer_hooks.GradientHardClipping(-np.inf, np.inf))
        for _ in range(2):
            param.grad = grad.copy()
            with np.errstate(all="ignore"):
                opt.update()
        results.append(snapshot(opt, {"w": param}))
    assert_same_snapshot(results[0], results[1])
