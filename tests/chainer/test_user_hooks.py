"""Optimizer hooks that are not fast's built-in ones, on Chainer links: a user's hook class,
a MagicMock, a user object with an attribute named ``plan``, a subclass of fast's
WeightDecay that overrides ``__call__``. In the chainer profile each is called as Chainer
calls it and sees what Chainer's sees, bit for bit; in the fixed profile (fast only) a
hook sees what docs/drop-in.md says: float16 parameters with a master show the master as
their array and an fp32 unscaled gradient."""
import warnings
from unittest import mock

import numpy as np
import pytest

import fast
from tests.chainer.chainer_kit import (
    IMPLEMENTATIONS, MLP, assert_bitwise, assert_same_training, blobs, classification_loss,
    finish_setup, input_dtype, make_optimizer, seeded)

STEPS = 3
LOSS_SCALE = 4.0


class HalvingRecorder(object):
    """A user's hook: records every gradient it sees (and, after the update, every array),
    then halves the gradients of the first Linear."""

    name = "halving_recorder"
    call_for_each_param = False

    def __init__(self, timing):
        self.timing = timing
        self.seen = []

    def __call__(self, optimizer):
        for name, p in sorted(optimizer.target.namedparams()):
            self.seen.append((optimizer.t, name, p.array.copy(), None if p.grad is None else p.grad.copy()))
            if self.timing == "pre" and name.startswith("/l1/"):
                p.grad *= 0.5


class RuleRecorder(object):
    """A user's per-parameter hook (``call_for_each_param``): what each rule is called with."""

    name = "rule_recorder"
    call_for_each_param = True
    timing = "pre"

    def __init__(self):
        self.seen = []

    def __call__(self, rule, param):
        self.seen.append((rule.t, param.name, param.array.copy(), param.grad.copy()))


def train_with_hooks(impl, config, hooks, loss_scale=None, steps=STEPS):
    """An MLP trained through update(lossfun) with `hooks` (name, hook) added, and a static
    loss scale if one is given."""
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = MLP()
        opt = finish_setup(make_optimizer(impl, "MomentumSGD", lr=0.1).setup(model), config)
        if loss_scale is not None:
            opt.set_loss_scale(loss_scale)
        for name, hook in hooks:
            opt.add_hook(hook, name=name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Chainer warns about a MagicMock's timing
            for _ in range(steps):
                opt.update(classification_loss(model), x, t)
    return model


def assert_same_sightings(ours, theirs, gradients=True):
    """The same (t, name, array, gradient) sightings, bit for bit (the gradients only if
    `gradients`)."""
    assert len(ours) == len(theirs) > 0
    for seen, their_seen in zip(ours, theirs):
        assert seen[:2] == their_seen[:2]
        assert_bitwise(seen[2], their_seen[2], "array of {}".format(seen[:2]))
        if gradients:
            assert_bitwise(seen[3], their_seen[3], "gradient of {}".format(seen[:2]))


@pytest.mark.parametrize("config", ["float64", "float32", "mixed16"])
def test_a_user_hook_sees_and_changes_what_chainers_does(config):
    """Pre and post hooks of the user's class and a per-parameter one, the loss scale on:
    the pre hooks see the gradients backward left (loss-scaled), as Chainer's do, and what
    they write is what the update uses; the post hooks see the updated arrays."""
    runs = {}
    for impl in ("chainer", "fast"):
        hooks = {"pre": HalvingRecorder("pre"), "rule": RuleRecorder(), "post": HalvingRecorder("post")}
        model = train_with_hooks(impl, config, list(hooks.items()), loss_scale=LOSS_SCALE)
        runs[impl] = (model, hooks)
    (model, hooks), (their_model, their_hooks) = runs["fast"], runs["chainer"]
    assert_same_sightings(hooks["pre"].seen, their_hooks["pre"].seen)
    assert_same_sightings(hooks["rule"].seen, their_hooks["rule"].seen)
    assert_same_sightings(hooks["post"].seen, their_hooks["post"].seen, gradients=False)
    assert_same_training(model, their_model)
    # docs/drop-in.md: the fused step leaves p.grad as the pre hooks left it, where Chainer's
    # rule divides it by the loss scale in place (not a master's: mixed16's Linears).
    for pre, post in zip(hooks["pre"].seen, hooks["post"].seen):
        halved = pre[3] * pre[3].dtype.type(0.5 if pre[1].startswith("/l1/") else 1)
        assert_bitwise(post[3], halved, "gradient after the step of {}".format(post[:2]))


def test_a_magicmock_is_called_as_chainer_calls_it():
    """A MagicMock answers every attribute (a plan, a truthy call_for_each_param, a timing
    that is neither 'pre' nor 'post'): Chainer calls it once per parameter, before the
    update, with the parameter's rule and the parameter."""
    calls = {}
    for impl in ("chainer", "fast"):
        hook = mock.MagicMock()
        model = train_with_hooks(impl, "float32", [("mock", hook)], steps=2)
        params = dict((id(p), name) for name, p in model.namedparams())
        calls[impl] = [(params[id(c.args[1])], c.args[0] is c.args[1].update_rule)
                       for c in hook.call_args_list]
        hook.plan.assert_not_called()
    assert calls["fast"] == calls["chainer"]
    assert len(calls["chainer"]) == 2 * 4 and all(is_rule for _, is_rule in calls["chainer"])


class HookWithAPlan(object):
    """A user's hook that happens to have an attribute named plan."""

    name = "with_a_plan"
    timing = "pre"

    def __init__(self):
        self.steps = []

    def plan(self, ctx):
        raise AssertionError("a user's hook was planned as one of fast's own")

    def __call__(self, optimizer):
        self.steps.append(optimizer.t)


def test_a_user_hook_with_an_attribute_named_plan_is_called():
    steps = {}
    for impl in ("chainer", "fast"):
        hook = HookWithAPlan()
        train_with_hooks(impl, "float32", [(hook.name, hook)])
        steps[impl] = hook.steps
    assert steps["fast"] == steps["chainer"] == list(range(STEPS))


def counting(weight_decay_class):
    """A subclass of `weight_decay_class` whose ``__call__`` notes the parameter, then
    decays as its base does."""

    class CountingWeightDecay(weight_decay_class):
        def __init__(self, rate):
            super().__init__(rate)
            self.seen = []

        def __call__(self, rule, param):
            self.seen.append(param.name)
            super().__call__(rule, param)

    return CountingWeightDecay


@pytest.mark.parametrize("config", ["float32", "mixed16"])
def test_a_subclass_of_weight_decay_that_overrides_call_is_called(config):
    runs = {}
    for impl in ("chainer", "fast"):
        hook = counting(IMPLEMENTATIONS[impl][1].WeightDecay)(1e-2)
        runs[impl] = (train_with_hooks(impl, config, [("decay", hook)], loss_scale=LOSS_SCALE), hook.seen)
    (model, seen), (their_model, their_seen) = runs["fast"], runs["chainer"]
    assert seen == their_seen and len(seen) == STEPS * 4
    assert_same_training(model, their_model)


class FixedProfileRecorder(object):
    """What a hook in the fixed profile sees of each parameter: array and gradient."""

    name = "fixed_recorder"
    timing = "pre"
    call_for_each_param = False

    def __init__(self):
        self.seen = []

    def __call__(self, optimizer):
        self.seen.append({name: (p.array.copy(), p.grad.copy())
                          for name, p in optimizer.target.namedparams()})


def test_the_fixed_profile_shows_masters_and_unscaled_fp32_gradients_to_a_hook():
    """mixed16 (float16 Linears with masters, float32 BatchNormalization), the loss scaled
    by LOSS_SCALE: each step the hook sees, for every parameter, the fp32 master (float32
    parameters: the parameter) and the gradient backward left, in float32, divided by the
    scale; after the step the links hold their float16 and float32 arrays again."""
    x, t = blobs(dtype=input_dtype("mixed16"))
    hook = FixedProfileRecorder()
    with seeded("mixed16"):
        model = MLP(batchnorm=True)
        opt = finish_setup(fast.optimizers.MomentumSGD(lr=0.1, profile="fixed").setup(model), "mixed16")
        opt.set_loss_scale(LOSS_SCALE)
        opt.add_hook(hook)
        lossfun = classification_loss(model)
        for step in range(STEPS):
            model.cleargrads()
            lossfun(x, t).backward(loss_scale=LOSS_SCALE)
            grads = {name: p.grad.copy() for name, p in model.namedparams()}
            # the master of a float16 parameter: made from it at its first step, then kept
            masters = {name: (p.array if p.update_rule.fp32_param is None else p.update_rule.fp32_param)
                       .astype(np.float32) for name, p in model.namedparams()}
            opt.update()
            seen = hook.seen[step]
            for name, p in model.namedparams():
                array, grad = seen[name]
                assert_bitwise(array, masters[name], name + " array seen")
                assert_bitwise(grad, grads[name].astype(np.float32) / np.float32(LOSS_SCALE),
                               name + " gradient seen")
    assert all(model[link].W.update_rule.fp32_param.dtype == np.float32 for link in ("l1", "l2"))
    assert {name: p.array.dtype for name, p in model.namedparams()} == {
        "/l1/W": np.float16, "/l1/b": np.float16, "/l2/W": np.float16, "/l2/b": np.float16,
        "/bn/gamma": np.float32, "/bn/beta": np.float32}
