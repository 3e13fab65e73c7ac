"""Tensor sizes around the kernels' vector, tile and chunk boundaries, checked bit for bit
against NumPy transcriptions of Chainer's CPU update rules (the arithmetic Chainer performs,
operation by operation, in the parameter's dtype; fp32 on the master for fp16 + master).
A wrong stride, offset or tail in the fused kernels shows up here as a mismatch in a
particular tensor. This runs without chainer; tests/chainer/test_fast_vs_chainer.py covers all
optimizers against Chainer itself."""

import math

import numpy as np
import pytest

import fast
from fast_testkit import DTYPE_MODES

SIZES = (1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 255, 257, 1023, 1025, 4095, 4097, 65537)
STEPS = 3


def momentum_sgd_step(p, g, state, t, lr=0.01, momentum=0.9):
    v = state.setdefault("v", np.zeros_like(p))
    v *= momentum
    v -= lr * g
    p += v


def adam_step(p, g, state, t, alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    m = state.setdefault("m", np.zeros_like(p))
    v = state.setdefault("v", np.zeros_like(p))
    m += (1.0 - beta1) * (g - m)
    v += (1.0 - beta2) * (g * g - v)
    alpha_t = alpha * math.sqrt(1.0 - math.pow(beta2, t)) / (1.0 - math.pow(beta1, t))
    step = alpha_t / (np.sqrt(v) + eps)
    p += -1.0 * (step * m)


def rmsprop_step(p, g, state, t, lr=0.01, alpha=0.99, eps=1e-8):
    ms = state.setdefault("ms", np.zeros_like(p))
    eps = g.dtype.type(eps)
    ms *= alpha
    ms += (1 - alpha) * g * g
    p -= lr * g / (np.sqrt(ms) + eps)


TRANSCRIPTIONS = {"MomentumSGD": momentum_sgd_step, "Adam": adam_step, "RMSprop": rmsprop_step}


def transcribed_run(name, values, grads, master):
    """The parameters after each step of Chainer's rule, applied tensor by tensor."""
    step_rule = TRANSCRIPTIONS[name]
    results = []
    for key, value in values.items():
        work = value.astype(np.float32) if master else value.copy()
        state = {}
        for t, step_grads in enumerate(grads, start=1):
            g = step_grads[key].astype(work.dtype)
            step_rule(work, g, state, t)
        results.append((key, work.astype(value.dtype), work if master else None, state))
    return results


@pytest.mark.parametrize("mode", ["float64", "float32", "fp16_master"])
@pytest.mark.parametrize("name", list(TRANSCRIPTIONS))
def test_every_size_matches_chainers_arithmetic_bit_for_bit(name, mode):
    dtype, master = DTYPE_MODES[mode]
    rng = np.random.default_rng(17)
    values = {f"t{n}": (0.1 * rng.standard_normal(n)).astype(dtype) for n in SIZES}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in values.items()}
             for _ in range(STEPS)]

    params = {k: fast.Parameter(v.copy(), name=k) for k, v in values.items()}
    opt = getattr(fast.optimizers, name)().setup(params)
    if master:
        opt.use_fp32_update()
    for step_grads in grads:
        for k, g in step_grads.items():
            params[k].grad = g.copy()
        opt.update()

    for key, expected, expected_master, expected_state in transcribed_run(name, values, grads,
                                                                           master):
        rule = params[key].update_rule
        np.testing.assert_array_equal(params[key].data, expected, err_msg=key)
        if master:
            np.testing.assert_array_equal(rule.fp32_param, expected_master, err_msg=key)
        for state_key, value in expected_state.items():
            assert rule.state[state_key].dtype == value.dtype
            np.testing.assert_array_equal(rule.state[state_key], value,
                                          err_msg=f"{key}.{state_key}")
