"""Bytes an optimizer step moves per parameter, as a table.

A step reads the gradient once, reads and writes the parameter (or, with an fp32
master, reads and writes the master and writes the fp16 parameter) and reads and writes
every state array once. With fp16 parameters and gradients, an fp32 master and fp32
state (the figures docs/performance.md states):

    SGD 12 B, one state 20 B, two states 28 B, three states 36 B.

The same count for the other dtype modes gives:

    mode            param traffic   grad   per state
    float32         4 + 4           4      4 + 4
    fp16+master     4 + 4 + 2       2      4 + 4
    float16         2 + 2           2      2 + 2
    float64         8 + 8           8      8 + 8

Effective bandwidth is n_params * bytes_per_param / step time, counted the way copy
bandwidth is counted (bytes read plus bytes written, no write-allocate traffic).
"""

from __future__ import annotations

# Number of state arrays of each optimizer (Chainer 7.8.1, default arguments).
STATE_ARRAYS = {
    "SGD": 0,
    "MomentumSGD": 1,
    "CorrectedMomentumSGD": 1,
    "NesterovAG": 1,
    "AdaGrad": 1,
    "RMSprop": 1,
    "AdaDelta": 2,
    "Adam": 2,
    "AdamW": 2,
    "AdaBound": 2,
    "MSVAG": 2,
    "AMSGrad": 3,
    "AMSBound": 3,
    "RMSpropGraves": 3,
    "SMORMS3": 3,
}

# Dtype modes: (parameter and gradient traffic, bytes per state array), per parameter.
DTYPE_MODES = {
    "fp32": {"param_and_grad": 4 + 4 + 4, "per_state": 4 + 4},
    "fp16+master": {"param_and_grad": 4 + 4 + 2 + 2, "per_state": 4 + 4},
    "fp16": {"param_and_grad": 2 + 2 + 2, "per_state": 2 + 2},
    "fp64": {"param_and_grad": 8 + 8 + 8, "per_state": 8 + 8},
}


def bytes_per_param(optimizer: str, mode: str) -> int:
    """Bytes one step of `optimizer` moves per parameter in dtype `mode`."""
    if optimizer not in STATE_ARRAYS:
        raise KeyError(f"no state count for optimizer {optimizer!r}")
    if mode not in DTYPE_MODES:
        raise KeyError(f"unknown dtype mode {mode!r}; known: {sorted(DTYPE_MODES)}")
    traffic = DTYPE_MODES[mode]
    return traffic["param_and_grad"] + STATE_ARRAYS[optimizer] * traffic["per_state"]


def grad_read_floor(optimizer: str, mode: str) -> float:
    """The least dynamic loss scaling can add to a step: one more read of the gradients
    (the non-finite check must see every gradient before any parameter changes), as a
    fraction of the step's bytes. AdamW: 4 of 28 bytes in fp32, 2 of 28 with an fp32
    master, 2 of 14 in fp16."""
    grad_bytes = {"fp32": 4, "fp16+master": 2, "fp16": 2, "fp64": 8}[mode]
    return grad_bytes / bytes_per_param(optimizer, mode)


# docs/performance.md's figures for fp16 + fp32 master, checked at import.
_STATED_IN_DOCS = {"SGD": 12, "MomentumSGD": 20, "AdamW": 28, "AMSGrad": 36}
for _name, _bytes in _STATED_IN_DOCS.items():
    assert bytes_per_param(_name, "fp16+master") == _bytes, _name
