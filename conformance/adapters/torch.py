"""torch.optim behind the conformance contract (`--impl conformance.adapters.torch`).

The module's `Parameter`, `optimizers` and `optimizer_hooks` are the table's mappings
(conformance.adapters.mappings, kind "mapping") in torch's for-loop implementation;
`contract_for(selection, path)` gives any other choice of mappings, in any of torch's three
implementations of a step (`TORCH_PATHS`: "for-loop", "foreach", "fused"), for
`python -m conformance migrate` and for a team gating its own port (docs/migration.md).

A Parameter's `data` is a NumPy array that its torch tensor aliases (`torch.from_numpy`), so
what torch writes is what the harness reads, and its `grad` is the tensor's `.grad`. Each
parameter has its own torch optimizer, built by the mapping's code with `params=[tensor]`
and then rebuilt with the same arguments and the path's `foreach`/`fused` flag. torch.optim
has no loss scaling with Chainer's schedule, no fp32 master and no `profile`: those cases are
not applicable. Checkpoints keep torch's state for each parameter (its state_dict's content)
with Chainer's counters (conformance.adapters.counterpart.save_npz).
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from .counterpart import HostParameter, contract
from .mappings import TORCH_PATHS, default_selection


class Parameter(HostParameter):
    """A NumPy array and the torch tensor that aliases it; `grad` is the tensor's gradient."""

    def __init__(self, array, name=None):
        super().__init__(array, name)
        self.tensor = torch.from_numpy(self.data)

    def on_gradient(self, array) -> None:
        self.tensor.grad = None if array is None else torch.from_numpy(array)


class TorchCounterpart:
    """One parameter's torch optimizer, built by the mapping's code, in one path."""

    def __init__(self, mapping, hyperparameters: dict, param: Parameter, path: str):
        namespace = dict(hyperparameters, torch=torch, math=math, params=[param.tensor])
        built = eval(mapping.build, namespace)
        cls = type(built)
        accepted = inspect.signature(cls).parameters
        arguments = {k: v for k, v in built.defaults.items() if k in accepted}
        arguments.update(TORCH_PATHS[path])
        self.optimizer = cls([param.tensor], **arguments)
        self.tensor = param.tensor
        self.mapping = mapping
        self.hyperparameters = hyperparameters

    def step(self, param: Parameter, t: int) -> None:
        if self.mapping.before_step:
            exec(self.mapping.before_step,
                 dict(self.hyperparameters, opt=self.optimizer, t=t, torch=torch, math=math))
        self.optimizer.step()

    def state(self) -> dict:
        """The optimizer's state arrays for this parameter (NumPy views), by torch's names."""
        return {k: v.numpy() for k, v in self.optimizer.state[self.tensor].items()
                if isinstance(v, torch.Tensor) and k != "step"}

    def export(self) -> dict:
        """The optimizer's state for this parameter (copies), `step` included."""
        return {k: v.numpy().copy() for k, v in self.optimizer.state[self.tensor].items()
                if isinstance(v, torch.Tensor)}

    def restore(self, native: dict, t: int) -> None:
        """Install saved state; torch's `step` (a float32 tensor) becomes `t`."""
        state = {k: torch.from_numpy(np.array(v)) for k, v in native.items() if k != "step"}
        if "step" in native:
            state["step"] = torch.tensor(float(t), dtype=torch.float32)
        self.optimizer.state[self.tensor] = state

    def step_count(self):
        step = self.optimizer.state[self.tensor].get("step")
        return None if step is None else int(step.item())


class TorchLibrary:
    """torch, in one of its paths, as `conformance.adapters.counterpart` uses a library."""

    name = "torch"
    Parameter = Parameter

    def __init__(self, path: str = "for-loop"):
        if path not in TORCH_PATHS:
            raise ValueError(f"unknown torch path {path!r}; expected one of {tuple(TORCH_PATHS)}")
        self.path = path

    def counterpart(self, mapping, hyperparameters, param):
        return TorchCounterpart(mapping, hyperparameters, param, self.path)

    def run_hook(self, hook, params, optimizer) -> None:
        """Run the hook's code on `params` (their tensors, whose .grad is set)."""
        rules = {id(p.tensor): p.update_rule for p in params}

        def noise(tensor):
            rule = rules[id(tensor)]
            return np.asarray(hook.noise_func(np, tuple(tensor.shape), tensor.numpy().dtype,
                                              hook, rule))

        exec(hook.mapping.build, dict(hook.values(), torch=torch, math=math, noise=noise,
                                      params=[p.tensor for p in params]))


def contract_for(selection: dict | None = None, path: str = "for-loop"):
    """The contract namespace for `selection` (Chainer name -> Mapping; default: the table's
    mappings) in torch's `path`."""
    return contract(TorchLibrary(path), selection or default_selection("torch"))


def versions() -> dict:
    """The versions a result holds for."""
    return {"torch": torch.__version__, "numpy": np.__version__}


_default = contract_for()
optimizers = _default.optimizers
optimizer_hooks = _default.optimizer_hooks
serializers = _default.serializers
