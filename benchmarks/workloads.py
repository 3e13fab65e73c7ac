"""Arrays and optimizers set up for one benchmark: a parameter set in a dtype mode.

The implementation under test is any module with the README's public API (`fast`,
`reference`, or a user's own); `api_optimizer` builds it the way a training script would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .devices import Device
from .param_sets import ParamSet

# Dtype modes (docs/fast.md): storage dtype of parameters and gradients, and whether the
# optimizer keeps an fp32 master copy (`use_fp32_update()`).
MODES = ("fp32", "fp16+master", "fp16")
STORAGE_DTYPE = {"fp32": np.float32, "fp16+master": np.float16, "fp16": np.float16,
                 "fp64": np.float64}

# Hyperparameters given to the Chainer-API optimizers; the rest keep Chainer's defaults.
# AdamW's decoupled decay is weight_decay_rate per step (lr * weight_decay in torch).
# AdaGrad and RMSprop use eps = 1e-6: their default 1e-8 is zero in float16 (Chainer
# refuses it for RMSprop; AdaGrad would divide 0 by 0 where a gradient underflows).
CHAINER_HYPERPARAMS = {
    "AdamW": {"alpha": 1e-3, "weight_decay_rate": 1e-5},
    "Adam": {"alpha": 1e-3},
    "SGD": {"lr": 1e-2},
    "MomentumSGD": {"lr": 1e-2, "momentum": 0.9},
    "AdaGrad": {"lr": 1e-3, "eps": 1e-6},
    "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-6},
}

PARAM_SCALE = 0.02  # typical initialisation scale
SETTLED_LOSS_SCALE = 65504.0  # where dynamic loss scaling settles with finite gradients
GRAD_SCALE = 1e-2  # small enough that fp16 gradients stay finite under every step


@dataclass
class HostArrays:
    """Parameters and gradients of a parameter set, generated once on the host in fp32."""

    params: list[np.ndarray]
    grads: list[np.ndarray]


@lru_cache(maxsize=1)  # consecutive cases share a parameter set; they only read it
def host_arrays(param_set: ParamSet, seed: int = 0) -> HostArrays:
    """Deterministic normal parameters and gradients with the set's shapes (fp32).

    The arrays are shared between callers and must not be modified."""
    rng = np.random.default_rng(seed)
    params, grads = [], []
    for shape in param_set.shapes:
        params.append(PARAM_SCALE * rng.standard_normal(shape, dtype=np.float32))
        grads.append(GRAD_SCALE * rng.standard_normal(shape, dtype=np.float32))
    return HostArrays(params, grads)


def device_arrays(host: list[np.ndarray], dtype, device: Device) -> list:
    """Copies of `host` on `device`, cast to `dtype` (never views of `host`)."""
    return [device.to_device(array.astype(dtype, copy=True)) for array in host]


def api_optimizer(impl, optimizer: str, mode: str, host: HostArrays, device: Device,
                  *, loss_scaling: bool = False):
    """An optimizer of `impl` (README API) set up on the host arrays in dtype `mode`.

    Gradients are assigned once and stay in place, as between two backward passes that
    produce the same values; every `opt.update()` is then one full optimizer step.
    With `loss_scaling`, dynamic loss scaling is on (the gradients stay finite, so no
    step is skipped and every step does the full update), and the gradients are those of
    a backward pass with the scale the run settles at (SETTLED_LOSS_SCALE: the scale
    doubles each step from 1 and is clamped there after 16 steps), so that once settled
    the update sees the same unscaled gradients as without loss scaling. (Unscaled
    gradients divided by 65504 would be fp16 subnormals, which no training run feeds.)
    """
    dtype = STORAGE_DTYPE[mode]
    grads = host.grads
    if loss_scaling:
        grads = [SETTLED_LOSS_SCALE * g for g in host.grads]
    params = []
    for index, (data, grad) in enumerate(zip(device_arrays(host.params, dtype, device),
                                             device_arrays(grads, dtype, device))):
        param = impl.Parameter(data, name=f"p{index}")
        param.grad = grad
        params.append(param)
    opt = getattr(impl.optimizers, optimizer)(**CHAINER_HYPERPARAMS.get(optimizer, {}))
    opt.setup({param.name: param for param in params})
    if mode == "fp16+master":
        opt.use_fp32_update()
    if loss_scaling:
        opt.loss_scaling()
    return opt, params


def parameter_and_state_bytes(params) -> int:
    """Bytes held by parameters, fp32 masters and optimizer state (README API), not grads."""
    total = 0
    for param in params:
        rule = param.update_rule
        total += param.data.nbytes
        if rule.fp32_param is not None:
            total += rule.fp32_param.nbytes
        for array in (rule.state or {}).values():
            total += array.nbytes
    return total
