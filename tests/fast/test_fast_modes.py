"""Every optimizer in every dtype mode and profile takes steps that are finite, move the
parameters and keep state and master in the dtypes of docs/fast.md's dtype-mode table; without a master,
the CPU's fp16 lanes store the tile loop's bits for every fp16 gradient."""

import warnings

import numpy as np
import pytest

import fast
from fast_testkit import (
    DTYPE_MODES, OPTIMIZER_NAMES, PROFILES, assert_finite, assert_same_snapshot, make_optimizer,
    run_steps, snapshot,
)

STEPS = 3


def expected_state_dtype(mode):
    """fp32 state with the master, the parameter's dtype otherwise."""
    dtype, master = DTYPE_MODES[mode]
    return np.float32 if master else dtype


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", list(DTYPE_MODES))
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_steps_are_finite_and_move_every_parameter(name, mode, profile):
    opt, params = make_optimizer(name, mode, profile)
    initial = {key: p.data.copy() for key, p in params.items()}
    run_steps(opt, params, STEPS)

    assert opt.t == STEPS
    for key, p in params.items():
        rule = p.update_rule
        assert rule.t == STEPS
        assert p.data.dtype == DTYPE_MODES[mode][0]
        assert p.data.shape == initial[key].shape
        assert_finite(p.data, f"{key}.data")
        assert np.any(p.data != initial[key]), f"{key} did not move"
        for state_key, value in rule.state.items():
            assert value.shape == p.shape, state_key
            assert value.dtype == expected_state_dtype(mode), state_key
            assert_finite(value, f"{key}.state[{state_key!r}]")


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_fp16_parameter_is_the_rounded_fp32_master(name):
    opt, params = make_optimizer(name, "fp16_master")
    run_steps(opt, params, STEPS)
    for key, p in params.items():
        master = p.update_rule.fp32_param
        assert master.dtype == np.float32 and master.shape == p.shape
        np.testing.assert_array_equal(p.data, master.astype(np.float16), err_msg=key)


@pytest.mark.parametrize("mode", ["float64", "float32", "fp16"])
def test_no_master_without_fp32_update_on_fp16(mode):
    opt, params = make_optimizer("Adam", mode)
    run_steps(opt, params, 1)
    assert all(p.update_rule.fp32_param is None for p in params.values())


def test_fp32_update_leaves_non_fp16_parameters_without_master():
    opt, params = make_optimizer("Adam", "float32")
    opt.use_fp32_update()
    run_steps(opt, params, 1)
    assert all(p.update_rule.fp32_param is None for p in params.values())


def fp32_sgd_from_one(steps, lr):
    """The fp32 master of SGD started at 1 with unit gradients, rounded as Chainer rounds:
    x <- fp32(x - fp32(lr))."""
    x, step = np.float32(1.0), np.float32(lr)
    for _ in range(steps):
        x = np.float32(x - step)
    return x


def test_fp16_master_holds_more_precision_than_the_parameter():
    """Steps smaller than half an fp16 ulp accumulate in the master and eventually move
    the fp16 parameter; without a master they are lost."""
    shapes = {"w": (8,)}
    with_master, p_master = make_optimizer("SGD", "fp16_master", shapes=shapes, lr=1e-5)
    plain, p_plain = make_optimizer("SGD", "fp16", shapes=shapes, lr=1e-5)
    for p in (p_master["w"], p_plain["w"]):
        p.data[...] = 1.0
    for _ in range(100):
        for opt, params in ((with_master, p_master), (plain, p_plain)):
            params["w"].grad = np.ones(8, np.float16)
            opt.update()
    np.testing.assert_array_equal(p_plain["w"].data, 1.0)
    np.testing.assert_array_equal(p_master["w"].update_rule.fp32_param,
                                  fp32_sgd_from_one(steps=100, lr=1e-5))
    assert np.all(p_master["w"].data < 1.0)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_fp16_lanes_store_the_tile_loops_bits_for_every_fp16_gradient(name):
    """Without a master, fp16 updates run 8 lanes at a time (cpu_driver.cpp,
    update_f16_lanes, whose state keeps the fp16 bits its rounding made and whose round trip
    clears NaN payload bits the scalar rounding keeps) unless a hook sends them through the
    tile loop (a GradientHardClipping that clips nothing). Fed every fp16 value as a
    gradient (NaN, infinities, subnormals and the largest values included), then a step of
    ordinary gradients from the NaN and infinite states that made, both store the same bits."""
    every_value = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    ordinary = np.asarray(np.random.default_rng(0).standard_normal(1 << 16), dtype=np.float16)
    results = []
    for through_tiles in (False, True):
        opt, params = make_optimizer(name, "fp16", shapes={"w": (1 << 16,)})
        if through_tiles:
            opt.add_hook(fast.optimizer_hooks.GradientHardClipping(-np.inf, np.inf))
        for grad in (every_value, ordinary):
            params["w"].grad = grad.copy()
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.update()
        results.append(snapshot(opt, params))
    assert_same_snapshot(*results)


# Spans around the fp16 lanes' blocks: 8 lanes, 32 elements (a cache line of each stream,
# prefetched ahead), the tile loop's tail of fewer than 8, and a tensor of two 32768-element
# chunks and a short third one.
LANE_SPAN_SIZES = (1, 7, 8, 9, 24, 31, 32, 33, 40, 63, 64, 65, 100, 2 * 32768 + 61)


@pytest.mark.parametrize("loss_scaling", [False, True], ids=["unscaled", "loss-scaled"])
@pytest.mark.parametrize("name", ["SGD", "MomentumSGD", "Adam", "RMSpropGraves"])
def test_fp16_lanes_cover_every_span_length(name, loss_scaling):
    """Every element of every span length is updated once, as the tile loop updates it:
    the lanes' 32-element blocks, their 8-element blocks and the tile loop's tail
    together store the tile loop's bits (0 to 3 state arrays, with and without unscaling)."""
    shapes = {f"t{n}": (n,) for n in LANE_SPAN_SIZES}
    rng = np.random.default_rng(5)
    scale = 2.0 ** 10 if loss_scaling else 1.0
    grads = [{key: np.asarray(rng.standard_normal(shape) * scale, dtype=np.float16)
              for key, shape in shapes.items()} for _ in range(STEPS)]
    results = []
    for through_tiles in (False, True):
        opt, params = make_optimizer(name, "fp16", shapes=shapes)
        if loss_scaling:
            opt.set_loss_scale(scale)
        if through_tiles:
            opt.add_hook(fast.optimizer_hooks.GradientHardClipping(-np.inf, np.inf))
        for step_grads in grads:
            for key, grad in step_grads.items():
                params[key].grad = grad.copy()
            opt.update()
        results.append(snapshot(opt, params))
    assert_same_snapshot(*results)
