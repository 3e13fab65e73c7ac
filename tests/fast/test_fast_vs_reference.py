"""API parity with `reference` and a few spot comparisons of values. The element-by-element
diff with a stated error model is the conformance suite's job; these only catch gross
disagreement early."""

import inspect
import os
import tempfile

import numpy as np
import pytest

import fast
from fast_testkit import HOOK_NAMES, OPTIMIZER_NAMES

reference = pytest.importorskip("reference")


def signature_summary(cls):
    """(name, kind, default) of the constructor parameters the contract names (the
    positional ones and `profile`; each package may add keyword-only extras of its own),
    callables by their name."""
    summary = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "profile":
            continue
        default = p.default
        if callable(default):
            default = default.__name__
        summary.append((p.name, p.kind, default))
    return summary


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizer_signatures_match_reference(name):
    assert (signature_summary(getattr(fast.optimizers, name))
            == signature_summary(getattr(reference.optimizers, name)))


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hook_signatures_and_attributes_match_reference(name):
    ours, theirs = getattr(fast.optimizer_hooks, name), getattr(reference.optimizer_hooks, name)
    assert signature_summary(ours) == signature_summary(theirs)
    for attribute in ("name", "timing", "call_for_each_param"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


# Each misuse: a function of the implementation module that must raise.
def _params(impl, dtype=np.float32):
    return {"w": impl.Parameter(np.ones((2, 3), dtype), name="w")}


def _bad_grad_shape(impl):
    p = _params(impl)
    opt = impl.optimizers.SGD().setup(p)
    p["w"].grad = np.ones((3, 2), np.float32)
    opt.update()


def _bad_grad_dtype(impl):
    p = _params(impl)
    opt = impl.optimizers.SGD().setup(p)
    p["w"].grad = np.ones((2, 3), np.float64)
    opt.update()


def _adam_eps_underflow(impl):
    p = _params(impl)
    opt = impl.optimizers.Adam(eps=1e-60).setup(p)
    p["w"].grad = np.ones((2, 3), np.float32)
    opt.update()


def _rmsprop_eps_underflow_fp16(impl):
    p = _params(impl, np.float16)
    opt = impl.optimizers.RMSprop(eps=1e-9).setup(p)
    p["w"].grad = np.ones((2, 3), np.float16)
    opt.update()


def _alpha_t_before_first_step(impl):
    impl.optimizers.Adam().setup(_params(impl)).alpha_t


def _duplicate_hook(impl):
    opt = impl.optimizers.SGD().setup(_params(impl))
    opt.add_hook(impl.optimizer_hooks.WeightDecay(0.1))
    opt.add_hook(impl.optimizer_hooks.WeightDecay(0.2))


def _invalid_timing(impl):
    opt = impl.optimizers.SGD().setup(_params(impl))
    opt.add_hook(impl.optimizer_hooks.WeightDecay(0.1), timing="later")


def _remove_unknown_hook(impl):
    impl.optimizers.SGD().setup(_params(impl)).remove_hook("nothing")


def _hook_before_setup(impl):
    impl.optimizers.SGD().add_hook(impl.optimizer_hooks.WeightDecay(0.1))


def _bad_interval(impl):
    impl.optimizers.SGD().setup(_params(impl)).loss_scaling(interval=0)


def _bad_scale(impl):
    impl.optimizers.SGD().setup(_params(impl)).loss_scaling(scale=-1.0)


def _auto_epoch_misuse(impl):
    impl.optimizers.SGD().setup(_params(impl)).new_epoch(auto=True)


def _manual_epoch_misuse(impl):
    opt = impl.optimizers.SGD().setup(_params(impl))
    opt.use_auto_new_epoch = True
    opt.new_epoch()


def _unknown_profile(impl):
    impl.optimizers.SGD(profile="strict")


def _bad_target(impl):
    impl.optimizers.SGD().setup(3.5)


def _checkpoint_missing_a_key(impl):
    p = _params(impl)
    opt = impl.optimizers.MomentumSGD().setup(p)
    p["w"].grad = np.ones((2, 3), np.float32)
    opt.update()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ckpt.npz")
        impl.serializers.save_npz(path, opt)
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files if key != "w/v"}
        np.savez(path, **arrays)
        impl.serializers.load_npz(path, opt)


def _missing_file(impl):
    opt = impl.optimizers.SGD().setup(_params(impl))
    impl.serializers.load_npz("/nonexistent/dir/ckpt.npz", opt)


MISUSES = [_bad_grad_shape, _bad_grad_dtype, _adam_eps_underflow,
           _rmsprop_eps_underflow_fp16, _alpha_t_before_first_step, _duplicate_hook,
           _invalid_timing, _remove_unknown_hook, _hook_before_setup, _bad_interval,
           _bad_scale, _auto_epoch_misuse, _manual_epoch_misuse, _unknown_profile,
           _bad_target, _checkpoint_missing_a_key, _missing_file]


def builtin_error_types(misuse, impl):
    """The built-in exception classes the raised error is an instance of (each package may
    raise its own subclasses; what callers catch is the built-in part), or None."""
    try:
        misuse(impl)
    except Exception as error:  # the error's types are what is compared
        return {cls for cls in type(error).__mro__ if cls.__module__ == "builtins"}
    return None


@pytest.mark.parametrize("misuse", MISUSES, ids=lambda f: f.__name__.strip("_"))
def test_same_misuse_raises_the_same_exception_type(misuse):
    ours, theirs = builtin_error_types(misuse, fast), builtin_error_types(misuse, reference)
    assert theirs is not None, "reference accepted it"
    assert ours is not None, "fast accepted it"
    assert ours == theirs


ROUNDINGS_PER_STEP = 4


def run_three_steps(impl, name, **hyper):
    """Three float32 steps; returns the parameters and their values before the last step."""
    rng = np.random.default_rng(5)
    values = {"w": (0.1 * rng.standard_normal((4, 5))).astype(np.float32),
              "b": (0.1 * rng.standard_normal(7)).astype(np.float32)}
    params = {k: impl.Parameter(v.copy(), name=k) for k, v in values.items()}
    opt = getattr(impl.optimizers, name)(**hyper).setup(params)
    for _ in range(3):
        previous = {k: np.array(p.data, copy=True) for k, p in params.items()}
        for p in params.values():
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.update()
    return params, previous


@pytest.mark.parametrize("name, hyper", [
    ("Adam", {}), ("Adam", {"alpha": 0.01, "weight_decay_rate": 0.1, "eta": 0.5}),
    ("MomentumSGD", {}), ("MomentumSGD", {"lr": 0.3, "momentum": 0.5}),
])
def test_float32_three_steps_agree_with_reference_within_a_few_ulps(name, hyper):
    """Measured in ulps of the larger of the old and new value: the last step adds a delta
    to the old value, and under cancellation the new value alone understates the rounding
    both sides may legitimately differ by. The bound allows each side's fp32 rounding
    sequence (Chainer's per-operation rounding in `fast`, the reference's own model) to
    differ by one ulp per rounded operation: at most four per step, three steps."""
    ours, previous = run_three_steps(fast, name, **hyper)
    theirs, _ = run_three_steps(reference, name, **hyper)
    for key in ours:
        new = np.asarray(ours[key].data)
        magnitude = np.maximum(np.abs(new), np.abs(previous[key]))
        difference = np.abs(new.astype(np.float64) - np.asarray(theirs[key].data, np.float64))
        ulps = difference / np.spacing(magnitude).astype(np.float64)
        assert ulps.max() <= ROUNDINGS_PER_STEP * 3, f"{key}: {ulps.max():.1f} ulps apart"
