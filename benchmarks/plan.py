"""What runs where, as data: the benchmark cases of each implementation on each device.

A case is one optimizer in one dtype mode on one parameter set (and, for torch peers,
one variant). The CPU plan fits `make bench` into about 15 minutes on 2 cores: every
optimizer at 1M and 16M parameters, the torch-matched optimizers also on ResNet-50
shapes, AdamW alone at 100M, BERT-base and GPT-2 small. The GPU plan adds 100M for every
family, where the GPU bandwidth target is stated.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import param_sets
from .bytes_per_param import STATE_ARRAYS
from .torch_peers import VARIANTS
from .workloads import MODES


@dataclass(frozen=True)
class Case:
    optimizer: str
    mode: str
    param_set: str
    variant: str = ""

    @property
    def id(self) -> str:
        return "-".join(part for part in (self.optimizer, self.mode, self.param_set,
                                          self.variant) if part)


PARAM_SETS = {
    "flat-64K": param_sets.ParamSet("flat-64K", ((64 * 1024,),)),
    **{p.name: p for p in (param_sets.flat(1_000_000), param_sets.flat(16_000_000),
                           param_sets.flat(100_000_000))},
    **param_sets.MODELS,
}

ALL_OPTIMIZERS = tuple(STATE_ARRAYS)
# Optimizers with a torch.optim peer and a per-array baseline.
PEER_OPTIMIZERS = ("AdamW", "SGD", "MomentumSGD", "AdaGrad", "RMSprop")
LARGE_SETS = ("flat-100M", "bert-base", "gpt2-small")
TORCH_MODES = ("fp32", "fp16")


def _grid(optimizers, modes, sets, variants=("",)) -> list[Case]:
    return [Case(o, m, s, v) for s in sets for o in optimizers for m in modes for v in variants]


def fast_cases(device: str) -> list[Case]:
    family_sets = ("flat-1M", "flat-16M") if device == "cpu" else ("flat-16M", "flat-100M")
    return (
        _grid(("AdamW", "SGD"), ("fp32", "fp16+master"), ("flat-64K",))
        + _grid(ALL_OPTIMIZERS, MODES, family_sets)
        + _grid(PEER_OPTIMIZERS, MODES, ("resnet50",))
        + _grid(("AdamW",), ("fp32", "fp16+master"), LARGE_SETS)
        + _grid(("Adam",), ("fp16+master",), ("flat-100M",))
    )


def torch_cases(device: str) -> list[Case]:
    sets = ("flat-1M", "flat-16M", "resnet50") if device == "cpu" else (
        "flat-16M", "flat-100M", "resnet50")
    # At the large sizes only the fused variant: foreach takes seconds per step there.
    return (_grid(PEER_OPTIMIZERS, TORCH_MODES, sets, VARIANTS)
            + _grid(("AdamW",), ("fp32",), LARGE_SETS, ("fused",)))


def per_array_cases(device: str) -> list[Case]:
    # Per-array updates matter where there are many arrays; one flat array shows the cost
    # per element. (A NumPy step on 16M fp16 elements takes seconds: 1M is enough.)
    if device == "gpu":
        return _grid(PEER_OPTIMIZERS, MODES, ("flat-16M", "resnet50"))
    # NumPy computes fp16 arithmetic element by element (seconds per ResNet-50 step), so
    # the fp16 mode is measured at 1M only.
    return (_grid(PEER_OPTIMIZERS, MODES, ("flat-1M",))
            + _grid(PEER_OPTIMIZERS, ("fp32", "fp16+master"), ("resnet50",)))


def reference_cases(device: str) -> list[Case]:
    # The reference runs on the CPU only, at sizes it steps through in well under a second.
    if device != "cpu":
        return []
    return _grid(("AdamW", "SGD"), ("fp32", "fp16+master"), ("flat-64K", "flat-1M"))


def loss_scaling_cases(device: str) -> list[Case]:
    return _grid(("AdamW",), MODES, ("flat-16M", "resnet50"))


# One optimizer per number of state arrays: a limit case stands for every optimizer
# that moves the same streams (benchmarks/limit.py).
_MIX_REPRESENTATIVE = {0: "SGD", 1: "MomentumSGD", 2: "AdamW", 3: "AMSGrad"}


def limit_cases(device: str) -> list[Case]:
    """The stream mixes and sizes of every step case of the plan, once each (CPU only:
    on the GPU the limit is the device copy)."""
    if device != "cpu":
        return []
    steps = (fast_cases(device) + torch_cases(device) + per_array_cases(device)
             + reference_cases(device) + loss_scaling_cases(device))
    seen = {}
    for case in steps:
        mix = Case(_MIX_REPRESENTATIVE[STATE_ARRAYS[case.optimizer]], case.mode, case.param_set)
        seen.setdefault(mix.id, mix)
    return list(seen.values())


def fast_memory_cases(device: str) -> list[Case]:
    return _grid(("AdamW",), MODES, ("flat-16M", "resnet50"))


def per_array_memory_cases(device: str) -> list[Case]:
    return _grid(("AdamW",), ("fp32", "fp16+master"), ("flat-16M", "resnet50"))


#: `--bench-size quick` (the one-command GPU check): the AdamW, Adam and SGD rows in fp32 and
#: fp16 + master on the sets where a GPU's bandwidth shows, so every report column is filled
#: in a few minutes; the full plan stays `make bench`'s.
QUICK_OPTIMIZERS = ("AdamW", "Adam", "SGD")
QUICK_MODES = ("fp32", "fp16+master", "fp16")
QUICK_SETS = ("flat-16M", "flat-100M", "resnet50")


def quick(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.optimizer in QUICK_OPTIMIZERS and c.mode in QUICK_MODES
            and c.param_set in QUICK_SETS]


CASES = {
    "fast": fast_cases,
    "torch": torch_cases,
    "per-array": per_array_cases,
    "reference": reference_cases,
    "fast+loss-scaling": loss_scaling_cases,
    "limit": limit_cases,
    "fast-memory": fast_memory_cases,
    "per-array-memory": per_array_memory_cases,
}
