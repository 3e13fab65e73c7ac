"""The public surface of `fast`: Chainer 7.8.1's names, constructor signatures, defaults,
hyperparameter aliases and the errors Chainer raises for misuse."""

import inspect
import math

import numpy as np
import pytest

import fast
from fast_testkit import (
    HOOK_NAMES, OPTIMIZER_NAMES, PROFILES, gradients, make_optimizer,
    make_params, run_steps, same_bits, set_grads, snapshot,
)

# Chainer 7.8.1's constructor arguments and defaults, in order (optimizers/*.py).
ADAM_HEAD = (("alpha", 0.001), ("beta1", 0.9), ("beta2", 0.999))
CHAINER_SIGNATURES = {
    "SGD": (("lr", 0.01),),
    "MomentumSGD": (("lr", 0.01), ("momentum", 0.9)),
    "CorrectedMomentumSGD": (("lr", 0.01), ("momentum", 0.9)),
    "NesterovAG": (("lr", 0.01), ("momentum", 0.9)),
    "AdaGrad": (("lr", 0.001), ("eps", 1e-8)),
    "AdaDelta": (("rho", 0.95), ("eps", 1e-6)),
    "RMSprop": (("lr", 0.01), ("alpha", 0.99), ("eps", 1e-8), ("eps_inside_sqrt", False)),
    "RMSpropGraves": (("lr", 1e-4), ("alpha", 0.95), ("momentum", 0.9), ("eps", 1e-4)),
    "Adam": ADAM_HEAD + (("eps", 1e-8), ("eta", 1.0), ("weight_decay_rate", 0),
                         ("amsgrad", False), ("adabound", False), ("final_lr", 0.1),
                         ("gamma", 1e-3)),
    "AdamW": ADAM_HEAD + (("eps", 1e-8), ("eta", 1.0), ("weight_decay_rate", 0)),
    "AMSGrad": ADAM_HEAD + (("eps", 1e-8), ("eta", 1.0)),
    "AdaBound": ADAM_HEAD + (("final_lr", 0.1), ("gamma", 1e-3), ("eps", 1e-8),
                             ("eta", 1.0)),
    "AMSBound": ADAM_HEAD + (("final_lr", 0.1), ("gamma", 1e-3), ("eps", 1e-8),
                             ("eta", 1.0)),
    "MSVAG": (("lr", 0.1), ("beta", 0.9), ("eta", 1.0), ("weight_decay_rate", 0)),
    "SMORMS3": (("lr", 0.001), ("eps", 1e-16)),
}

# The Adam family's fixed flags, set by the subclass and not constructor arguments.
ADAM_FLAGS = {
    "Adam": {"amsgrad": False, "adabound": False},
    "AdamW": {"amsgrad": False, "adabound": False},
    "AMSGrad": {"amsgrad": True, "adabound": False},
    "AdaBound": {"amsgrad": False, "adabound": True},
    "AMSBound": {"amsgrad": True, "adabound": True},
}

# Chainer's hook arguments (None: required), class-level name, timing, call_for_each_param.
CHAINER_HOOKS = {
    "WeightDecay": ((("rate", None),), True),
    "Lasso": ((("rate", None),), True),
    "GradientClipping": ((("threshold", None),), False),
    "GradientHardClipping": ((("lower_bound", None), ("upper_bound", None)), True),
    "GradientNoise": ((("eta", None), ("noise_func", "exponential_decay_noise")), True),
    "GradientLARS": ((("threshold", 1e-2), ("weight_decay", 0.0), ("eps", 1e-9)), True),
}


def positional_parameters(cls):
    """(name, default) of the positional-or-keyword parameters of cls's constructor."""
    params = inspect.signature(cls).parameters.values()
    return tuple(
        (p.name, None if p.default is inspect.Parameter.empty else p.default)
        for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    )


def test_every_optimizer_and_hook_is_exported():
    for name in OPTIMIZER_NAMES:
        assert inspect.isclass(getattr(fast.optimizers, name)), name
    for name in HOOK_NAMES:
        assert inspect.isclass(getattr(fast.optimizer_hooks, name)), name
    assert callable(fast.optimizer_hooks.exponential_decay_noise)
    assert callable(fast.serializers.save_npz) and callable(fast.serializers.load_npz)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizer_signature_matches_chainer(name):
    cls = getattr(fast.optimizers, name)
    assert positional_parameters(cls) == CHAINER_SIGNATURES[name]
    profile = inspect.signature(cls).parameters["profile"]
    assert profile.kind is inspect.Parameter.KEYWORD_ONLY
    assert profile.default == "chainer"


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_hyperparameter_aliases_read_and_write_the_hyperparameter(name):
    opt = getattr(fast.optimizers, name)()
    for key, default in CHAINER_SIGNATURES[name]:
        assert getattr(opt, key) == default, key
        assert getattr(opt.hyperparam, key) == default, key
    for key, flag in ADAM_FLAGS.get(name, {}).items():
        assert getattr(opt.hyperparam, key) is flag, key
    first_key = CHAINER_SIGNATURES[name][0][0]
    setattr(opt, first_key, 0.125)
    assert getattr(opt.hyperparam, first_key) == 0.125


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_rule_hyperparameters_fall_back_to_the_optimizer(name):
    opt, params = make_optimizer(name)
    key = CHAINER_SIGNATURES[name][0][0]
    rule_w, rule_b = params["w"].update_rule, params["b"].update_rule
    setattr(opt, key, 0.25)
    assert getattr(rule_w.hyperparam, key) == 0.25
    setattr(rule_w.hyperparam, key, 0.5)
    assert getattr(rule_w.hyperparam, key) == 0.5
    assert getattr(rule_b.hyperparam, key) == 0.25
    assert getattr(opt, key) == 0.25
    assert rule_w.hyperparam.parent is opt.hyperparam


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hook_signature_and_attributes_match_chainer(name):
    cls = getattr(fast.optimizer_hooks, name)
    arguments, for_each_param = CHAINER_HOOKS[name]
    actual = positional_parameters(cls)
    if name == "GradientNoise":
        assert actual[0] == ("eta", None)
        assert actual[1][0] == "noise_func"
        assert actual[1][1] is fast.optimizer_hooks.exponential_decay_noise
    else:
        assert actual == arguments
    assert cls.name == name
    assert cls.timing == "pre"
    assert bool(cls.call_for_each_param) is for_each_param


def test_setup_returns_the_optimizer_and_resets_counters():
    params = make_params()
    opt = fast.optimizers.SGD()
    assert opt.setup(params) is opt
    assert (opt.t, opt.epoch) == (0, 0)
    for p in params.values():
        assert p.update_rule.t == 0
        assert p.update_rule.state is None
        assert p.update_rule.fp32_param is None
        assert p.update_rule.enabled is True


def test_parameter_exposes_data_array_grad_name_shape_dtype():
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = fast.Parameter(value, name="w")
    assert p.name == "w"
    assert p.shape == (2, 3)
    assert p.dtype == np.float32
    assert p.grad is None
    np.testing.assert_array_equal(p.data, value)
    np.testing.assert_array_equal(p.array, value)
    p.grad = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(p.grad, 1)
    p.grad = None
    assert p.grad is None


def test_profile_is_keyword_only_validated_and_read_only():
    assert fast.optimizers.Adam().profile == "chainer"
    assert fast.optimizers.Adam(profile="fixed").profile == "fixed"
    with pytest.raises(ValueError, match="profile"):
        fast.optimizers.Adam(profile="pytorch")
    opt = fast.optimizers.SGD()
    with pytest.raises(AttributeError):
        opt.profile = "fixed"
    assert opt.profile == "chainer"


def test_adam_alpha_t_raises_before_the_first_step_then_follows_the_formula():
    opt, params = make_optimizer("Adam", alpha=0.01, beta1=0.8, beta2=0.9)
    with pytest.raises(RuntimeError):
        opt.alpha_t
    run_steps(opt, params, 2)
    expected = 0.01 * math.sqrt(1 - 0.9 ** 2) / (1 - 0.8 ** 2)
    assert opt.alpha_t == pytest.approx(expected, rel=1e-15)


def test_hook_registration_errors_match_chainer():
    opt, _ = make_optimizer("SGD")
    clip = fast.optimizer_hooks.GradientClipping(1.0)
    opt.add_hook(clip)
    with pytest.raises(KeyError):
        opt.add_hook(fast.optimizer_hooks.GradientClipping(2.0))
    with pytest.raises(ValueError):
        opt.add_hook(fast.optimizer_hooks.WeightDecay(0.1), timing="during")
    with pytest.raises(TypeError):
        opt.add_hook(42, name="not_callable")
    opt.add_hook(fast.optimizer_hooks.GradientClipping(2.0), name="second_clip")
    opt.remove_hook("GradientClipping")
    opt.remove_hook("second_clip")
    with pytest.raises(KeyError):
        opt.remove_hook("GradientClipping")


def test_hooks_before_setup_raise_runtime_error():
    opt = fast.optimizers.SGD()
    with pytest.raises(RuntimeError):
        opt.add_hook(fast.optimizer_hooks.WeightDecay(0.1))


def test_new_epoch_auto_and_manual_misuse_raise_runtime_error():
    opt, _ = make_optimizer("SGD")
    with pytest.raises(RuntimeError):
        opt.new_epoch(auto=True)
    assert opt.epoch == 0
    opt.new_epoch()
    assert opt.epoch == 1
    opt.use_auto_new_epoch = True
    with pytest.raises(RuntimeError):
        opt.new_epoch()
    opt.new_epoch(auto=True)
    assert opt.epoch == 2


def test_loss_scaling_arguments_are_validated():
    opt, _ = make_optimizer("SGD")
    assert opt.loss_scale is None
    with pytest.raises(ValueError):
        opt.loss_scaling(interval=0)
    with pytest.raises(ValueError):
        opt.loss_scaling(scale=0)
    with pytest.raises(ValueError):
        opt.set_loss_scale(-2.0)
    assert opt.loss_scale is None
    opt.loss_scaling()
    assert opt.loss_scale == 1.0
    opt.set_loss_scale(128.0)
    assert opt.loss_scale == 128.0
    with pytest.raises(AttributeError):
        opt.loss_scale = 4.0


@pytest.mark.parametrize("name, mode, eps, passing", [
    ("Adam", "float32", 1e-50, 1e-8),
    ("AMSBound", "fp16_master", 1e-50, 1e-8),
    ("RMSprop", "fp16", 1e-8, 1e-4),         # the default eps underflows in float16
])
@pytest.mark.parametrize("profile", PROFILES)
def test_an_eps_too_small_raises_where_chainer_raises(name, mode, eps, passing, profile):
    """Chainer's update_core rejects the eps midway through the step: opt.t has advanced,
    the rule before the rejected one has updated, the rejected rule's t, state (and master)
    have changed, the rule after it and the loss scale have not. A later step with an eps
    that passes goes on from there."""
    shapes = {"a": (4,), "b": (3, 2), "c": (5,)}
    opt, params = make_optimizer(name, mode=mode, profile=profile, shapes=shapes, eps=eps)
    params["a"].update_rule.hyperparam.eps = passing
    opt.loss_scaling(scale=8.0)
    set_grads(params, gradients(params, 0, scale=8.0))
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"eps of \w+ optimizer is too small"):
        opt.update()
    after = snapshot(opt, params)
    a, b, c = (params[k].update_rule for k in "abc")
    assert (opt.t, opt.loss_scale) == (1, 8.0)
    assert a.t == 1 and not same_bits(before["a.data"], after["a.data"])
    assert b.t == 1 and all(not np.any(v) for v in b.state.values())
    assert (b.fp32_param is not None) == (mode == "fp16_master")
    assert c.t == 0 and c.state is None and c.fp32_param is None
    for key in ("b.data", "c.data"):
        assert same_bits(before[key], after[key]), key
    opt.eps = passing
    set_grads(params, gradients(params, 1, scale=8.0))
    opt.update()
    assert (opt.t, a.t, b.t, c.t) == (2, 2, 2, 1)
