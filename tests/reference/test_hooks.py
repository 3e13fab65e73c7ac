"""Optimizer hooks (Chainer 7.8.1, optimizer_hooks/*.py and the hook plumbing of
optimizer.py): each hook's arithmetic, both timings, optimizer and rule level,
registration order, and what they see under loss scaling in each profile.

All expected values use SGD, so a parameter moves by exactly -lr times the
gradient the hooks leave behind:
    WeightDecay(rate):              g += rate * w
    Lasso(rate):                    g += rate * sign(w)
    GradientHardClipping(lo, hi):   g = clip(g, lo, hi)
    GradientClipping(threshold):    g *= threshold / ||g||  when that is < 1
                                    (||g|| over all parameters together)
    GradientNoise(eta, noise_func): g += noise_func(xp, shape, dtype, hook, rule)
    GradientLARS(threshold, weight_decay, eps):
        g = (g + wd * w) * (||w|| / (eps + ||g|| + wd ||w||) if ||w|| > threshold else 1)
"""
import math

import numpy as np
import pytest

import reference
from reference import optimizer_hooks as hooks
from reference import optimizers

from .helpers import G1, G2, W0, array, assert_close, single_param, step

LR = 0.1
w0, g1, g2 = array(W0), array(G1), array(G2)


def sgd(profile="chainer"):
    return optimizers.SGD(lr=LR, profile=profile)


def two_params(opt):
    a = reference.Parameter(array((3.0, 0.0)), name="a")
    b = reference.Parameter(array((0.0, -1.0, 2.0)), name="b")
    opt.setup({"a": a, "b": b})
    return a, b


# ------------------------------------------------------- arithmetic, timing 'pre'

@pytest.mark.parametrize("level", ["optimizer", "rule"])
@pytest.mark.parametrize("hook, adjusted_grad", [
    (hooks.WeightDecay(0.5), g1 + 0.5 * w0),
    (hooks.Lasso(0.5), g1 + 0.5 * np.sign(w0)),
    (hooks.GradientHardClipping(-0.75, 1.5), array((0.5, -0.75, 1.5))),
], ids=["WeightDecay", "Lasso", "GradientHardClipping"])
def test_per_parameter_hook_before_the_update(profile, level, hook, adjusted_grad):
    opt = sgd(profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hook)
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * adjusted_grad)


class RecordingNoise:
    """A noise_func that returns 0.25 everywhere and records its arguments."""

    def __init__(self):
        self.calls = []

    def __call__(self, xp, shape, dtype, hook, opt):
        self.calls.append((xp, shape, dtype, hook, opt, opt.t))
        return xp.full(shape, 0.25, dtype=dtype)


def lars_grad(g, w, wd=0.1, eps=1e-9, threshold=1e-2):
    """GradientLARS by hand: (g + wd w) * ||w|| / (eps + ||g|| + wd ||w||)."""
    w_norm, g_norm = math.sqrt(np.sum(w * w)), math.sqrt(np.sum(g * g))
    rate = w_norm / (eps + g_norm + wd * w_norm) if w_norm > threshold else 1.0
    return (g + wd * w) * rate


POST_CASES = {
    "WeightDecay": (lambda: hooks.WeightDecay(0.5), lambda g, w: g + 0.5 * w),
    "Lasso": (lambda: hooks.Lasso(0.5), lambda g, w: g + 0.5 * np.sign(w)),
    "GradientHardClipping": (lambda: hooks.GradientHardClipping(-0.75, 1.5),
                             lambda g, w: np.clip(g, -0.75, 1.5)),
    "GradientNoise": (lambda: hooks.GradientNoise(0.3, noise_func=RecordingNoise()),
                      lambda g, w: g + 0.25),
    "GradientLARS": (lambda: hooks.GradientLARS(weight_decay=0.1), lars_grad),
}


@pytest.mark.parametrize("level", ["optimizer", "rule"])
@pytest.mark.parametrize("name", sorted(POST_CASES))
def test_every_per_parameter_hook_after_the_update(profile, level, name):
    # 'post': the update uses the raw gradient; the hook then rewrites the
    # gradient from the updated weights.
    make_hook, adjust = POST_CASES[name]
    opt = sgd(profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(make_hook(), timing="post")
    step(opt, p, g1)
    w1 = w0 - LR * g1
    assert_close(p.data, w1)
    assert_close(p.grad, adjust(g1, w1))


def test_gradient_clipping_after_the_update(profile):
    # ||g1|| = sqrt(5.25); threshold 1 scales the gradient left for the caller.
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.GradientClipping(1.0), timing="post")
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * g1)
    assert_close(p.grad, g1 / math.sqrt(5.25))


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_weight_decay_after_the_update_sees_the_new_weights(profile, level):
    rate = 0.5
    opt = sgd(profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hooks.WeightDecay(rate), timing="post")
    step(opt, p, g1)
    w1 = w0 - LR * g1
    assert_close(p.data, w1)
    assert_close(p.grad, g1 + rate * w1)


def test_hook_timing_attribute_decides_under_auto(profile):
    opt = sgd(profile)
    p = single_param(opt)
    decay = hooks.WeightDecay(0.5)
    decay.timing = "post"
    opt.add_hook(decay)
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * g1)


def test_gradient_clipping_scales_all_parameters_by_one_global_norm(profile):
    # ||(3, 0, 0, -1, 2)|| = sqrt(14); threshold 2 gives rate 2 / sqrt(14).
    opt = sgd(profile)
    a, b = two_params(opt)
    opt.add_hook(hooks.GradientClipping(2.0))
    a.grad, b.grad = array((3.0, 0.0)), array((0.0, -1.0, 2.0))
    opt.update()
    rate = 2.0 / math.sqrt(14.0)
    assert_close(a.data, array((3.0, 0.0)) - LR * rate * array((3.0, 0.0)))
    assert_close(b.data, array((0.0, -1.0, 2.0)) - LR * rate * array((0.0, -1.0, 2.0)))


def test_gradient_clipping_below_the_threshold_leaves_gradients_alone(profile):
    opt = sgd(profile)
    a, b = two_params(opt)
    opt.add_hook(hooks.GradientClipping(4.0))
    a.grad, b.grad = array((3.0, 0.0)), array((0.0, -1.0, 2.0))
    opt.update()
    assert_close(a.data, array((3.0, 0.0)) - LR * array((3.0, 0.0)))
    assert_close(b.data, array((0.0, -1.0, 2.0)) - LR * array((0.0, -1.0, 2.0)))


def test_gradient_clipping_of_zero_gradients_keeps_them_finite_zeros(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.GradientClipping(1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        step(opt, p, (0.0, 0.0, 0.0))
    assert np.all(np.isfinite(p.grad))
    assert np.array_equal(p.grad, np.zeros(3))
    assert np.array_equal(p.data, w0)


@pytest.mark.parametrize("threshold, rate", [
    # ||w0|| = ||g1|| = sqrt(5.25), weight_decay 0.1:
    (1e-2, math.sqrt(5.25) / (1e-9 + math.sqrt(5.25) + 0.1 * math.sqrt(5.25))),
    (10.0, 1.0),                                     # ||w0|| below threshold
])
@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_gradient_lars(profile, level, threshold, rate):
    wd, eps = 0.1, 1e-9
    opt = sgd(profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hooks.GradientLARS(threshold=threshold, weight_decay=wd, eps=eps))
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * (g1 + wd * w0) * rate)


def test_gradient_lars_defaults():
    lars = hooks.GradientLARS()
    assert (lars.threshold, lars.weight_decay, lars.eps) == (1e-2, 0.0, 1e-9)
    assert lars.call_for_each_param is True and lars.timing == "pre"


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_gradient_noise_calls_noise_func_with_chainers_arguments(profile, level):
    opt = sgd(profile)
    p = single_param(opt)
    step(opt, p, g1)
    w1 = np.array(p.data, copy=True)
    noise_func = RecordingNoise()
    noise = hooks.GradientNoise(0.3, noise_func=noise_func)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(noise)
    step(opt, p, g2)
    assert_close(p.data, w1 - LR * (g2 + 0.25))
    [(xp, shape, dtype, hook, rule, t)] = noise_func.calls
    assert xp is np
    assert tuple(shape) == (3,)
    assert np.dtype(dtype) == np.float64
    assert hook is noise
    # Chainer hands the parameter's update rule to noise_func as `opt`; its t
    # is the rule's count of updates (1 before this step's rule increment,
    # 2 inside the rule).
    assert rule is p.update_rule
    assert t == (1 if level == "optimizer" else 2)


def test_default_noise_is_gaussian_with_annealed_variance(profile):
    # std = sqrt(eta / (1 + t)^0.55) with t the rule's count before this step.
    eta, n = 0.25, 40000
    np.random.seed(0)
    opt = optimizers.SGD(lr=1.0, profile=profile)
    p = single_param(opt, values=np.zeros(n))
    for _ in range(2):
        step(opt, p, np.zeros(n))
    opt.add_hook(hooks.GradientNoise(eta))
    step(opt, p, np.zeros(n))
    drawn = -p.data
    expected_std = math.sqrt(eta / 3 ** 0.55)
    assert abs(drawn.mean()) < 5 * expected_std / math.sqrt(n)
    assert drawn.std() == pytest.approx(expected_std, rel=0.03)


# ---------------------------------------------------------------- ordering

class Recorder:
    """A hook that logs its label and the gradient it saw."""

    def __init__(self, log, label, per_param, timing="pre"):
        self.log, self.name, self.timing = log, label, timing
        self.call_for_each_param = per_param

    def __call__(self, *args):
        if self.call_for_each_param:
            rule, param = args
            self.log.append((self.name, param.grad.copy(), param.data.copy()))
        else:
            [opt] = args
            self.log.append((self.name, None, None))


def test_hooks_run_in_chainers_order(profile):
    log = []
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(Recorder(log, "opt-pre-1", False))
    opt.add_hook(Recorder(log, "opt-post-1", True, timing="post"))
    opt.add_hook(Recorder(log, "opt-pre-2", True))
    opt.add_hook(Recorder(log, "opt-post-2", False, timing="post"))
    p.update_rule.add_hook(Recorder(log, "rule-post", True, timing="post"))
    p.update_rule.add_hook(Recorder(log, "rule-pre", True))
    step(opt, p, g1)
    assert [name for name, _, _ in log] == [
        "opt-pre-1", "opt-pre-2", "rule-pre", "rule-post", "opt-post-1", "opt-post-2"]
    seen = {name: (grad, data) for name, grad, data in log}
    assert_close(seen["rule-pre"][1], w0)
    assert_close(seen["rule-post"][1], w0 - LR * g1)
    assert_close(seen["opt-post-1"][1], w0 - LR * g1)


def test_registration_order_decides_between_non_commuting_hooks(profile):
    decay_then_clip, clip_then_decay = sgd(profile), sgd(profile)
    p = single_param(decay_then_clip)
    q = single_param(clip_then_decay)
    decay_then_clip.add_hook(hooks.WeightDecay(0.5))
    decay_then_clip.add_hook(hooks.GradientHardClipping(-1.0, 1.0))
    clip_then_decay.add_hook(hooks.GradientHardClipping(-1.0, 1.0))
    clip_then_decay.add_hook(hooks.WeightDecay(0.5))
    step(decay_then_clip, p, g1)
    step(clip_then_decay, q, g1)
    # WeightDecay first: (1, -2, 2.25) clipped to (1, -1, 1).
    assert_close(p.data, w0 - LR * array((1.0, -1.0, 1.0)))
    # Clipping first: (0.5, -1, 1), then + 0.5 w0 = (1, -2, 1.25).
    assert_close(q.data, w0 - LR * array((1.0, -2.0, 1.25)))


def test_optimizer_level_hooks_run_before_rule_level_hooks(profile):
    opt = sgd(profile)
    p = single_param(opt)
    p.update_rule.add_hook(hooks.GradientHardClipping(-1.0, 1.0))
    opt.add_hook(hooks.WeightDecay(0.5))
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * array((1.0, -1.0, 1.0)))


def test_removed_hook_no_longer_runs(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.WeightDecay(0.5), name="decay")
    p.update_rule.add_hook(hooks.Lasso(0.5), name="lasso")
    opt.remove_hook("decay")
    p.update_rule.remove_hook("lasso")
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * g1)


def test_call_hooks_runs_the_optimizer_pre_hooks_now(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.WeightDecay(0.5))
    p.grad = array(G1)
    opt.call_hooks("pre")
    assert_close(p.grad, g1 + 0.5 * w0)
    assert_close(p.data, w0)


def test_same_hook_class_twice_under_distinct_names(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.WeightDecay(0.5))
    opt.add_hook(hooks.WeightDecay(0.25), name="WeightDecay2")
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * (g1 + 0.75 * w0))


@pytest.mark.parametrize("hook, name, per_param", [
    (hooks.WeightDecay(1.0), "WeightDecay", True),
    (hooks.Lasso(1.0), "Lasso", True),
    (hooks.GradientClipping(1.0), "GradientClipping", False),
    (hooks.GradientHardClipping(-1.0, 1.0), "GradientHardClipping", True),
    (hooks.GradientNoise(1.0), "GradientNoise", True),
    (hooks.GradientLARS(), "GradientLARS", True),
])
def test_hook_names_timings_and_granularity(hook, name, per_param):
    assert hook.name == name
    assert hook.timing == "pre"
    assert bool(getattr(hook, "call_for_each_param", False)) is per_param


# ----------------------------------------------------- under loss scaling

SCALE = 4.0   # a power of two: scaling and unscaling are exact


def scaled_sgd(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.loss_scaling(scale=SCALE)
    return opt, p


def test_weight_decay_rate_follows_the_scale_at_optimizer_level(profile):
    # chainer: rate * scale is added to the still-scaled gradient, so after
    # unscaling the decay is rate * w, as without scaling.
    opt, p = scaled_sgd(profile)
    opt.add_hook(hooks.WeightDecay(0.5))
    step(opt, p, SCALE * g1)
    assert_close(p.data, w0 - LR * (g1 + 0.5 * w0))


@pytest.mark.parametrize("hook, chainer_grad, fixed_grad", [
    # chainer: the hook acts on SCALE * g, then the rule divides by SCALE.
    (hooks.Lasso(0.5), g1 + 0.5 * np.sign(w0) / SCALE, g1 + 0.5 * np.sign(w0)),
    (hooks.GradientHardClipping(-1.0, 1.0),
     np.clip(SCALE * g1, -1.0, 1.0) / SCALE, np.clip(g1, -1.0, 1.0)),
    # ||g1|| = sqrt(5.25) < 4: fixed leaves it; chainer clips SCALE * g1.
    (hooks.GradientClipping(4.0), g1 * 4.0 / (SCALE * math.sqrt(5.25)), g1),
    (hooks.GradientLARS(threshold=1e-2, weight_decay=0.1),
     (SCALE * g1 + 0.1 * w0) / SCALE * math.sqrt(5.25)
     / (1e-9 + SCALE * math.sqrt(5.25) + 0.1 * math.sqrt(5.25)),
     (g1 + 0.1 * w0) * math.sqrt(5.25)
     / (1e-9 + math.sqrt(5.25) + 0.1 * math.sqrt(5.25))),
], ids=["Lasso", "GradientHardClipping", "GradientClipping", "GradientLARS"])
def test_optimizer_hooks_see_scaled_grads_only_in_chainer_profile(
        profile, hook, chainer_grad, fixed_grad):
    opt, p = scaled_sgd(profile)
    opt.add_hook(hook)
    step(opt, p, SCALE * g1)
    expected_grad = chainer_grad if profile == "chainer" else fixed_grad
    assert_close(p.data, w0 - LR * expected_grad)


def test_rule_level_hooks_see_unscaled_grads(profile):
    opt, p = scaled_sgd(profile)
    p.update_rule.add_hook(hooks.GradientHardClipping(-1.0, 1.0))
    p.update_rule.add_hook(hooks.Lasso(0.5))
    step(opt, p, SCALE * g1)
    assert_close(p.data, w0 - LR * (np.clip(g1, -1.0, 1.0) + 0.5 * np.sign(w0)))


def test_optimizer_hooks_run_on_a_skipped_step_rule_hooks_do_not(profile):
    log = []
    opt = sgd(profile)
    p = single_param(opt)
    opt.loss_scaling()
    opt.add_hook(Recorder(log, "opt-pre", False))
    opt.add_hook(Recorder(log, "opt-post", False, timing="post"))
    p.update_rule.add_hook(Recorder(log, "rule-pre", True))
    with pytest.warns(Warning):
        step(opt, p, (np.nan, 1.0, 1.0))
    assert [name for name, _, _ in log] == ["opt-pre", "opt-post"]


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_weight_decay_rate_under_scale_at_each_level(profile, level):
    # Chainer multiplies WeightDecay's rate by the loss scale recorded on the
    # parameter wherever the hook runs. At rule level the gradient is already
    # unscaled, so without a master the decay comes out SCALE times too
    # strong. The fixed profile uses the plain rate on unscaled gradients.
    rate = 0.5
    opt, p = scaled_sgd(profile)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hooks.WeightDecay(rate))
    step(opt, p, SCALE * g1)
    if profile == "chainer" and level == "rule":
        expected = w0 - LR * (g1 + rate * SCALE * w0)
    else:
        expected = w0 - LR * (g1 + rate * w0)
    assert_close(p.data, expected)


def test_gradient_clipping_with_zero_threshold_and_zero_norm(profile):
    # chainer: rate = 0 / 0 = NaN, and NaN >= 1 is false, so every gradient is
    # multiplied by NaN. fixed: gradients are left unchanged.
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.GradientClipping(0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        step(opt, p, (0.0, 0.0, 0.0))
    if profile == "chainer":
        assert np.all(np.isnan(p.data))
    else:
        assert np.array_equal(p.data, w0)
        assert np.array_equal(p.grad, np.zeros(3))


class BadTiming(hooks.Lasso):
    timing = "sometime"


def test_optimizer_hook_with_an_invalid_timing_attribute_falls_back_to_pre(profile):
    opt = sgd(profile)
    p = single_param(opt)
    with pytest.warns(Warning, match="defaulting timing to 'pre'"):
        opt.add_hook(BadTiming(0.5))
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * (g1 + 0.5 * np.sign(w0)))


def test_rule_hook_with_an_invalid_timing_attribute_runs_after_the_update(profile):
    # Chainer's rule-level registry has no fallback: anything but 'pre' is 'post'.
    opt = sgd(profile)
    p = single_param(opt)
    p.update_rule.add_hook(BadTiming(0.5))
    step(opt, p, g1)
    assert_close(p.data, w0 - LR * g1)
    assert_close(p.grad, g1 + 0.5 * np.sign(w0 - LR * g1))


def test_setup_again_resets_counters_and_optimizer_hooks(profile):
    opt = sgd(profile)
    p = single_param(opt)
    opt.add_hook(hooks.WeightDecay(0.5))
    step(opt, p, g1)
    opt.new_epoch()
    q = reference.Parameter(array(W0), name="w")
    opt.setup({"w": q})
    assert (opt.t, opt.epoch) == (0, 0)
    step(opt, q, g1)
    assert_close(q.data, w0 - LR * g1)


# ------------------------------------------------- fp16 gradients, no master

F16 = np.float16


def fp16(value):
    """`value` rounded to fp16, as a float."""
    return float(np.float16(value))


def test_gradient_clipping_sums_fp16_squared_norms_in_fp16(profile):
    # chainer: each g.dot(g) of an fp16 gradient is an fp16 scalar (200^2 =
    # 40000, finite) and Python's sum of two fp16 scalars stays fp16: 80000
    # overflows to inf, the rate threshold / inf is 0 and both gradients are
    # zeroed. fixed (docs/reference.md): the norm is kept in at least float32,
    # so the gradients are clipped to norm 1: 200 / sqrt(80000) each.
    opt = optimizers.SGD(lr=0.5, profile=profile)
    a = reference.Parameter(np.array([1.0], F16), name="a")
    b = reference.Parameter(np.array([2.0], F16), name="b")
    opt.setup({"a": a, "b": b})
    opt.add_hook(hooks.GradientClipping(1.0))
    a.grad = np.array([200.0], F16)
    b.grad = np.array([-200.0], F16)
    with np.errstate(over="ignore"):
        opt.update()
    clipped = 0.0 if profile == "chainer" else fp16(200.0 / math.sqrt(80000.0))
    assert np.array_equal(a.grad, np.array([clipped], F16))
    assert np.array_equal(b.grad, np.array([-clipped], F16))
    assert np.array_equal(a.data, np.array([fp16(1.0 - 0.5 * clipped)], F16))
    assert np.array_equal(b.data, np.array([fp16(2.0 + 0.5 * clipped)], F16))


def test_gradient_lars_fp16_norm_overflows(profile):
    # chainer: numpy.linalg.norm of an fp16 array is an fp16 dot and an fp16
    # sqrt: ||(300)|| overflows (90000 > 65504), the local rate
    # ||w|| / (eps + inf + wd ||w||) is 0 and the gradient is zeroed. fixed:
    # the norm is 300, and the two stores are g = fp16(300 + 0.1 * 1) = 300,
    # then g = fp16(300 * 1 / (1e-9 + 300 + 0.1)).
    lr, wd, eps = 0.25, 0.1, 1e-9
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt, values=(1.0,), dtype=F16)
    opt.add_hook(hooks.GradientLARS(threshold=1e-2, weight_decay=wd, eps=eps))
    with np.errstate(over="ignore"):
        step(opt, p, (300.0,))
    if profile == "chainer":
        grad = 0.0
    else:
        decayed = fp16(300.0 + wd * 1.0)
        grad = fp16(decayed * 1.0 / (eps + 300.0 + wd * 1.0))
        assert 0.99 < grad < 1.0
    assert np.array_equal(p.grad, np.array([grad], F16))
    assert np.array_equal(p.data, np.array([fp16(1.0 - lr * grad)], F16))
