"""torch.optim peers: the same optimizer, parameter shapes and dtype on the same device.

Each peer runs in torch's `foreach` (multi-tensor) or `fused` implementation. torch.optim
has no fp32-master mode, so peers run only in the fp32 and fp16 modes. Hyperparameters
match `workloads.CHAINER_HYPERPARAMS`, so both sides move the same bytes per step.
"""

from __future__ import annotations

import pytest

from .devices import Device
from .workloads import HostArrays

VARIANTS = ("foreach", "fused")

# Chainer optimizer name -> (torch.optim class name, constructor arguments).
PEERS = {
    "AdamW": ("AdamW", {"lr": 1e-3, "weight_decay": 1e-2}),
    "Adam": ("Adam", {"lr": 1e-3}),
    "SGD": ("SGD", {"lr": 1e-2}),
    "MomentumSGD": ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    "AdaGrad": ("Adagrad", {"lr": 1e-3, "eps": 1e-6}),
    "RMSprop": ("RMSprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-6}),
}

_TORCH_DTYPE_NAME = {"fp32": "float32", "fp16": "float16"}


def import_torch(device: Device):
    """torch, with its thread count set to the run's; skips the test when unusable."""
    torch = pytest.importorskip("torch", reason="torch is not installed; peers skipped")
    if device.is_gpu and not torch.cuda.is_available():
        pytest.skip("this torch build has no CUDA; GPU peers skipped")
    torch.set_num_threads(device.threads)
    return torch


def torch_optimizer(optimizer: str, variant: str, mode: str, host: HostArrays,
                    device: Device):
    """A torch.optim optimizer with gradients in place; skips where torch lacks it."""
    if mode not in _TORCH_DTYPE_NAME:
        pytest.skip(f"torch.optim has no {mode} mode (no fp32 master weights)")
    if optimizer not in PEERS:
        pytest.skip(f"no torch.optim peer for {optimizer}")
    torch = import_torch(device)
    dtype = getattr(torch, _TORCH_DTYPE_NAME[mode])
    params = []
    for data, grad in zip(host.params, host.grads):
        param = torch.tensor(data, dtype=dtype, device=device.torch_device)
        param.grad = torch.tensor(grad, dtype=dtype, device=device.torch_device)
        params.append(param)
    class_name, kwargs = PEERS[optimizer]
    try:
        opt = getattr(torch.optim, class_name)(params, **kwargs, **{variant: True})
        opt.step()  # state initialisation; also where unsupported dtype/device is refused
    except (TypeError, RuntimeError, ValueError) as error:
        pytest.skip(f"torch.optim.{class_name}({variant}=True) unavailable here: {error}")
    return opt
