"""Dynamic and static loss scaling (Chainer 7.8.1, Optimizer.loss_scaling and
GradientMethod.update).

Dynamic rule, applied after every update: x0.5 on a step with a non-finite
gradient (the step is skipped); x2 on a finite step while no non-finite step
has ever been seen; x2**(1/interval) on a finite step after the first
non-finite one; the result clamped to [1, 65504]. Scale sequences are compared
with ==.
"""
import math

import numpy as np
import pytest

from reference import optimizers

from .helpers import (
    ALL_OPTIMIZERS, G1, W0, array, assert_bitwise_equal, assert_close,
    assert_states_bitwise_equal,
    quiet_step, single_param, state_copy, step,
)

FINITE = array(G1)
NONFINITE = {
    "inf": array((np.inf, 1.0, 1.0)),
    "-inf": array((1.0, -np.inf, 1.0)),
    "nan": array((1.0, 1.0, np.nan)),
}


def expected_scales(pattern, interval):
    """The scale after each step of `pattern` ('F' finite, 'N' non-finite)."""
    multiplier = math.pow(2.0, 1.0 / interval)
    scale, seen_nonfinite, scales = 1.0, False, []
    for kind in pattern:
        if kind == "N":
            seen_nonfinite = True
            scale = scale * 0.5
        elif seen_nonfinite:
            scale = scale * multiplier
        else:
            scale = scale * 2.0
        scale = max(1.0, min(65504.0, scale))
        scales.append(scale)
    return scales


def run_pattern(opt, param, pattern):
    """Feed finite ('F') or non-finite ('N') scaled gradients; return the scales."""
    scales = []
    for kind in pattern:
        grad = FINITE * opt.loss_scale if kind == "F" else NONFINITE["inf"]
        quiet_step(opt, param, grad)
        scales.append(opt.loss_scale)
    return scales


def test_loss_scale_is_none_until_configured(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    assert opt.loss_scale is None
    opt.loss_scaling()
    assert opt.loss_scale == 1.0


@pytest.mark.parametrize("interval", [1, 2, 3, 1000])
@pytest.mark.parametrize("pattern", [
    "FFFF",
    "NFFFFFF",
    "FFFNFFFFNNF",
    "NNNFNF",
    "FFNFFFFFFFFFFFFFFF",
])
def test_dynamic_scale_sequence(profile, interval, pattern):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=interval)
    assert run_pattern(opt, p, pattern) == expected_scales(pattern, interval)


def test_growth_is_clamped_at_65504_then_halves_from_there(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=1)
    scales = run_pattern(opt, p, "F" * 17 + "N")
    assert scales[14] == 32768.0
    assert scales[15] == 65504.0        # 65536 clamped
    assert scales[16] == 65504.0
    assert scales[17] == 32752.0


def test_shrink_is_clamped_at_1(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=4)
    scales = run_pattern(opt, p, "FNNNN")
    assert scales == [2.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", sorted(NONFINITE))
def test_every_kind_of_nonfinite_value_skips_the_step(profile, kind):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling()
    quiet_step(opt, p, NONFINITE[kind])
    assert_bitwise_equal(p.data, array(W0))
    assert opt.loss_scale == 1.0
    assert opt.is_safe_to_update() is False


def test_a_nonfinite_value_in_any_parameter_skips_every_parameter(profile):
    from reference import Parameter
    opt = optimizers.SGD(lr=0.1, profile=profile)
    a = Parameter(array(W0), name="a")
    b = Parameter(array(W0), name="b")
    opt.setup({"a": a, "b": b})
    opt.loss_scaling()
    a.grad = array(G1)
    b.grad = NONFINITE["nan"]
    with pytest.warns(Warning, match="b"):
        opt.update()
    assert_bitwise_equal(a.data, array(W0))
    assert_bitwise_equal(b.data, array(W0))
    assert a.update_rule.t == 0 and b.update_rule.t == 0
    assert opt.t == 1


@pytest.mark.parametrize("name, kwargs", [
    ("Adam", {"amsgrad": True}),
    ("AMSBound", {}),
    ("RMSpropGraves", {}),
    ("SMORMS3", {}),
    ("MSVAG", {}),
])
def test_skipped_step_leaves_params_and_state_bitwise_unchanged(profile, name, kwargs):
    opt = getattr(optimizers, name)(profile=profile, **kwargs)
    p = single_param(opt)
    opt.loss_scaling(interval=2)
    for _ in range(2):
        step(opt, p, FINITE * opt.loss_scale)
    params_before = np.array(p.data, copy=True)
    state_before = state_copy(p.update_rule)
    quiet_step(opt, p, NONFINITE["nan"])
    assert_bitwise_equal(p.data, params_before)
    assert_states_bitwise_equal(state_copy(p.update_rule), state_before)
    assert opt.t == 3
    assert p.update_rule.t == 2
    # The next finite step resumes as step 3 of the rule.
    step(opt, p, FINITE * opt.loss_scale)
    assert opt.t == 4
    assert p.update_rule.t == 3


def test_skipped_first_step_creates_no_state(profile):
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt)
    opt.loss_scaling()
    quiet_step(opt, p, NONFINITE["inf"])
    assert p.update_rule.state is None
    assert p.update_rule.t == 0
    assert opt.t == 1


def test_gradient_is_divided_by_the_dynamic_scale(profile):
    lr = 0.1
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=1)
    step(opt, p, FINITE * opt.loss_scale)           # scale 1 -> 2
    assert opt.loss_scale == 2.0
    step(opt, p, FINITE * opt.loss_scale)           # grad 2 g, divided by 2
    assert_close(p.data, array(W0) - 2 * lr * FINITE)


def test_static_scale_stays_put_and_divides_the_gradient(profile):
    lr = 0.1
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(scale=128.0)
    for expected_t in (1, 2, 3):
        step(opt, p, FINITE * 128.0)
        assert opt.loss_scale == 128.0
        assert opt.t == expected_t
    assert_close(p.data, array(W0) - 3 * lr * FINITE)


def test_set_loss_scale_is_static_scaling(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.set_loss_scale(16.0)
    step(opt, p, FINITE * 16.0)
    assert opt.loss_scale == 16.0


def test_static_scale_does_not_skip_nonfinite_steps(profile):
    # Chainer checks for non-finite gradients only under dynamic scaling.
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(scale=4.0)
    quiet_step(opt, p, NONFINITE["inf"])
    assert opt.is_safe_to_update() is True
    assert p.update_rule.t == 1
    assert p.data[0] == -np.inf
    assert opt.loss_scale == 4.0


def test_check_nan_in_grads_and_update_loss_scale_by_hand(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=2)
    p.grad = NONFINITE["nan"]
    with pytest.warns(Warning, match="(?i)non.?finite"):
        opt.check_nan_in_grads()
    assert opt.is_safe_to_update() is False
    opt.update_loss_scale()
    assert opt.loss_scale == 1.0
    p.grad = array(G1)
    opt.check_nan_in_grads()
    assert opt.is_safe_to_update() is True
    opt.update_loss_scale()
    assert opt.loss_scale == math.pow(2.0, 0.5)


def test_static_scale_after_dynamic_keeps_the_dynamic_schedule(profile):
    # Chainer's loss_scaling(scale=s) only sets the scale; the dynamic flag set
    # earlier stays, so the scale keeps growing from s.
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=1)
    opt.set_loss_scale(64.0)
    step(opt, p, FINITE * 64.0)
    assert opt.loss_scale == 128.0


def test_without_master_the_callers_gradient_is_unscaled_in_place(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(scale=4.0)
    step(opt, p, FINITE * 4.0)
    assert_bitwise_equal(p.grad, FINITE)


def test_with_master_the_fp16_gradient_stays_scaled(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = single_param(opt, dtype=np.float16)
    opt.use_fp32_update()
    opt.loss_scaling(scale=4.0)
    step(opt, p, FINITE * 4.0)
    assert_bitwise_equal(p.grad, (FINITE * 4.0).astype(np.float16))


class ScriptedLoss:
    """What a loss function returns: backward() writes g * loss_scale."""

    def __init__(self, param, grad, log):
        self.param, self.grad, self.log = param, grad, log

    def backward(self, loss_scale=None):
        self.log.append(("backward", self.param.grad, loss_scale))
        self.param.grad = self.grad * (1.0 if loss_scale is None else loss_scale)


def test_update_with_a_loss_function(profile):
    # Chainer: loss = lossfun(*args, **kwds); cleargrads; backward(loss_scale).
    lr = 0.1
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt)
    opt.loss_scaling(interval=1)
    step(opt, p, FINITE)                                  # scale 1 -> 2
    log = []

    def lossfun(x, *, y):
        log.append(("lossfun", x, y))
        return ScriptedLoss(p, FINITE, log)

    p.grad = array((9.0, 9.0, 9.0))                       # stale, must be cleared
    opt.update(lossfun, 1, y=2)
    assert log[0] == ("lossfun", 1, 2)
    assert log[1][0] == "backward" and log[1][1] is None and log[1][2] == 2.0
    assert_close(p.data, array(W0) - 2 * lr * FINITE)
    assert opt.loss_scale == 4.0


def test_loss_scale_is_converted_to_the_gradients_dtype_before_dividing(profile):
    # NumPy (Chainer's CPU path) converts the scale to the gradient's dtype
    # before dividing: float16(1.1) = 1.099609375, and the quotient is stored in
    # the fp16 gradient: fp16(0.09375 / 1.099609375) = 0.08526611328125, one fp16
    # ulp from fp16(0.09375 / 1.1) = 0.085205078125. SGD with lr = 1 from 0
    # exposes the unscaled gradient.
    opt = optimizers.SGD(lr=1.0, profile=profile)
    p = single_param(opt, values=(0.0,), dtype=np.float16)
    opt.loss_scaling(scale=1.1)
    step(opt, p, (0.09375,))
    assert_bitwise_equal(p.data, np.array([-0.08526611328125], np.float16))


def test_a_0d_gradient_is_divided_by_the_unrounded_loss_scale(profile):
    # NumPy 1.x treats a 0-d array as a scalar too, so 0-d grad /= 1.1 is a
    # float64 division: fp16(0.09375 / 1.1) = 0.085205078125 (checked against
    # NumPy 1.26, where the 1-element array of the test above gives 0.08526611328125).
    opt = optimizers.SGD(lr=1.0, profile=profile)
    p = single_param(opt, values=0.0, dtype=np.float16)
    opt.loss_scaling(scale=1.1)
    step(opt, p, 0.09375)
    assert_bitwise_equal(p.data, np.array(-0.085205078125, np.float16))


@pytest.mark.parametrize("name", ALL_OPTIMIZERS)
def test_a_skipped_step_is_invisible_to_the_trajectory(profile, name):
    # Everything a rule keeps between steps (state, rule.t and so Adam's bias
    # correction and AdaBound's bounds, MSVAG's beta_power) must ignore a
    # skipped step: g1, <non-finite>, g2, g3 ends where g1, g2, g3 does. The
    # scales met are powers of two, so unscaling is exact.
    grads = [array(G1), array((-1.5, 0.25, 1.0)), array((2.0, 1.0, -0.5))]
    plain = getattr(optimizers, name)(profile=profile)
    p = single_param(plain)
    for grad in grads:
        step(plain, p, grad)
    scaled = getattr(optimizers, name)(profile=profile)
    q = single_param(scaled)
    scaled.loss_scaling(interval=1)
    step(scaled, q, grads[0] * scaled.loss_scale)
    quiet_step(scaled, q, NONFINITE["nan"])
    for grad in grads[1:]:
        step(scaled, q, grad * scaled.loss_scale)
    assert_bitwise_equal(q.data, p.data)
    assert_states_bitwise_equal(state_copy(q.update_rule), state_copy(p.update_rule))
    assert q.update_rule.t == p.update_rule.t == 3
    assert scaled.t == 4


def test_adam_alpha_t_follows_the_optimizer_count_the_rule_its_own(profile):
    # After a skipped first step opt.t = 2 but the rule has made one update:
    # the update uses alpha_t(1); opt.alpha_t reports alpha_t(2).
    alpha, b1, b2 = 0.1, 0.9, 0.99
    opt = optimizers.Adam(alpha=alpha, beta1=b1, beta2=b2, eps=1e-3, profile=profile)
    p = single_param(opt)
    opt.loss_scaling()
    quiet_step(opt, p, NONFINITE["inf"])
    step(opt, p, FINITE * opt.loss_scale)
    m1, v1 = (1 - b1) * FINITE, (1 - b2) * FINITE ** 2
    alpha_t1 = alpha * math.sqrt(1 - b2) / (1 - b1)
    assert_close(p.data, array(W0) - alpha_t1 * m1 / (np.sqrt(v1) + 1e-3))
    assert opt.alpha_t == pytest.approx(alpha * math.sqrt(1 - b2 ** 2) / (1 - b1 ** 2),
                                        rel=1e-15)
