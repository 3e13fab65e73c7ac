"""The same inputs give the same bits: two fresh runs agree exactly, whatever the
thread split of a large parameter."""

import pytest

import fast
from fast_testkit import OPTIMIZER_NAMES, assert_same_snapshot, make_optimizer, run_steps, snapshot


def full_run(name, mode, profile, shapes=None):
    opt, params = make_optimizer(name, mode, profile, shapes=shapes)
    opt.loss_scaling(interval=2)
    opt.add_hook(fast.optimizer_hooks.WeightDecay(1e-3))
    opt.add_hook(fast.optimizer_hooks.GradientClipping(2.0))
    run_steps(opt, params, 4)
    return snapshot(opt, params)


@pytest.mark.parametrize("profile", ["chainer", "fixed"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_two_fresh_runs_are_bitwise_identical(name, profile):
    assert_same_snapshot(full_run(name, "fp16_master", profile),
                         full_run(name, "fp16_master", profile))


@pytest.mark.parametrize("mode", ["float32", "fp16_master", "fp16"])
def test_large_odd_sized_parameter_is_deterministic(mode):
    shapes = {"big": (200_003,), "small": (7,)}
    assert_same_snapshot(full_run("AdamW", mode, "fixed", shapes),
                         full_run("AdamW", mode, "fixed", shapes))
