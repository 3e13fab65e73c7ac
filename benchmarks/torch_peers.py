"""torch.optim peers: the same optimizer, parameter shapes and dtype on the same device.

Each peer runs in torch's `foreach` (multi-tensor) or `fused` implementation. torch.optim
has no fp32-master mode, so peers run only in the fp32 and fp16 modes. Hyperparameters
match `workloads.CHAINER_HYPERPARAMS`, so both sides move the same bytes per step.

Every peer's first step is checked against torch's own for-loop implementation in float64
(check_one_step): a peer that leaves the parameters unchanged ("no work": with torch 2.13.0,
SGD(fused=True) on fp16 CPU tensors) is dropped, one outside the error bound is timed and
marked, and neither counts as a peer in the ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


# The one-step check (check_one_step). Operations that round while forming the step
# (arithmetic and the hyperparameters it multiplies by); each adds at most one unit
# roundoff of the compute dtype to the step's relative error, to first order.
STEP_OPERATIONS = {"SGD": 2, "Adagrad": 7, "RMSprop": 8, "Adam": 14, "AdamW": 14}
# Roundings of the parameter itself to its dtype, in half ulps: AdamW decays it in place
# first, by a factor (1 - lr * weight_decay) that is itself rounded to the dtype.
PARAM_ROUNDINGS = {"AdamW": 3}
CHECK_ELEMENTS = 4096  # checked at the head of every array
_UNIT_ROUNDOFF = {"fp32": 2.0**-24, "fp16": 2.0**-11}
# Half the smallest subnormal: the absolute error of an operation whose result underflows.
_UNDERFLOW = {"fp32": 2.0**-150, "fp16": 2.0**-25}


@dataclass(frozen=True)
class PeerCheck:
    """How one step of a peer compares with its own for-loop implementation in float64."""

    # "ok"; "no work": elements the step must move were left unchanged; "outside bound":
    # every one moved, not as the step should
    outcome: str
    checked: int  # elements compared
    changed: int  # elements the float64 step moves by more than twice the bound
    moved: int  # of those, elements the peer moved at all
    worst: float  # largest |peer - float64| over its bound

    def describe(self) -> str:
        if self.outcome == "no work":
            return (f"no work: only {self.moved} of the {self.changed} elements a step must move "
                    "were changed")
        return f"{self.outcome}: error up to {self.worst:.3g}x its bound"


def _ulp(values: np.ndarray, mode: str) -> np.ndarray:
    """The spacing of the dtype at |values| (the wider one, at a power of two)."""
    dtype = np.float32 if mode == "fp32" else np.float16
    return np.spacing(np.abs(values).astype(dtype)).astype(np.float64)


def check_one_step(torch, class_name: str, kwargs: dict, mode: str, before, grads, after
                   ) -> PeerCheck:
    """Compare a peer's first step with torch's own for-loop implementation (foreach=False)
    stepping float64 copies of the same parameters and gradients.

    Bound per element: half an ulp of the parameter's dtype for each rounding of the
    parameter, plus the step's own rounding error: for each of STEP_OPERATIONS roundings,
    the dtype's unit roundoff times the step (torch computes fp16 steps in fp16 or fp32)
    or, where a result underflows, half the dtype's smallest subnormal. A peer that leaves
    any element unchanged that the step moves by more than twice that bound does no work
    there ("no work", dropped)."""
    params64 = []
    for p, g in zip(before, grads):
        q = torch.tensor(p, dtype=torch.float64)
        q.grad = torch.tensor(g, dtype=torch.float64)
        params64.append(q)
    getattr(torch.optim, class_name)(params64, **kwargs, foreach=False).step()
    ref = np.concatenate([q.detach().numpy() for q in params64])
    start = np.concatenate(before).astype(np.float64)
    got = np.concatenate(after).astype(np.float64)
    step = np.abs(ref - start)
    bound = (PARAM_ROUNDINGS.get(class_name, 1) * 0.5 * _ulp(ref, mode)
             + STEP_OPERATIONS[class_name] * (_UNIT_ROUNDOFF[mode] * step + _UNDERFLOW[mode]))
    error = np.abs(got - ref)
    with np.errstate(invalid="ignore"):
        ratio = np.where(np.isnan(got), np.inf, error / bound)
    must_move = step > 2 * bound  # beyond any doubt: the parameter cannot round back
    moved = int(np.count_nonzero(must_move & (got != start)))
    worst = float(ratio.max()) if ratio.size else 0.0
    changed = int(np.count_nonzero(must_move))
    outcome = "ok" if worst <= 1.0 else ("no work" if moved < changed else "outside bound")
    return PeerCheck(outcome, int(ref.size), changed, moved, worst)


def _samples(tensors) -> list[np.ndarray]:
    return [t.detach().reshape(-1)[:CHECK_ELEMENTS].float().numpy().copy() for t in tensors]


def torch_optimizer(optimizer: str, variant: str, mode: str, host: HostArrays,
                    device: Device):
    """A torch.optim optimizer with gradients in place, after one step that has been
    checked (check_one_step); skips where torch lacks the variant. Returns the optimizer
    and the PeerCheck."""
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
    before, grads = _samples(params), _samples([p.grad for p in params])
    try:
        opt = getattr(torch.optim, class_name)(params, **kwargs, **{variant: True})
        opt.step()  # state initialisation; also where unsupported dtype/device is refused
    except (TypeError, RuntimeError, ValueError) as error:
        pytest.skip(f"torch.optim.{class_name}({variant}=True) unavailable here: {error}")
    check = check_one_step(torch, class_name, kwargs, mode, before, grads, _samples(params))
    return opt, check
