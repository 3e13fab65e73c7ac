"""Checkpoints: Chainer's key layout, bitwise resume in the fixed profile, Chainer's
quirks in the chainer profile, atomic saves, and loads that validate before changing
anything."""

import os
import pickle
import warnings

import numpy as np
import pytest

import fast
from fast_testkit import (
    OPTIMIZER_NAMES, assert_same_snapshot, gradients, make_optimizer, run_steps, set_grads,
    snapshot,
)

LOSS_SCALING_KEYS = {"loss_scaling/scale", "loss_scaling/dynamic", "loss_scaling/multiplier",
                     "loss_scaling/isnan_ever"}


def npz_keys(path):
    with np.load(path) as archive:
        return set(archive.files)


def skipped_step(opt, params, step):
    grads = gradients(params, step, scale=opt.loss_scale)
    grads["w"][0, 0] = np.inf
    set_grads(params, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.update()


def trained(name, mode, profile, loss_scaling=True):
    """Two steps, a skipped step (under dynamic loss scaling), one more step."""
    opt, params = make_optimizer(name, mode, profile)
    if loss_scaling:
        opt.loss_scaling(interval=3)
    run_steps(opt, params, 2)
    if loss_scaling:
        skipped_step(opt, params, 2)
    run_steps(opt, params, 1, first_step=3)
    opt.new_epoch()
    return opt, params


def restored_copy(name, mode, profile, params, path, loss_scaling=True):
    """A fresh optimizer over copies of `params`' values, loaded from `path`."""
    opt, copies = make_optimizer(name, mode, profile)
    if loss_scaling:
        opt.loss_scaling(interval=3)
    for key, p in copies.items():
        p.data[...] = params[key].data
    fast.serializers.load_npz(str(path), opt)
    return opt, copies


def resume_matches_continuous_run(name, mode, profile, tmp_path, loss_scaling=True):
    opt, params = trained(name, mode, profile, loss_scaling)
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    resumed, resumed_params = restored_copy(name, mode, profile, params, path, loss_scaling)
    run_steps(opt, params, 3, first_step=10)
    run_steps(resumed, resumed_params, 3, first_step=10)
    return snapshot(opt, params), snapshot(resumed, resumed_params)


@pytest.mark.parametrize("mode", ["float32", "fp16_master", "fp16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_fixed_profile_resumes_bitwise(name, mode, tmp_path):
    continuous, resumed = resume_matches_continuous_run(name, mode, "fixed", tmp_path)
    assert_same_snapshot(continuous, resumed)


@pytest.mark.parametrize("name", [n for n in OPTIMIZER_NAMES
                                  if n not in ("MSVAG", "AdaBound", "AMSBound")])
def test_chainer_profile_resumes_bitwise_without_master_or_loss_scaling(name, tmp_path):
    continuous, resumed = resume_matches_continuous_run(name, "float32", "chainer", tmp_path,
                                                        loss_scaling=False)
    assert_same_snapshot(continuous, resumed)


def test_chainer_profile_drops_msvag_beta_power(tmp_path):
    """Chainer's quirk: MSVAG's running beta power restarts at beta after a load."""
    continuous, resumed = resume_matches_continuous_run("MSVAG", "float64", "chainer",
                                                        tmp_path, loss_scaling=False)
    assert not np.array_equal(continuous["w.data"], resumed["w.data"])


def test_chainer_profile_drops_the_fp16_master_and_loss_scale(tmp_path):
    opt, params = trained("Adam", "fp16_master", "chainer")
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    keys = npz_keys(path)
    assert not keys & LOSS_SCALING_KEYS
    assert "w/fp32_param" not in keys
    resumed, resumed_params = restored_copy("Adam", "fp16_master", "chainer", params, path)
    assert resumed.loss_scale == 1.0
    assert opt.loss_scale != 1.0


def test_chainer_key_layout_for_a_mapping_target(tmp_path):
    opt, _ = trained("AMSGrad", "float32", "chainer", loss_scaling=False)
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    per_param = {"t", "m", "v", "vhat"}
    expected = {"t", "epoch"} | {f"{p}/{k}" for p in ("w", "b") for k in per_param}
    assert npz_keys(path) == expected
    with np.load(path) as archive:
        assert int(archive["t"]) == 3 and int(archive["epoch"]) == 1
        assert int(archive["w/t"]) == 3
        assert archive["w/m"].shape == (3, 4) and archive["w/m"].dtype == np.float32


def test_fixed_profile_adds_master_and_loss_scaling_keys(tmp_path):
    opt, _ = trained("MSVAG", "fp16_master", "fixed")
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    keys = npz_keys(path)
    assert LOSS_SCALING_KEYS <= keys
    assert {"w/fp32_param", "b/fp32_param", "w/beta_power", "b/beta_power"} <= keys
    with np.load(path) as archive:
        assert archive["w/fp32_param"].dtype == np.float32
        assert archive["w/m"].dtype == np.float32


def test_fixed_profile_keeps_adabound_initial_alpha(tmp_path):
    opt, params = make_optimizer("AdaBound", "float64", "fixed", alpha=0.01)
    run_steps(opt, params, 2)
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    assert {"w/initial_alpha", "b/initial_alpha"} <= npz_keys(path)
    with np.load(path) as archive:
        assert float(archive["w/initial_alpha"]) == 0.01


def test_iterable_target_names_parameters_by_position(tmp_path):
    values = [np.ones(3, np.float32), np.zeros((2, 2), np.float32)]
    params = [fast.Parameter(v) for v in values]
    opt = fast.optimizers.MomentumSGD().setup(params)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.update()
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    assert npz_keys(path) == {"t", "epoch", "0/t", "0/v", "1/t", "1/v"}


class NamedParamsHolder:
    """A target that is neither a mapping nor a list: it only has namedparams()."""

    def __init__(self, params):
        self._params = params

    def namedparams(self, include_uninit=True):
        return iter(self._params.items())

    def params(self, include_uninit=True):
        return iter(self._params.values())


def test_namedparams_target_uses_its_names(tmp_path):
    params = {"/enc/W": fast.Parameter(np.ones((2, 3), np.float32)),
              "/enc/b": fast.Parameter(np.ones(2, np.float32))}
    opt = fast.optimizers.SGD().setup(NamedParamsHolder(params))
    for p in params.values():
        p.grad = np.ones(p.shape, np.float32)
    opt.update()
    np.testing.assert_array_equal(params["/enc/W"].data, np.float32(1 - 0.01))
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    assert npz_keys(path) == {"t", "epoch", "enc/W/t", "enc/b/t"}


class DictionarySaver:
    """The saving half of Chainer's serializer protocol, into a flat dictionary."""

    def __init__(self, target=None, path=""):
        self.target = {} if target is None else target
        self.path = path

    def __getitem__(self, key):
        return DictionarySaver(self.target, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        self.target[self.path + key] = np.array(value, copy=True)
        return value


def test_serialize_follows_chainers_serializer_protocol(tmp_path):
    opt, params = trained("Adam", "float32", "chainer", loss_scaling=False)
    saver = DictionarySaver()
    opt.serialize(saver)
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    assert set(saver.target) == npz_keys(path)
    np.testing.assert_array_equal(saver.target["w/m"], params["w"].update_rule.state["m"])
    assert int(saver.target["t"]) == opt.t


def chainer_checkpoint(path, t=3, epoch=2):
    """An Adam checkpoint written as Chainer's save_npz writes it (keys and 0-d arrays)."""
    rng = np.random.default_rng(11)
    arrays = {"t": np.asarray(t), "epoch": np.asarray(epoch)}
    for name, shape in (("w", (3, 4)), ("b", (5,))):
        arrays[f"{name}/t"] = np.asarray(t)
        arrays[f"{name}/m"] = rng.standard_normal(shape).astype(np.float32)
        arrays[f"{name}/v"] = rng.random(shape).astype(np.float32)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("mode", ["float32", "fp16_master"])
def test_checkpoint_with_chainers_layout_loads(mode, tmp_path):
    path = tmp_path / "chainer_adam.npz"
    arrays = chainer_checkpoint(path)
    opt, params = make_optimizer("Adam", mode)
    fast.serializers.load_npz(str(path), opt)
    assert (opt.t, opt.epoch) == (3, 2)
    for name, p in params.items():
        rule = p.update_rule
        assert rule.t == 3
        for key in ("m", "v"):
            assert rule.state[key].dtype == np.float32
            np.testing.assert_array_equal(rule.state[key], arrays[f"{name}/{key}"])
    run_steps(opt, params, 1)
    assert params["w"].update_rule.t == 4
    np.testing.assert_allclose(opt.alpha_t, 1e-3 * np.sqrt(1 - 0.999 ** 4) / (1 - 0.9 ** 4),
                               rtol=1e-15)


def test_save_writes_exactly_the_given_path(tmp_path):
    opt, _ = trained("Adam", "float32", "fixed")
    path = tmp_path / "checkpoint_without_suffix"
    fast.serializers.save_npz(str(path), opt)
    assert os.listdir(tmp_path) == [path.name]
    restored, _ = make_optimizer("Adam", "float32", "fixed")
    fast.serializers.load_npz(str(path), restored)
    assert restored.t == opt.t


@pytest.fixture
def good_checkpoint(tmp_path):
    """A saved checkpoint, its bytes, and the optimizer that wrote it (trained further)."""
    opt, params = trained("Adam", "fp16_master", "fixed")
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), opt)
    run_steps(opt, params, 2, first_step=20)
    return opt, params, path, path.read_bytes()


def assert_only_the_checkpoint_remains(path, good_bytes):
    assert path.read_bytes() == good_bytes
    assert os.listdir(path.parent) == [path.name], "temporary files left behind"


def test_failed_rename_keeps_the_last_good_checkpoint(good_checkpoint, monkeypatch):
    opt, _, path, good_bytes = good_checkpoint

    def refuse(*args, **kwargs):
        raise OSError("simulated failure while renaming")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(OSError):
        fast.serializers.save_npz(str(path), opt)
    monkeypatch.undo()
    assert_only_the_checkpoint_remains(path, good_bytes)


def test_failed_write_keeps_the_last_good_checkpoint(good_checkpoint, monkeypatch):
    opt, _, path, good_bytes = good_checkpoint
    real_add = fast.serializers.NpzWriter.add
    calls = []

    def fail_on_third_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("simulated disk full")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(fast.serializers.NpzWriter, "add", fail_on_third_array)
    with pytest.raises(OSError):
        fast.serializers.save_npz(str(path), opt)
    monkeypatch.undo()
    assert len(calls) == 3
    assert_only_the_checkpoint_remains(path, good_bytes)


def load_must_fail_without_changes(opt, params, path, error, match=None):
    before = snapshot(opt, params)
    with pytest.raises(error, match=match):
        fast.serializers.load_npz(str(path), opt)
    assert_same_snapshot(before, snapshot(opt, params))


def test_truncated_checkpoint_raises_and_changes_nothing(good_checkpoint):
    opt, params, path, good_bytes = good_checkpoint
    path.write_bytes(good_bytes[: len(good_bytes) // 2])
    load_must_fail_without_changes(opt, params, path, ValueError)


def test_garbage_checkpoint_raises_and_changes_nothing(good_checkpoint):
    opt, params, path, _ = good_checkpoint
    path.write_bytes(b"this is not an npz archive" * 10)
    load_must_fail_without_changes(opt, params, path, ValueError)


class _MakesDirectoryWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_checkpoint_is_refused_without_running_its_code(good_checkpoint, tmp_path):
    """A checkpoint holds numbers only: a pickle in its place is an error, never executed."""
    opt, params, path, _ = good_checkpoint
    marker = tmp_path / "code_ran"
    with open(path, "wb") as f:
        pickle.dump(_MakesDirectoryWhenUnpickled(str(marker)), f)
    before = snapshot(opt, params)
    with pytest.raises(ValueError):
        fast.serializers.load_npz(str(path), opt)
    assert not marker.exists(), "loading a checkpoint executed code from it"
    assert_same_snapshot(before, snapshot(opt, params))


def test_missing_checkpoint_raises_an_error_naming_it(tmp_path):
    """Chainer lets numpy's FileNotFoundError through; a ValueError naming the file is as
    clear."""
    opt, params = trained("Adam", "float32", "fixed")
    load_must_fail_without_changes(opt, params, tmp_path / "absent.npz",
                                   (FileNotFoundError, ValueError), match="absent.npz")


def rewrite_checkpoint(path, change):
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def test_checkpoint_missing_a_key_raises_and_changes_nothing(good_checkpoint):
    opt, params, path, _ = good_checkpoint
    rewrite_checkpoint(path, lambda arrays: arrays.pop("b/v"))
    load_must_fail_without_changes(opt, params, path, KeyError, match="b/v")


def test_checkpoint_with_wrong_state_shape_raises_and_changes_nothing(good_checkpoint):
    opt, params, path, _ = good_checkpoint

    def reshape_last(arrays):
        arrays["b/m"] = np.zeros((6,), np.float32)

    rewrite_checkpoint(path, reshape_last)
    load_must_fail_without_changes(opt, params, path, ValueError, match="b/m")


def test_checkpoint_with_non_numeric_state_raises_and_changes_nothing(good_checkpoint):
    opt, params, path, _ = good_checkpoint

    def stringify(arrays):
        arrays["w/v"] = np.full((3, 4), "x")

    rewrite_checkpoint(path, stringify)
    load_must_fail_without_changes(opt, params, path, (TypeError, ValueError), match="w/v")


@pytest.mark.parametrize("bad_scale", [np.inf, -4.0, 0.0])
def test_checkpoint_with_invalid_loss_scale_raises_and_changes_nothing(good_checkpoint,
                                                                       bad_scale):
    opt, params, path, _ = good_checkpoint
    rewrite_checkpoint(path, lambda arrays: arrays.update(
        {"loss_scaling/scale": np.asarray(bad_scale)}))
    load_must_fail_without_changes(opt, params, path, ValueError, match="scale")


@pytest.mark.parametrize("order", ["fp32_update_before_setup", "fp32_update_after_setup"])
def test_fp16_master_checkpoint_loads_into_a_fresh_optimizer_in_fp32(order, tmp_path):
    """Chainer allows use_fp32_update() before or after setup(); either way, a checkpoint
    loaded before the first step restores fp32 state and the fp32 master exactly."""
    source, _ = trained("Adam", "fp16_master", "fixed")
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), source)

    params = {"w": fast.Parameter(np.zeros((3, 4), np.float16), name="w"),
              "b": fast.Parameter(np.zeros(5, np.float16), name="b")}
    opt = fast.optimizers.Adam(profile="fixed")
    if order == "fp32_update_before_setup":
        opt.use_fp32_update()
    opt.setup(params)
    if order == "fp32_update_after_setup":
        opt.use_fp32_update()
    fast.serializers.load_npz(str(path), opt)
    with np.load(path) as archive:
        for name, p in params.items():
            rule = p.update_rule
            for key in ("m", "v"):
                assert rule.state[key].dtype == np.float32, f"{name}/{key}"
                np.testing.assert_array_equal(rule.state[key], archive[f"{name}/{key}"])
            assert rule.fp32_param is not None, f"{name}: master not restored"
            np.testing.assert_array_equal(rule.fp32_param, archive[f"{name}/fp32_param"])
