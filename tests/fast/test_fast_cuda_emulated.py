"""The engine's GPU code path, run on the host: fast.backends.cuda_emulator is the CUDA
backend (argument packing, grids, the device skip flag, the two-pass reduction, the
asynchronous settling of dynamic loss scaling) over cuda_driver.cu compiled by g++.

Its results must equal the CPU backend's bit for bit: both drivers run the same
update_math.h with the same rounding, so a difference is a driver bug (a chunk walked
twice or not at all, a skip flag ignored, a stale table). Only the norms of
GradientClipping/GradientLARS are summed in another order (a tree instead of eight lanes),
so there the comparison allows a few ulps of the rate. What this cannot check: CuPy, NVRTC
and the GPU's own fp16 arithmetic (tests/fast/test_fast_gpu.py does, on a GPU).
"""

import warnings

import numpy as np
import pytest

import fast
import fast.backends
from fast.backends.cuda_emulator import EmulatedCudaBackend
from fast_testkit import DTYPE_MODES, OPTIMIZER_NAMES, PROFILES, gradients, make_optimizer, \
    set_grads, ulp_distance

SHAPES = {"w": (40000,), "b": (5,), "s": (), "e": (0,)}  # w spans two chunks


@pytest.fixture(scope="module")
def emulated():
    return EmulatedCudaBackend()


def run(backend, name, mode, profile, monkeypatch, steps=4, bad_step=2, hooks=(), loss_scaling=True,
        rule_hook=None, shapes=SHAPES):
    """`steps` updates; the backend owns every NumPy array when given."""
    with monkeypatch.context() as patch:
        if backend is not None:
            patch.setattr(fast.backends, "for_array", lambda array: backend)
        opt, params = make_optimizer(name, mode, profile, shapes=shapes)
        if loss_scaling:
            opt.loss_scaling()
        for hook in hooks:
            opt.add_hook(hook)
        if rule_hook is not None:
            params["w"].update_rule.add_hook(rule_hook)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped step's warning (tested below)
            for step in range(steps):
                grads = gradients(params, step, scale=opt.loss_scale or 1.0)
                if step == bad_step:
                    grads["w"][7] = np.inf
                set_grads(params, grads)
                opt.update()
            opt.loss_scale  # settles the last step
        return opt, params


def observable(opt, params):
    out = {"opt.t": opt.t, "loss_scale": opt.loss_scale}
    for k, p in params.items():
        rule = p.update_rule
        out[k + ".t"] = rule.t
        out[k + ".data"] = p.data.copy()
        out[k + ".fp32_param"] = None if rule.fp32_param is None else rule.fp32_param.copy()
        for s, v in (rule.state or {}).items():
            out[f"{k}.state.{s}"] = v.copy()
    return out


def assert_same_bits(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype and got[key].tobytes() == value.tobytes(), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", sorted(DTYPE_MODES))
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_and_mode_equals_the_cpu_backend_through_a_skipped_step(
        name, mode, profile, emulated, monkeypatch):
    want = observable(*run(None, name, mode, profile, monkeypatch))
    got = observable(*run(emulated, name, mode, profile, monkeypatch))
    assert_same_bits(got, want)
    assert got["w.t"] == 3 and got["opt.t"] == 4


ELEMENTWISE_HOOKS = {
    "WeightDecay": lambda: fast.optimizer_hooks.WeightDecay(0.01),
    "Lasso": lambda: fast.optimizer_hooks.Lasso(0.01),
    "GradientHardClipping": lambda: fast.optimizer_hooks.GradientHardClipping(-0.5, 0.4),
    "GradientNoise": lambda: fast.optimizer_hooks.GradientNoise(
        0.3, noise_func=lambda xp, shape, dtype, hook, rule: xp.full(shape, 0.125, dtype=dtype)),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", ["fp16_master", "fp16", "float32"])
@pytest.mark.parametrize("hook", sorted(ELEMENTWISE_HOOKS))
def test_elementwise_hooks_equal_the_cpu_backend(hook, mode, profile, emulated, monkeypatch):
    hooks = lambda: (ELEMENTWISE_HOOKS[hook](),)
    want = observable(*run(None, "AdamW", mode, profile, monkeypatch, hooks=hooks()))
    got = observable(*run(emulated, "AdamW", mode, profile, monkeypatch, hooks=hooks()))
    assert_same_bits(got, want)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", ["fp16_master", "float32", "float64"])
@pytest.mark.parametrize("hook", ["GradientClipping", "GradientLARS"])
def test_reducing_hooks_agree_with_the_cpu_backend_to_a_few_ulps(hook, mode, profile, emulated,
                                                                  monkeypatch):
    make = {"GradientClipping": lambda: fast.optimizer_hooks.GradientClipping(0.5),
            "GradientLARS": lambda: fast.optimizer_hooks.GradientLARS(1e-3, 0.01)}[hook]
    want = observable(*run(None, "MomentumSGD", mode, profile, monkeypatch, hooks=(make(),)))
    got = observable(*run(emulated, "MomentumSGD", mode, profile, monkeypatch, hooks=(make(),)))
    assert got.keys() == want.keys()
    for key, value in want.items():
        if not isinstance(value, np.ndarray):
            assert got[key] == value, key
        elif value.dtype == np.float64 and value.size:
            # the rate differs in its last bits; a parameter near zero after cancellation
            # shows that as many ulps of itself, so bound it by the array's magnitude
            assert np.abs(got[key] - value).max() <= 1e-13 * np.abs(value).max(), key
        elif value.size:
            assert ulp_distance(got[key], value).max() <= 1, key


@pytest.mark.parametrize("profile", PROFILES)
def test_a_rule_level_hook_takes_the_host_path_and_still_matches(profile, emulated, monkeypatch):
    hook = lambda: fast.optimizer_hooks.WeightDecay(0.05)
    want = observable(*run(None, "Adam", "fp16_master", profile, monkeypatch, rule_hook=hook()))
    got = observable(*run(emulated, "Adam", "fp16_master", profile, monkeypatch, rule_hook=hook()))
    assert_same_bits(got, want)


def test_a_skipped_step_settles_when_its_outcome_is_read(emulated, monkeypatch):
    """The step's bookkeeping is undone, the warning names the parameter and the
    iteration, and the schedule notes the overflow, once anything reads the outcome."""
    monkeypatch.setattr(fast.backends, "for_array", lambda array: emulated)
    opt, params = make_optimizer("Adam", "fp16_master", shapes={"w": (6,), "b": (3,)})
    opt.loss_scaling()
    grads = gradients(params, 0)
    grads["b"][1] = np.nan
    set_grads(params, grads)
    before = {k: p.data.copy() for k, p in params.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.update()
        assert opt.engine.pending  # nothing waited for the check
        assert params["w"].update_rule.t == 0  # reading settles: the first step was skipped
    assert [str(w.message) for w in caught] == [
        "Non finite number found in param.grad of /b (iteration: 0, loss_scale: 1.0)"]
    assert not opt.engine.pending and opt.t == 1 and opt.loss_scale == 1  # 0.5, clamped to 1
    for k, p in params.items():
        assert p.update_rule.state is None and p.update_rule.fp32_param is None
        assert p.data.tobytes() == before[k].tobytes()
    set_grads(params, gradients(params, 1))
    opt.update()
    assert opt.loss_scale == 2 ** (1 / 1000)  # after an overflow the scale grows slowly
    assert params["b"].update_rule.t == 1


def test_a_step_that_goes_ahead_settles_to_the_scale_schedule(emulated, monkeypatch):
    monkeypatch.setattr(fast.backends, "for_array", lambda array: emulated)
    opt, params = make_optimizer("SGD", "float32", shapes={"w": (6,)})
    opt.loss_scaling(interval=2)
    set_grads(params, gradients(params, 0))
    opt.update()
    assert opt.engine.pending
    assert opt.loss_scale == 2.0 and params["w"].update_rule.t == 1


def test_a_failing_hyperparameter_check_waits_for_the_outcome(emulated, monkeypatch):
    """Chainer checks Adam's eps during the update, so a skipped step never raises;
    a step that goes ahead does, where Chainer raises: after opt.t and the rule's t."""
    monkeypatch.setattr(fast.backends, "for_array", lambda array: emulated)
    opt, params = make_optimizer("Adam", "float32", shapes={"w": (6,)}, eps=1e-60)
    opt.loss_scaling()
    grads = gradients(params, 0)
    grads["w"][0] = np.nan
    set_grads(params, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.update()  # skipped: no error
    set_grads(params, gradients(params, 1))
    before = params["w"].data.copy()
    with pytest.raises(ValueError, match="eps"):
        opt.update()
    assert params["w"].data.tobytes() == before.tobytes()
    assert (opt.t, params["w"].update_rule.t, opt.loss_scale) == (2, 1, 1.0)


def test_save_and_load_on_the_device_path_equal_the_cpu_backend(emulated, monkeypatch, tmp_path):
    opt, params = run(emulated, "AMSBound", "fp16_master", "fixed", monkeypatch, steps=3)
    fast.serializers.save_npz(tmp_path / "emu.npz", opt)
    want_opt, want_params = run(None, "AMSBound", "fp16_master", "fixed", monkeypatch, steps=3)
    fast.serializers.save_npz(tmp_path / "cpu.npz", want_opt)
    with np.load(tmp_path / "emu.npz") as got, np.load(tmp_path / "cpu.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            assert got[key].tobytes() == want[key].tobytes(), key
