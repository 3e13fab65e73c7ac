"""fp16 parameters with an fp32 master (`use_fp32_update`), and without one
(Chainer 7.8.1, UpdateRule.update and use_fp32_update).

With the master: at the rule's first update the master is created from the
fp16 values, the fp16 gradient is converted to fp32 (then divided by the loss
scale), the update and its state run in fp32 on the master, and the fp16
parameter is written from the master. The master is never re-read from the
fp16 parameter afterwards.

The inputs below are dyadic, so every expected value is exact in fp32.
"""
import math

import numpy as np
import pytest

import reference
from reference import optimizer_hooks as hooks
from reference import optimizers

from .helpers import G1, W0, array, assert_bitwise_equal, single_param, step

F16, F32 = np.float16, np.float32

# lr * g = 3 * 2**-14: below half the fp16 spacing just under 1 (2**-11), so an
# fp16 update of 1.0 rounds back to 1.0, while the fp32 master keeps it.
LR = 2.0 ** -12
GRAD = 0.75


def fp16_sgd(profile="chainer", master=True):
    opt = optimizers.SGD(lr=LR, profile=profile)
    p = single_param(opt, values=(1.0, 1.0), dtype=F16)
    if master:
        opt.use_fp32_update()
    return opt, p


def test_master_is_none_until_the_first_update(profile):
    opt, p = fp16_sgd(profile)
    assert p.update_rule.fp32_param is None


def test_master_keeps_what_fp16_rounds_away(profile):
    opt, p = fp16_sgd(profile)
    step(opt, p, (GRAD, GRAD))
    master = p.update_rule.fp32_param
    assert_bitwise_equal(master, array((1 - 3 * 2.0 ** -14,) * 2, F32))
    assert_bitwise_equal(p.data, array((1.0, 1.0), F16))          # rounded back
    step(opt, p, (GRAD, GRAD))
    assert_bitwise_equal(p.update_rule.fp32_param, array((1 - 6 * 2.0 ** -14,) * 2, F32))
    assert_bitwise_equal(p.data, array((1 - 2.0 ** -11,) * 2, F16))


def test_without_master_fp16_updates_stagnate(profile):
    opt, p = fp16_sgd(profile, master=False)
    for _ in range(3):
        step(opt, p, (GRAD, GRAD))
    assert_bitwise_equal(p.data, array((1.0, 1.0), F16))
    assert p.update_rule.fp32_param is None


def test_master_is_created_once_from_the_values_at_the_first_update(profile):
    opt, p = fp16_sgd(profile)
    p.data = array((0.1, -3.0), F16)                # changed after setup
    step(opt, p, (0.0, 0.0))
    master = p.update_rule.fp32_param
    assert_bitwise_equal(master, array((0.1, -3.0), F16).astype(F32))
    # Writing the fp16 parameter later does not reach the master.
    p.data = array((5.0, 5.0), F16)
    step(opt, p, (0.0, 0.0))
    assert_bitwise_equal(p.update_rule.fp32_param, array((0.1, -3.0), F16).astype(F32))
    assert_bitwise_equal(p.data, array((0.1, -3.0), F16))


@pytest.mark.parametrize("order", ["before setup", "after setup"])
def test_use_fp32_update_before_or_after_setup(profile, order):
    opt = optimizers.SGD(lr=LR, profile=profile)
    if order == "before setup":
        opt.use_fp32_update()
    p = single_param(opt, values=(1.0, 1.0), dtype=F16)
    if order == "after setup":
        opt.use_fp32_update()
    step(opt, p, (GRAD, GRAD))
    assert p.update_rule.fp32_param is not None
    assert p.update_rule.fp32_param.dtype == F32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_master_for_parameters_that_are_not_fp16(profile, dtype):
    opt = optimizers.Adam(profile=profile)
    opt.use_fp32_update()
    p = single_param(opt, dtype=dtype)
    step(opt, p, G1)
    assert p.update_rule.fp32_param is None
    assert p.data.dtype == dtype
    assert all(v.dtype == dtype for v in p.update_rule.state.values())


@pytest.mark.parametrize("name", ["Adam", "AMSBound", "RMSpropGraves", "SMORMS3", "MSVAG"])
def test_master_state_is_fp32_and_parameter_is_written_from_master(profile, name):
    opt = getattr(optimizers, name)(profile=profile)
    p = single_param(opt, dtype=F16)
    opt.use_fp32_update()
    for grad in (G1, (-1.5, 0.25, 1.0)):
        step(opt, p, grad)
        master = p.update_rule.fp32_param
        assert master.dtype == F32
        assert p.data.dtype == F16
        assert_bitwise_equal(p.data, master.astype(F16))
        assert all(v.dtype == F32 for v in p.update_rule.state.values())


@pytest.mark.parametrize("name", ["MomentumSGD", "Adam", "RMSpropGraves"])
def test_fp16_without_master_keeps_fp16_state(profile, name):
    opt = getattr(optimizers, name)(profile=profile)
    p = single_param(opt, dtype=F16)
    step(opt, p, G1)
    assert p.data.dtype == F16
    assert all(v.dtype == F16 for v in p.update_rule.state.values())


def test_adam_master_follows_the_float64_values_to_fp32_accuracy(profile):
    alpha, b1, b2, eps = 0.1, 0.9, 0.99, 1e-3
    opt = optimizers.Adam(alpha=alpha, beta1=b1, beta2=b2, eps=eps, profile=profile)
    p = single_param(opt, dtype=F16)
    opt.use_fp32_update()
    step(opt, p, G1)
    w0, g1 = array(W0), array(G1)
    m1 = (1 - b1) * g1
    v1 = (1 - b2) * g1 ** 2
    alpha_t = alpha * math.sqrt(1 - b2) / (1 - b1)
    w1 = w0 - alpha_t * m1 / (np.sqrt(v1) + eps)
    # A handful of fp32 roundings (unit roundoff 2**-24) on values of order 1.
    np.testing.assert_allclose(p.update_rule.fp32_param, w1, rtol=2e-6, atol=0)
    np.testing.assert_allclose(p.update_rule.state["m"], m1, rtol=2e-6, atol=0)
    np.testing.assert_allclose(p.update_rule.state["v"], v1, rtol=2e-6, atol=0)


class GradRecorder:
    """Rule-level hook recording the dtype and values it is handed."""
    name = "GradRecorder"
    call_for_each_param = True

    def __init__(self):
        self.seen = []

    def __call__(self, rule, param):
        self.seen.append((param.grad.dtype, param.grad.copy(), param.data.dtype))


def test_rule_hooks_see_the_fp32_unscaled_grad_on_the_master(profile):
    opt, p = fp16_sgd(profile)
    opt.loss_scaling(scale=1024.0)
    recorder = GradRecorder()
    p.update_rule.add_hook(recorder)
    step(opt, p, (GRAD * 1024.0, -GRAD * 1024.0))
    [(grad_dtype, grad, data_dtype)] = recorder.seen
    assert grad_dtype == F32 and data_dtype == F32
    assert_bitwise_equal(grad, array((GRAD, -GRAD), F32))


def test_optimizer_hooks_see_fp16_scaled_grads_only_in_chainer_profile(profile):
    opt, p = fp16_sgd(profile)
    opt.loss_scaling(scale=1024.0)
    recorder = GradRecorder()
    opt.add_hook(recorder)
    step(opt, p, (GRAD * 1024.0, -GRAD * 1024.0))
    [(grad_dtype, grad, _)] = recorder.seen
    if profile == "chainer":
        assert grad_dtype == F16
        assert_bitwise_equal(grad, array((GRAD * 1024.0, -GRAD * 1024.0), F16))
    else:
        assert grad_dtype == F32
        assert_bitwise_equal(grad, array((GRAD, -GRAD), F32))


def test_gradient_clipping_norm_overflow_under_fp16_loss_scaling(profile):
    # Scaled fp16 gradients of 1024: their squares overflow fp16, the norm is
    # inf and Chainer's clipping rate threshold / inf = 0 zeroes the step. The
    # fixed profile clips the unscaled fp32 gradient: norm 2, threshold 1.
    lr = 0.5
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt, values=(1.0, 1.0, 1.0, 1.0), dtype=F16)
    opt.use_fp32_update()
    opt.loss_scaling(scale=1024.0)
    opt.add_hook(hooks.GradientClipping(1.0))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        step(opt, p, (1024.0,) * 4)
    if profile == "chainer":
        expected = array((1.0,) * 4, F32)
    else:
        expected = array((1.0 - lr * 0.5,) * 4, F32)
    assert_bitwise_equal(p.update_rule.fp32_param, expected)
    assert_bitwise_equal(p.data, expected.astype(F16))


def test_skipped_step_leaves_master_and_fp16_parameter_bitwise_unchanged(profile):
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt, dtype=F16)
    opt.use_fp32_update()
    opt.loss_scaling()
    step(opt, p, G1)
    master = np.array(p.update_rule.fp32_param, copy=True)
    data = np.array(p.data, copy=True)
    with pytest.warns(Warning):
        step(opt, p, (np.inf, 1.0, 1.0))
    assert_bitwise_equal(p.update_rule.fp32_param, master)
    assert_bitwise_equal(p.data, data)
    assert p.update_rule.t == 1 and opt.t == 2


def test_fp16_parameter_object_stays_a_parameter(profile):
    opt, p = fp16_sgd(profile)
    step(opt, p, (GRAD, GRAD))
    assert isinstance(p, reference.Parameter)
    assert p.dtype == F16 and p.shape == (2,)


def test_rule_level_weight_decay_with_master_uses_the_plain_rate(profile):
    # Chainer's fp32 master carries no loss scale, so a rule-level WeightDecay
    # on it adds rate * w to the unscaled fp32 gradient in both profiles.
    # w = 1, g = 0.75 * 1024 / 1024, rate = 2**-2: master = 1 - lr (0.75 + 0.25).
    opt, p = fp16_sgd(profile)
    opt.loss_scaling(scale=1024.0)
    p.update_rule.add_hook(hooks.WeightDecay(0.25))
    step(opt, p, (GRAD * 1024.0, GRAD * 1024.0))
    assert_bitwise_equal(p.update_rule.fp32_param, array((1 - LR,) * 2, F32))


def test_use_fp32_update_false_after_setup_turns_the_master_on(profile):
    # Chainer's GradientMethod.use_fp32_update(False) calls each existing
    # rule's use_fp32_update() with its default True.
    opt, p = fp16_sgd(profile, master=False)
    opt.use_fp32_update(False)
    step(opt, p, (GRAD, GRAD))
    assert p.update_rule.fp32_param is not None
    assert_bitwise_equal(p.update_rule.fp32_param, array((1 - 3 * 2.0 ** -14,) * 2, F32))


@pytest.mark.parametrize("master", [False, True], ids=["fp16 state", "fp32 master"])
def test_adam_rounds_every_store_to_its_storage_dtype(profile, master):
    # Two Adam steps on an fp16 parameter. Each stored array is rounded to its
    # dtype (fp16 state without a master; fp32 state and master with one, the
    # fp16 parameter written from the master); the math between stores is exact
    # here, as in Chainer's fp32 kernels up to fp32 roundings that the inputs
    # keep away from the fp16/fp32 rounding boundaries.
    alpha, b1, b2, eps = 0.1, 0.9, 0.99, 1e-3
    state_dtype = F32 if master else F16
    opt = optimizers.Adam(alpha=alpha, beta1=b1, beta2=b2, eps=eps, profile=profile)
    p = single_param(opt, dtype=F16)
    if master:
        opt.use_fp32_update()

    def stored(values):
        return np.asarray(values, np.float64).astype(state_dtype).astype(np.float64)

    w, g1, g2 = array(W0), array(G1), array((-1.5, 0.25, 1.0))
    step(opt, p, G1)
    m1 = stored((1 - b1) * g1)
    v1 = stored((1 - b2) * g1 ** 2)
    w1 = stored(w - alpha * math.sqrt(1 - b2) / (1 - b1) * m1 / (np.sqrt(v1) + eps))
    step(opt, p, g2)
    m2 = stored(m1 + (1 - b1) * (g2 - m1))
    v2 = stored(v1 + (1 - b2) * (g2 ** 2 - v1))
    alpha_t2 = alpha * math.sqrt(1 - b2 ** 2) / (1 - b1 ** 2)
    w2 = stored(w1 - alpha_t2 * m2 / (np.sqrt(v2) + eps))
    state = p.update_rule.state
    assert_bitwise_equal(state["m"], m2.astype(state_dtype))
    assert_bitwise_equal(state["v"], v2.astype(state_dtype))
    assert_bitwise_equal(p.data, w2.astype(F16))
    if master:
        assert_bitwise_equal(p.update_rule.fp32_param, w2.astype(F32))


def test_skipped_first_step_creates_no_master(profile):
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt, dtype=F16)
    opt.use_fp32_update()
    opt.loss_scaling()
    with pytest.warns(Warning):
        step(opt, p, (np.nan, 1.0, 1.0))
    assert p.update_rule.fp32_param is None
    assert p.update_rule.state is None
    assert p.update_rule.t == 0
    assert_bitwise_equal(p.data, array(W0, F16))
