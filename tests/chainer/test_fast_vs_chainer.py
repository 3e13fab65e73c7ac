"""`fast` in the chainer profile against Chainer 7.8.1 itself (in .venv-chainer: it needs
NumPy < 2). In float64, float32 and fp16 with an fp32 master, Chainer's NumPy
path and `fast`'s kernels perform the same rounded operations in the same order, so
parameters, masters and state agree bit for bit. (Plain fp16 is left out: Chainer does the
arithmetic in fp16 there, `fast` in fp32 by design.)"""

import warnings

import numpy as np
import pytest

import chainer

import fast
from tests.chainer.chainer_kit import ADAM_FAMILY
from tests.fast.fast_testkit import DTYPE_MODES, OPTIMIZER_NAMES, gradients, make_params

MODES = ("float64", "float32", "fp16_master")


def chainer_link(values):
    link = chainer.Link()
    with link.init_scope():
        for name, value in values.items():
            setattr(link, name, chainer.Parameter(value.copy()))
    return link


def run_both(name, mode, steps=4, loss_scaling=False, bad_step=None, hook=None,
             static_scale=None):
    """The same steps on `fast` (chainer profile) and on Chainer. `hook(module)` builds
    an optimizer hook from fast.optimizer_hooks or chainer.optimizer_hooks."""
    dtype, master = DTYPE_MODES[mode]
    ours = make_params(dtype=dtype)
    theirs = chainer_link({k: p.data for k, p in ours.items()})
    opt_ours = getattr(fast.optimizers, name)().setup(ours)
    opt_theirs = getattr(chainer.optimizers, name)().setup(theirs)
    for opt, hooks in ((opt_ours, fast.optimizer_hooks),
                       (opt_theirs, chainer.optimizer_hooks)):
        if master:
            opt.use_fp32_update()
        if loss_scaling:
            opt.loss_scaling(interval=2)
        if static_scale is not None:
            opt.set_loss_scale(static_scale)
        if hook is not None:
            opt.add_hook(hook(hooks))
    scales = []
    for step in range(steps):
        scale = 1.0 if opt_ours.loss_scale is None else opt_ours.loss_scale
        grads = gradients(ours, step, scale=scale)
        if step == bad_step:
            grads["w"][1, 1] = np.inf
        for key, g in grads.items():
            ours[key].grad = g.copy()
            their_param = getattr(theirs, key)
            their_param.grad = g.copy()
            # Chainer divides by the scale that backward(loss_scale=...) leaves on each
            # parameter; gradients set by hand carry none, so set what backward would.
            their_param._loss_scale = opt_theirs._loss_scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt_ours.update()
            opt_theirs.update()
        scales.append((opt_ours.loss_scale, opt_theirs._loss_scale))
    return ours, theirs, scales


def assert_bitwise(ours, theirs, what):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype, what
    assert ours.tobytes() == theirs.tobytes(), (
        f"{what}: max difference {np.max(np.abs(ours.astype(float) - theirs.astype(float)))}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_steps_match_chainer_bit_for_bit(name, mode):
    ours, theirs, _ = run_both(name, mode)
    for key, p in ours.items():
        their_param = getattr(theirs, key)
        rule, their_rule = p.update_rule, their_param.update_rule
        assert rule.t == their_rule.t
        assert_bitwise(p.data, their_param.array, f"{key}.data")
        if DTYPE_MODES[mode][1]:
            assert_bitwise(rule.fp32_param, their_rule._fp32_param.array, f"{key}.fp32_param")
        assert set(rule.state) == set(their_rule.state)
        for state_key, value in their_rule.state.items():
            assert_bitwise(rule.state[state_key], value, f"{key}.state[{state_key!r}]")


@pytest.mark.parametrize("name", ["Adam", "MomentumSGD", "SMORMS3"])
def test_dynamic_loss_scaling_matches_chainer_bit_for_bit(name):
    ours, theirs, scales = run_both(name, "fp16_master", steps=6, loss_scaling=True,
                                    bad_step=3)
    assert all(a == b for a, b in scales), scales
    for key, p in ours.items():
        assert p.update_rule.t == getattr(theirs, key).update_rule.t == 5
        assert_bitwise(p.data, getattr(theirs, key).array, f"{key}.data")


def constant_noise(xp, shape, dtype, hook, rule):
    return xp.full(shape, 0.125, dtype=dtype)


HOOKS = {
    "WeightDecay": lambda m: m.WeightDecay(0.01),
    "Lasso": lambda m: m.Lasso(0.01),
    "GradientClipping": lambda m: m.GradientClipping(0.5),
    "GradientHardClipping": lambda m: m.GradientHardClipping(-0.5, 0.25),
    "GradientNoise": lambda m: m.GradientNoise(0.1, noise_func=constant_noise),
    "GradientLARS": lambda m: m.GradientLARS(threshold=1e-3, weight_decay=0.01),
}


ELEMENTWISE_HOOKS = ("WeightDecay", "Lasso", "GradientHardClipping", "GradientNoise")
REDUCING_HOOKS = ("GradientClipping", "GradientLARS")
HOOK_CASES = [("float64", None), ("float32", None), ("fp16_master", None), ("fp16_master", 8.0)]
HOOK_STEPS = 3


@pytest.mark.parametrize("mode, static_scale", HOOK_CASES)
@pytest.mark.parametrize("hook", ELEMENTWISE_HOOKS)
def test_elementwise_hooks_match_chainer_bit_for_bit(hook, mode, static_scale):
    """Including Chainer's quirk: with loss scaling, hooks act on the scaled fp16 grads."""
    ours, theirs, _ = run_both("MomentumSGD", mode, steps=HOOK_STEPS, hook=HOOKS[hook],
                               static_scale=static_scale)
    for key, p in ours.items():
        assert_bitwise(p.data, getattr(theirs, key).array, f"{key}.data")
        assert_bitwise(p.update_rule.state["v"], getattr(theirs, key).update_rule.state["v"],
                       f"{key}.state['v']")


@pytest.mark.parametrize("mode, static_scale", HOOK_CASES)
@pytest.mark.parametrize("hook", REDUCING_HOOKS)
def test_norm_based_hooks_match_chainer_to_gradient_rounding(hook, mode, static_scale):
    """Norms are sums: Chainer takes them with NumPy's dot in the gradient's dtype, `fast`
    in double, so a clipping or trust rate may differ in its last bits and a rescaled
    gradient element by one ulp of the dtype the hook sees (fp16 in the chainer profile
    with a master). MomentumSGD accumulates at most one such ulp per step into v (relative
    to the largest |v|), and p adds up v, plus one rounding of its own storage."""
    ours, theirs, _ = run_both("MomentumSGD", mode, steps=HOOK_STEPS, hook=HOOKS[hook],
                               static_scale=static_scale)
    hook_eps = float(np.finfo(DTYPE_MODES[mode][0]).eps)
    for key, p in ours.items():
        their_param = getattr(theirs, key)
        their_v = their_param.update_rule.state["v"].astype(np.float64)
        v_bound = HOOK_STEPS * hook_eps * np.max(np.abs(their_v))
        np.testing.assert_allclose(p.update_rule.state["v"], their_v, rtol=0, atol=v_bound,
                                   err_msg=f"{key}.state['v']")
        data = their_param.array.astype(np.float64)
        data_bound = HOOK_STEPS * v_bound + float(np.spacing(np.max(np.abs(their_param.array))))
        np.testing.assert_allclose(p.data.astype(np.float64), data, rtol=0, atol=data_bound,
                                   err_msg=f"{key}.data")


LONG_RUN_STEPS = 20


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ADAM_FAMILY)
def test_the_adam_family_matches_chainer_past_the_first_steps(name, mode):
    """alpha_t depends on t; the steps above stop at t = 4. (fast takes beta ** t with C's
    pow, as Chainer's math.pow does: NumPy's vectorised power differed in the last bit from
    t = 8 on AVX-512 CPUs.)"""
    ours, theirs, _ = run_both(name, mode, steps=LONG_RUN_STEPS)
    for key, p in ours.items():
        assert_bitwise(p.data, getattr(theirs, key).array, f"{key}.data")
