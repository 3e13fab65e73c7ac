"""Checkpoints: Chainer's npz layout, exact resumption in the `fixed` profile,
what the `chainer` profile loses, validation on load and atomic saves.

Chainer 7.8.1 (Optimizer.serialize, UpdateRule.serialize) saves `t`, `epoch`
and, per parameter, `<name>/t` and the state arrays. It drops the fp32 master,
the loss-scaling state, MSVAG's beta_power and AdaBound's initial_alpha; the
`fixed` profile keeps them (README, "Checkpoint layout").
"""
import math
import os
import warnings

import numpy as np
import pytest

import reference
from reference import optimizers, serializers

from .helpers import (
    ALL_OPTIMIZERS, G1, G2, G3, W0, array, assert_bitwise_equal, assert_states_bitwise_equal,
    single_param, state_copy, step,
)

F16, F32 = np.float16, np.float32
NONFINITE_STEP = 3            # 1-based step whose gradient holds an inf


def gradient(k):
    """The unscaled gradient of step k (1-based), different at every step."""
    base = (array(G1), array(G2), array(G3))[k % 3]
    return base * (1 + 0.1 * math.sin(k))


# ----------------------------------------------------------------- scenarios

class Scenario:
    """An optimizer configuration, run step by step on one parameter.

    `schedule`, if given, is called with the optimizer just before step 3.
    With loss scaling, step NONFINITE_STEP's gradient holds an inf.
    """

    def __init__(self, profile, make, dtype=np.float64, master=False,
                 loss_scaling=False, schedule=None):
        self.profile, self.make, self.dtype = profile, make, dtype
        self.master, self.loss_scaling = master, loss_scaling
        self.schedule = schedule

    def build(self, values=W0):
        opt = self.make(self.profile)
        p = reference.Parameter(np.array(values, dtype=self.dtype), name="w")
        opt.setup({"w": p})
        if self.master:
            opt.use_fp32_update()
        if self.loss_scaling:
            opt.loss_scaling(interval=2)
        return opt, p

    def run(self, opt, p, steps):
        for k in steps:
            if self.schedule and k == 3:
                self.schedule(opt)
            grad = gradient(k) * (opt.loss_scale or 1.0)
            if self.loss_scaling and k == NONFINITE_STEP:
                grad[1] = np.inf
            p.grad = grad.astype(self.dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.update()


def adam_fp16_master_dynamic(profile):
    return Scenario(profile, lambda pr: optimizers.Adam(alpha=0.01, profile=pr),
                    dtype=F16, master=True, loss_scaling=True)


def msvag(profile):
    return Scenario(profile, lambda pr: optimizers.MSVAG(profile=pr))


def adabound_alpha_decayed(profile):
    """AdaBound whose schedule halves alpha before step 3."""
    def halve(opt):
        opt.alpha = 0.005

    return Scenario(profile, lambda pr: optimizers.AdaBound(alpha=0.01, gamma=0.1, profile=pr),
                    schedule=halve)


def adabound_built_with_current_alpha(profile):
    """How a resumed AdaBound run is built: with the alpha current at the save."""
    return Scenario(profile, lambda pr: optimizers.AdaBound(alpha=0.005, gamma=0.1, profile=pr))


SCENARIOS = {
    "Adam fp16 master dynamic-scaling": adam_fp16_master_dynamic,
    "MSVAG": msvag,
    "AdaBound decayed alpha": adabound_alpha_decayed,
    "AMSGrad float32": lambda pr: Scenario(pr, lambda p: optimizers.AMSGrad(profile=p),
                                           dtype=F32),
    "RMSpropGraves": lambda pr: Scenario(pr, lambda p: optimizers.RMSpropGraves(profile=p)),
}
RESUME_BUILDERS = {"AdaBound decayed alpha": adabound_built_with_current_alpha}


def uninterrupted(scenario, steps=10):
    opt, p = scenario.build()
    scenario.run(opt, p, range(1, steps + 1))
    return opt, p


class Loaded:
    """What a fresh optimizer held right after load_npz."""

    def __init__(self, opt, p):
        self.loss_scale = opt.loss_scale
        master = p.update_rule.fp32_param
        self.master = None if master is None else np.array(master, copy=True)
        self.state = state_copy(p.update_rule)


def resumed(scenario, path, resume_scenario=None):
    """5 steps, save; a fresh optimizer on the saved parameter values, load, 5 more.

    Returns the resumed optimizer and parameter, a `Loaded` record, and the
    optimizer and parameter that were saved.
    """
    opt, p = scenario.build()
    scenario.run(opt, p, range(1, 6))
    serializers.save_npz(path, opt)
    builder = resume_scenario or scenario
    opt2, p2 = builder.build(values=np.array(p.data, copy=True))
    serializers.load_npz(path, opt2)
    loaded = Loaded(opt2, p2)
    builder.run(opt2, p2, range(6, 11))
    return opt2, p2, loaded, (opt, p)


def resume_builder(name, profile):
    make = RESUME_BUILDERS.get(name)
    return None if make is None else make(profile)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fixed_profile_resumes_bitwise(tmp_path, name):
    scenario = SCENARIOS[name]("fixed")
    ref_opt, ref_p = uninterrupted(scenario)
    opt, p, _, _ = resumed(scenario, tmp_path / "ckpt.npz", resume_builder(name, "fixed"))
    assert_bitwise_equal(p.data, ref_p.data)
    assert_states_bitwise_equal(state_copy(p.update_rule), state_copy(ref_p.update_rule))
    if scenario.master:
        assert_bitwise_equal(p.update_rule.fp32_param, ref_p.update_rule.fp32_param)
    assert (opt.t, p.update_rule.t, opt.epoch) == (ref_opt.t, ref_p.update_rule.t, ref_opt.epoch)
    assert opt.loss_scale == ref_opt.loss_scale


@pytest.mark.parametrize("name", ["AMSGrad float32", "RMSpropGraves"])
def test_chainer_profile_resumes_bitwise_when_nothing_is_dropped(tmp_path, name):
    scenario = SCENARIOS[name]("chainer")
    ref_opt, ref_p = uninterrupted(scenario)
    opt, p, _, _ = resumed(scenario, tmp_path / "ckpt.npz")
    assert_bitwise_equal(p.data, ref_p.data)
    assert_states_bitwise_equal(state_copy(p.update_rule), state_copy(ref_p.update_rule))


def test_chainer_profile_drops_master_and_loss_scale(tmp_path):
    scenario = adam_fp16_master_dynamic("chainer")
    ref_opt, ref_p = uninterrupted(scenario)
    opt, p, loaded, (saved_opt, saved_p) = resumed(scenario, tmp_path / "ckpt.npz")
    keys = set(np.load(tmp_path / "ckpt.npz").files)
    assert keys == {"t", "epoch", "w/t", "w/m", "w/v"}
    # The loss scale restarts at 1 with no memory of the non-finite step 3.
    assert saved_opt.loss_scale != 1.0
    assert loaded.loss_scale == 1.0
    # The master is gone and is rebuilt from the fp16 values at the next step.
    assert loaded.master is None
    assert loaded.state["m"].dtype == F32 and loaded.state["v"].dtype == F32
    assert opt.t == ref_opt.t == 10
    assert p.update_rule.t == ref_p.update_rule.t
    assert p.update_rule.fp32_param.tobytes() != ref_p.update_rule.fp32_param.tobytes()
    assert opt.loss_scale != ref_opt.loss_scale


def test_fixed_profile_keeps_master_and_loss_scale(tmp_path):
    scenario = adam_fp16_master_dynamic("fixed")
    _, _, loaded, (saved_opt, saved_p) = resumed(scenario, tmp_path / "ckpt.npz")
    keys = set(np.load(tmp_path / "ckpt.npz").files)
    assert {"t", "epoch", "w/t", "w/m", "w/v", "w/fp32_param", "loss_scaling/scale",
            "loss_scaling/dynamic", "loss_scaling/multiplier",
            "loss_scaling/isnan_ever"} <= keys
    assert loaded.loss_scale == saved_opt.loss_scale
    assert_bitwise_equal(loaded.master, saved_p.update_rule.fp32_param)
    assert loaded.state["m"].dtype == F32 and loaded.state["v"].dtype == F32


def test_chainer_profile_restarts_msvag_beta_power(tmp_path):
    scenario = msvag("chainer")
    _, ref_p = uninterrupted(scenario)
    _, p, _, _ = resumed(scenario, tmp_path / "ckpt.npz")
    assert "w/beta_power" not in np.load(tmp_path / "ckpt.npz").files
    assert p.data.tobytes() != ref_p.data.tobytes()


def test_fixed_profile_saves_msvag_beta_power(tmp_path):
    scenario = msvag("fixed")
    resumed(scenario, tmp_path / "ckpt.npz")
    saved = np.load(tmp_path / "ckpt.npz")
    assert float(saved["w/beta_power"]) == pytest.approx(0.9 ** 6, rel=1e-14)


def test_adabound_initial_alpha_only_in_fixed_profile(tmp_path, profile):
    scenario = adabound_alpha_decayed(profile)
    _, ref_p = uninterrupted(scenario)
    _, p, _, _ = resumed(scenario, tmp_path / "ckpt.npz",
                         adabound_built_with_current_alpha(profile))
    saved = np.load(tmp_path / "ckpt.npz")
    if profile == "fixed":
        assert float(saved["w/initial_alpha"]) == 0.01
        assert_bitwise_equal(p.data, ref_p.data)
    else:
        assert "w/initial_alpha" not in saved.files
        # final_lr * alpha / initial_alpha doubles: the bounds move.
        assert p.data.tobytes() != ref_p.data.tobytes()


def test_layout_of_a_two_parameter_checkpoint(tmp_path, profile):
    opt = optimizers.MomentumSGD(profile=profile)
    a = reference.Parameter(array(W0), name="a")
    b = reference.Parameter(array((1.0, 2.0)), name="b")
    opt.setup({"a": a, "b": b})
    a.grad, b.grad = array(G1), array((0.5, 0.5))
    opt.update()
    opt.new_epoch()
    serializers.save_npz(tmp_path / "ckpt.npz", opt)
    saved = np.load(tmp_path / "ckpt.npz")
    assert {"t", "epoch", "a/t", "a/v", "b/t", "b/v"} <= set(saved.files)
    assert int(saved["t"]) == 1 and int(saved["epoch"]) == 1
    assert int(saved["a/t"]) == 1
    assert_bitwise_equal(saved["a/v"], -0.01 * array(G1))


# ------------------------------------------------------------- bad files

def saved_adam(tmp_path, profile):
    """An Adam optimizer after two steps, its parameter, and its checkpoint path."""
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt)
    step(opt, p, G1)
    step(opt, p, G2)
    path = tmp_path / "ckpt.npz"
    serializers.save_npz(path, opt)
    return opt, p, path


def fresh_after_one_step(profile):
    opt = optimizers.Adam(profile=profile)
    p = single_param(opt)
    step(opt, p, G3)
    return opt, p


def rewrite(path, change):
    """Rewrite the npz at `path` with `change(dict_of_arrays)` applied."""
    arrays = dict(np.load(path))
    change(arrays)
    np.savez(path, **arrays)


def assert_load_fails_and_changes_nothing(path, profile, match):
    opt, p = fresh_after_one_step(profile)
    before = (opt.t, opt.epoch, p.update_rule.t, state_copy(p.update_rule),
              np.array(p.data, copy=True))
    with pytest.raises(ValueError, match=match):
        serializers.load_npz(path, opt)
    assert (opt.t, opt.epoch, p.update_rule.t) == before[:3]
    assert_states_bitwise_equal(state_copy(p.update_rule), before[3])
    assert_bitwise_equal(p.data, before[4])


def test_truncated_checkpoint(tmp_path, profile):
    _, _, path = saved_adam(tmp_path, profile)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_load_fails_and_changes_nothing(path, profile, match=r"(?i)ckpt|corrupt|truncat|zip")


def test_garbage_checkpoint(tmp_path, profile):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"this is not an npz file" * 10)
    assert_load_fails_and_changes_nothing(path, profile, match=r"(?i)ckpt|corrupt|zip|npz")


def test_checkpoint_missing_a_state_key(tmp_path, profile):
    _, _, path = saved_adam(tmp_path, profile)
    rewrite(path, lambda arrays: arrays.pop("w/v"))
    assert_load_fails_and_changes_nothing(path, profile, match="w/v")


def test_checkpoint_with_a_state_of_the_wrong_shape(tmp_path, profile):
    _, _, path = saved_adam(tmp_path, profile)
    rewrite(path, lambda arrays: arrays.update({"w/m": np.zeros(4)}))
    assert_load_fails_and_changes_nothing(path, profile, match=r"(?s)w/m.*shape|shape.*w/m")


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.complex128), np.array(["a", "b", "c"])],
                         ids=["complex", "str"])
def test_checkpoint_with_a_state_of_a_non_real_dtype(tmp_path, profile, bad):
    # Chainer copies a stored array into the state with numpy.copyto (same_kind
    # casting), so real numbers of another width load; these cannot.
    _, _, path = saved_adam(tmp_path, profile)
    rewrite(path, lambda arrays: arrays.update({"w/v": bad}))
    assert_load_fails_and_changes_nothing(path, profile, match=r"(?s)w/v.*dtype|dtype.*w/v")


def test_good_checkpoint_loads_state_and_counters(tmp_path, profile):
    saved_opt, saved_p, path = saved_adam(tmp_path, profile)
    opt, p = fresh_after_one_step(profile)
    serializers.load_npz(path, opt)
    assert opt.t == 2 and p.update_rule.t == 2
    assert_states_bitwise_equal(state_copy(p.update_rule), state_copy(saved_p.update_rule))


# ------------------------------------------------------------- atomic save

def test_failed_save_leaves_the_last_good_checkpoint(tmp_path, monkeypatch, profile):
    opt, p, path = saved_adam(tmp_path, profile)
    good_bytes = path.read_bytes()
    step(opt, p, G3)

    real_write_array = np.lib.format.write_array
    calls = []

    def write_then_fail(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        serializers.save_npz(path, opt)
    monkeypatch.undo()
    assert len(calls) > 1, "the save did not go through numpy's array writer"
    assert path.read_bytes() == good_bytes
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    opt2, p2 = fresh_after_one_step(profile)
    serializers.load_npz(path, opt2)
    assert opt2.t == 2


def test_fixed_optimizer_loading_a_chainer_checkpoint_keeps_its_loss_scaling(tmp_path):
    # A chainer-profile checkpoint has no loss-scaling keys: it says nothing
    # about loss scaling, so the dynamic scaling configured on the fixed
    # optimizer must survive the load (as it does in the chainer profile).
    # Silently switching it off would leave fp16 gradients unscaled.
    scenario = adam_fp16_master_dynamic("chainer")
    opt, p = scenario.build()
    scenario.run(opt, p, range(1, 3))
    serializers.save_npz(tmp_path / "ckpt.npz", opt)
    fixed_opt, _ = adam_fp16_master_dynamic("fixed").build(values=np.array(p.data, copy=True))
    serializers.load_npz(tmp_path / "ckpt.npz", fixed_opt)
    assert fixed_opt.loss_scale == 1.0
    assert fixed_opt.t == 2


@pytest.mark.parametrize("name", ALL_OPTIMIZERS)
def test_every_optimizer_resumes_bitwise(tmp_path, profile, name):
    # float64, no loss scaling, constant hyperparameters: only MSVAG's
    # beta_power is lost by a chainer-profile checkpoint.
    scenario = Scenario(profile, lambda pr: getattr(optimizers, name)(profile=pr))
    _, ref_p = uninterrupted(scenario)
    _, p, _, _ = resumed(scenario, tmp_path / "ckpt.npz")
    if profile == "chainer" and name == "MSVAG":
        assert p.data.tobytes() != ref_p.data.tobytes()
        return
    assert_bitwise_equal(p.data, ref_p.data)
    assert_states_bitwise_equal(state_copy(p.update_rule), state_copy(ref_p.update_rule))


class RecordingSerializer:
    """Chainer's serializer protocol, writing into a flat dict."""

    def __init__(self, target=None, path=""):
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, key):
        return RecordingSerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        self.target[self.path + key.lstrip("/")] = np.array(value, copy=True)
        return value


class ReplayingSerializer(RecordingSerializer):
    """Chainer's protocol for reading: returns the stored value for each key."""

    def __getitem__(self, key):
        return ReplayingSerializer(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        stored = self.target[self.path + key.lstrip("/")]
        if isinstance(value, np.ndarray):
            return np.array(stored, dtype=value.dtype)
        return type(value)(stored)


def test_serialize_speaks_chainers_serializer_protocol(profile):
    opt = optimizers.MomentumSGD(profile=profile)
    p = single_param(opt)
    step(opt, p, G1)
    written = RecordingSerializer()
    opt.serialize(written)
    assert {"t", "epoch", "w/t", "w/v"} <= set(written.target)
    assert int(written.target["w/t"]) == 1
    assert_bitwise_equal(written.target["w/v"], -0.01 * array(G1))

    other = optimizers.MomentumSGD(profile=profile)
    q = single_param(other)
    step(other, q, G2)
    step(other, q, G2)
    other.serialize(ReplayingSerializer(written.target))
    assert other.t == 1 and q.update_rule.t == 1
    assert_bitwise_equal(q.update_rule.state["v"], -0.01 * array(G1))
