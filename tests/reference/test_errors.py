"""Every error the public API raises: its type, a message naming the problem,
and what the failed call changed: nothing (parameters, state, counters, loss
scale), except where Chainer raises midway through a step (eps too small,
raised by update_core), which changes what Chainer's step changed before it.

Chainer 7.8.1's own errors keep Chainer's types and wording
(optimizer.py, optimizers/adam.py, optimizers/rmsprop.py).
"""
import numpy as np
import pytest

import reference
from reference import optimizer_hooks as hooks
from reference import optimizers

from .helpers import (
    G1, G2, W0, array, assert_bitwise_equal, assert_states_bitwise_equal, quiet_step,
    single_param, state_copy, step,
)


class Snapshot:
    """Everything a failed call must leave as it was."""

    def __init__(self, opt, params):
        self.opt, self.params = opt, params
        self.t, self.epoch = opt.t, opt.epoch
        self.loss_scale = opt.loss_scale
        self.data = [np.array(p.data, copy=True) for p in params]
        self.rules = [(p.update_rule.t, state_copy(p.update_rule)) for p in params]

    def assert_unchanged(self):
        assert self.opt.t == self.t
        assert self.opt.epoch == self.epoch
        assert self.opt.loss_scale == self.loss_scale
        for p, data, (rule_t, state) in zip(self.params, self.data, self.rules):
            assert_bitwise_equal(p.data, data)
            assert p.update_rule.t == rule_t
            assert_states_bitwise_equal(state_copy(p.update_rule), state)

    def assert_rejected_midway(self):
        """Chainer's update rejected by the one rule's update_core: opt.t and the rule's
        t advanced, its state created (zeros) if it had none, nothing else changed."""
        assert self.opt.t == self.t + 1
        assert self.opt.epoch == self.epoch
        assert self.opt.loss_scale == self.loss_scale
        for p, data, (rule_t, state) in zip(self.params, self.data, self.rules):
            assert_bitwise_equal(p.data, data)
            assert p.update_rule.t == rule_t + 1
            if state is None:
                assert all(not np.any(v) for v in p.update_rule.state.values())
            else:
                assert_states_bitwise_equal(state_copy(p.update_rule), state)


def stepped(opt, dtype=np.float64):
    """`opt` set up on one parameter and stepped once; returns the parameter."""
    p = single_param(opt, dtype=dtype)
    step(opt, p, G1)
    return p


# ------------------------------------------------------- eps too small

@pytest.mark.parametrize("make, dtype, message", [
    (lambda: optimizers.Adam(eps=1e-50), np.float32,
     r"eps of Adam optimizer is too small for float32 \(1e-50\)"),
    (lambda: optimizers.Adam(eps=1e-50), np.float16,        # math in float32
     r"eps of Adam optimizer is too small for float32 \(1e-50\)"),
    (lambda: optimizers.AMSBound(eps=1e-50), np.float32,
     r"eps of Adam optimizer is too small for float32 \(1e-50\)"),
    (lambda: optimizers.RMSprop(eps=1e-50), np.float32,
     r"eps of RMSprop optimizer is too small for float32 \(1e-50\)"),
    (lambda: optimizers.RMSprop(eps=1e-8), np.float16,
     r"eps of RMSprop optimizer is too small for float16 \(1e-08\)"),
])
@pytest.mark.parametrize("when", ["first step", "later step"])
def test_eps_too_small_for_the_dtype(make, dtype, message, when):
    # Chainer raises midway through the rule's update: after opt.t += 1, rule.t += 1 and
    # the state's creation.
    opt = make()
    p = single_param(opt, dtype=dtype)
    if when == "later step":
        too_small = opt.eps
        opt.eps = 1e-3
        step(opt, p, G1)
        opt.eps = too_small
    snapshot = Snapshot(opt, [p])
    p.grad = array(G1, dtype)
    with pytest.raises(ValueError, match=message):
        opt.update()
    snapshot.assert_rejected_midway()


@pytest.mark.parametrize("make, dtype", [
    (lambda: optimizers.Adam(eps=1e-8), np.float16),   # 1e-8 is fine in float32
    (lambda: optimizers.RMSprop(eps=1e-50), np.float64),
    (lambda: optimizers.Adam(eps=0.0), np.float32),    # an exact zero is allowed
])
def test_eps_that_survives_the_cast_is_accepted(make, dtype):
    opt = make()
    p = single_param(opt, dtype=dtype)
    step(opt, p, G1)
    assert p.update_rule.t == 1


def test_rmsprop_with_fp32_master_checks_eps_in_float32():
    opt = optimizers.RMSprop(eps=1e-8)
    p = single_param(opt, dtype=np.float16)
    opt.use_fp32_update()
    step(opt, p, G1)
    assert p.update_rule.t == 1


# Chainer checks eps inside update_core, so a rule that does not run never raises it.
TOO_SMALL_FOR_FP16_UPDATES = [
    (lambda profile: optimizers.RMSprop(eps=1e-8, profile=profile),
     r"eps of RMSprop optimizer is too small for float16 \(1e-08\)"),
    (lambda profile: optimizers.Adam(eps=1e-50, profile=profile),
     r"eps of Adam optimizer is too small for float32 \(1e-50\)"),
]


@pytest.mark.parametrize("make, message", TOO_SMALL_FOR_FP16_UPDATES, ids=["RMSprop", "Adam"])
def test_step_skipped_by_dynamic_scaling_does_not_check_eps(profile, make, message):
    opt = make(profile)
    p = single_param(opt, dtype=np.float16)
    opt.loss_scaling(interval=1)
    w0 = array(W0, np.float16)
    quiet_step(opt, p, (0.5, np.inf, 2.0))        # skipped: no error
    assert opt.t == 1
    assert p.update_rule.t == 0
    assert p.update_rule.state is None
    assert_bitwise_equal(p.data, w0)
    assert opt.loss_scale == 1.0                  # 1.0 * 0.5, clamped to 1
    # The next (finite) step runs the rule, which rejects eps midway.
    snapshot = Snapshot(opt, [p])
    p.grad = array(G1, np.float16)
    with pytest.raises(ValueError, match=message):
        opt.update()
    snapshot.assert_rejected_midway()
    assert opt.loss_scaling_state.isnan_ever


@pytest.mark.parametrize("make, message", TOO_SMALL_FOR_FP16_UPDATES, ids=["RMSprop", "Adam"])
def test_eps_is_checked_on_an_unscaled_step_with_a_non_finite_gradient(make, message):
    # Without dynamic scaling nothing is skipped: the rule runs, so eps is checked.
    opt = make("chainer")
    p = single_param(opt, dtype=np.float16)
    snapshot = Snapshot(opt, [p])
    p.grad = array((0.5, np.inf, 2.0), np.float16)
    with pytest.raises(ValueError, match=message):
        opt.update()
    snapshot.assert_rejected_midway()


@pytest.mark.parametrize("missing_grads", [False, True])
def test_a_rejected_update_stops_where_chainer_stops(profile, missing_grads):
    """Chainer's rules update in the target's order until one's update_core raises: the
    ones before it have updated, it has its t advanced, its master and (zero) state
    created, the ones after it are untouched; opt.t has advanced, the loss scale has not.
    A missing gradient is taken as zeros first, so it is rejected too."""
    opt = optimizers.RMSprop(lr=0.5, eps=1e-8, profile=profile)
    params = [reference.Parameter(array(W0, np.float16), name=n) for n in ("a", "b", "c")]
    opt.setup(dict(zip("abc", params)))
    opt.use_fp32_update()
    params[1].update_rule.use_fp32_update(False)   # b alone computes in float16: rejected
    opt.loss_scaling(scale=4.0)
    for p in params:
        p.grad = None if missing_grads else array(G1, np.float16) * 4
    with pytest.raises(ValueError, match=r"too small for float16 \(1e-08\)"):
        opt.update()
    a, b, c = (p.update_rule for p in params)
    assert (opt.t, opt.loss_scale) == (1, 4.0)
    assert (a.t, b.t, c.t) == (1, 1, 0)
    assert a.fp32_param is not None and b.fp32_param is None and c.fp32_param is None
    assert not np.any(b.state["ms"]) and c.state is None
    assert_bitwise_equal(params[1].data, array(W0, np.float16))
    assert_bitwise_equal(params[2].data, array(W0, np.float16))
    if not missing_grads:
        assert not np.array_equal(params[0].data, array(W0, np.float16))


def test_disabled_rule_with_too_small_eps_does_not_stop_the_others(profile):
    opt = optimizers.RMSprop(lr=0.5, alpha=0.75, eps=1e-8, profile=profile)
    frozen = reference.Parameter(array(W0, np.float16), name="frozen")
    live = reference.Parameter(array(W0, np.float32), name="live")
    opt.setup({"frozen": frozen, "live": live})
    frozen.update_rule.enabled = False
    frozen.grad = array(G1, np.float16)
    live.grad = array((1.0, 1.0, 1.0), np.float32)
    opt.update()
    assert_bitwise_equal(frozen.data, array(W0, np.float16))
    assert frozen.update_rule.t == 0
    # ms = 0.25 * 1 * 1; w -= 0.5 * 1 / (sqrt(0.25) + eps32), eps32 = float32(1e-8),
    # evaluated in float64 and stored once in float32
    eps32 = float(np.float32(1e-8))
    expected = (array(W0) - 0.5 / (0.5 + eps32)).astype(np.float32)
    assert_bitwise_equal(live.data, expected)
    assert live.update_rule.t == 1


def test_rule_update_without_a_gradient_does_not_check_eps():
    # Chainer's update_core returns before its eps check when the gradient is None.
    opt = optimizers.RMSprop(eps=1e-8)
    p = single_param(opt, dtype=np.float16)
    p.update_rule.update(p)
    assert p.update_rule.t == 1
    assert_bitwise_equal(p.data, array(W0, np.float16))


# ------------------------------------------------------- loss scaling

@pytest.mark.parametrize("kwargs, message", [
    ({"interval": 0}, r"interval must be greater than or equal to 1\. Actual: 0"),
    ({"interval": -3}, r"interval must be greater than or equal to 1\. Actual: -3"),
    ({"scale": 0}, r"loss_scale must be a positive number\. Actual: 0"),
    ({"scale": -2.0}, r"loss_scale must be a positive number\. Actual: -2\.0"),
])
@pytest.mark.parametrize("configured", ["off", "static", "dynamic"])
def test_bad_loss_scaling_arguments(profile, kwargs, message, configured):
    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    if configured == "static":
        opt.loss_scaling(scale=8.0)
    elif configured == "dynamic":
        opt.loss_scaling(interval=1)
        step(opt, p, G1)                      # scale 1 -> 2
    snapshot = Snapshot(opt, [p])
    with pytest.raises(ValueError, match=message):
        opt.loss_scaling(**kwargs)
    snapshot.assert_unchanged()
    # The previous configuration still governs the next step.
    before = opt.loss_scale
    step(opt, p, array(G1) * (before or 1.0))
    after = {"off": None, "static": 8.0, "dynamic": 4.0}[configured]
    assert opt.loss_scale == after


def test_set_loss_scale_rejects_non_positive_scale(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    with pytest.raises(ValueError, match="loss_scale must be a positive number"):
        opt.set_loss_scale(0.0)
    assert opt.loss_scale is None


def test_loss_scale_is_read_only(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    with pytest.raises(AttributeError):
        opt.loss_scale = 4.0


# ------------------------------------------------------- hooks

@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_duplicate_hook_name(profile, level):
    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hooks.WeightDecay(0.5))
    with pytest.raises(KeyError, match='hook "WeightDecay" already exists'):
        target.add_hook(hooks.WeightDecay(0.25))
    # A post hook shares the namespace of pre hooks.
    with pytest.raises(KeyError, match='hook "WeightDecay" already exists'):
        target.add_hook(hooks.Lasso(0.25), name="WeightDecay", timing="post")
    step(opt, p, G1)
    np.testing.assert_allclose(p.data, array(W0) - 0.01 * (array(G1) + 0.5 * array(W0)),
                               rtol=1e-12)


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_invalid_timing(profile, level):
    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    with pytest.raises(ValueError, match=r"timing must be one of \('pre', 'post', 'auto'\)"):
        target.add_hook(hooks.WeightDecay(0.5), timing="during")
    step(opt, p, G1)
    np.testing.assert_allclose(p.data, array(W0) - 0.01 * array(G1), rtol=1e-12)


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_non_callable_hook(profile, level):
    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    with pytest.raises(TypeError, match="hook function must be callable"):
        target.add_hook(42, name="answer")


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_hook_without_a_name(profile, level):
    class Nameless:
        def __call__(self, *args):
            pass

    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    with pytest.raises(ValueError, match="the name of the hook function is not specified"):
        target.add_hook(Nameless())


@pytest.mark.parametrize("level", ["optimizer", "rule"])
def test_removing_an_unknown_hook(profile, level):
    opt = optimizers.SGD(profile=profile)
    p = single_param(opt)
    target = opt if level == "optimizer" else p.update_rule
    target.add_hook(hooks.WeightDecay(0.5))
    with pytest.raises(KeyError):
        target.remove_hook("Lasso")
    step(opt, p, G1)
    np.testing.assert_allclose(p.data, array(W0) - 0.01 * (array(G1) + 0.5 * array(W0)),
                               rtol=1e-12)


def test_call_hooks_with_invalid_timing(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    with pytest.raises(ValueError, match="timing must be either 'pre' or 'post'"):
        opt.call_hooks("auto")


# ------------------------------------------------------- Adam before the first step

def test_alpha_t_before_the_first_step(profile):
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt)
    with pytest.raises(RuntimeError, match="Can't determine the learning rate of Adam optimizer"):
        opt.alpha_t
    step(opt, p, G1)
    assert opt.alpha_t == pytest.approx(0.001 * np.sqrt(1 - 0.999) / (1 - 0.9), rel=1e-15)


@pytest.mark.parametrize("name", ["AdaBound", "AMSBound"])
def test_bounds_before_the_first_step(profile, name):
    opt = getattr(optimizers, name)(profile=profile)
    p = single_param(opt)
    with pytest.raises(RuntimeError, match="Can't determine the bounds of AdaBound optimizer"):
        p.update_rule.bounds


# ------------------------------------------------------- epochs

def test_new_epoch_auto_without_an_updater(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    with pytest.raises(RuntimeError, match="invalid new_epoch call with auto=True"):
        opt.new_epoch(auto=True)
    assert opt.epoch == 0
    opt.new_epoch()
    assert opt.epoch == 1


def test_manual_new_epoch_under_an_updater(profile):
    opt = optimizers.SGD(profile=profile)
    single_param(opt)
    opt.use_auto_new_epoch = True
    with pytest.raises(RuntimeError, match="duplicated new_epoch with the updater"):
        opt.new_epoch()
    assert opt.epoch == 0
    opt.new_epoch(auto=True)
    assert opt.epoch == 1


# ------------------------------------------------------- set-up

@pytest.mark.parametrize("target", [
    42,
    "w",
    None,
    {"w": np.zeros(3)},                       # a bare array is not a Parameter
    [np.zeros(3)],
], ids=["int", "str", "None", "mapping-of-arrays", "list-of-arrays"])
def test_bad_setup_target(profile, target):
    opt = optimizers.SGD(profile=profile)
    with pytest.raises(TypeError):
        opt.setup(target)
    assert opt.target is None


def test_bad_setup_target_keeps_the_previous_target(profile):
    opt = optimizers.Adam(profile=profile)
    p = stepped(opt)
    snapshot = Snapshot(opt, [p])
    target = opt.target
    with pytest.raises(TypeError):
        opt.setup({"w": np.zeros(3)})
    assert opt.target is target
    snapshot.assert_unchanged()


@pytest.mark.parametrize("call", [
    lambda opt: opt.update(),
    lambda opt: opt.add_hook(hooks.WeightDecay(0.5)),
    lambda opt: opt.remove_hook("WeightDecay"),
    lambda opt: opt.call_hooks("pre"),
], ids=["update", "add_hook", "remove_hook", "call_hooks"])
def test_not_set_up(profile, call):
    opt = optimizers.SGD(profile=profile)
    with pytest.raises(RuntimeError, match="not set up"):
        call(opt)
    assert opt.t == 0


# ------------------------------------------------------- gradients

@pytest.mark.parametrize("bad_grad, problem", [
    (np.zeros(4), "shape"),
    (np.zeros((3, 1)), "shape"),
    (np.zeros(3, dtype=np.float32), "dtype"),
    (np.zeros(3, dtype=np.int64), "dtype"),
], ids=["longer", "2-d", "float32", "int64"])
def test_gradient_of_the_wrong_shape_or_dtype(profile, bad_grad, problem):
    # "a" comes before "b": a step that fails on "b" must not have moved "a".
    opt = optimizers.Adam(profile=profile)
    good = reference.Parameter(array(W0), name="a")
    bad = reference.Parameter(array(W0), name="b")
    opt.setup({"a": good, "b": bad})
    good.grad, bad.grad = array(G1), array(G1)
    opt.update()
    snapshot = Snapshot(opt, [good, bad])
    good.grad = array(G2)
    with pytest.raises((ValueError, TypeError), match=problem):
        bad.grad = bad_grad
        opt.update()
    snapshot.assert_unchanged()


# ------------------------------------------------------- array views

VIEWS = {
    "param.data": lambda opt, p: p.data,
    "param.array": lambda opt, p: p.array,
    "param.grad": lambda opt, p: p.grad,
    "rule.state": lambda opt, p: p.update_rule.state["m"],
    "rule.fp32_param": lambda opt, p: p.update_rule.fp32_param,
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_in_place_write_to_a_view_is_not_silently_lost(view):
    # Chainer hands out the live arrays: `param.data[...] = x` changes the
    # parameter. A view that is a private copy must refuse in-place writes
    # (e.g. a read-only array) rather than drop them without a word.
    opt = optimizers.Adam()
    p = single_param(opt, dtype=np.float16)
    opt.use_fp32_update()
    step(opt, p, G1)
    before = np.array(VIEWS[view](opt, p), copy=True)
    try:
        VIEWS[view](opt, p)[...] = 0.25
    except ValueError:
        assert_bitwise_equal(VIEWS[view](opt, p), before)
        return
    assert np.all(VIEWS[view](opt, p) == 0.25), "in-place write was silently dropped"
