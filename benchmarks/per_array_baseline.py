"""The per-array baseline: one NumPy pass (CPU) or one kernel launch (GPU) per array.

This is how Chainer 7.8.1 updates parameters: a loop over the parameters, each updated
by its own rule. On the CPU each rule is a chain of NumPy expressions that allocate
full-size temporaries; on the GPU each rule is one elementwise kernel per array, so a
step costs one launch per array. With an fp32 master, the gradient is cast to fp32, the
master is updated and the fp16 parameter is written back from it, array by array.

Update equations (t is the step count, g the gradient, w the parameter or master):

    SGD          w -= lr g
    MomentumSGD  v = momentum v - lr g;  w += v
    AdaGrad      h += g^2;  w -= lr g / (sqrt(h) + eps)
    RMSprop      ms = alpha ms + (1 - alpha) g^2;  w -= lr g / (sqrt(ms) + eps)
    Adam/AdamW   m += (1 - beta1)(g - m);  v += (1 - beta2)(g^2 - v)
                 alpha_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t)
                 w -= eta (alpha_t m / (sqrt(v) + eps) + weight_decay_rate w)
"""

from __future__ import annotations

import math

import numpy as np

from .workloads import CHAINER_HYPERPARAMS

STATE_NAMES = {
    "SGD": (),
    "MomentumSGD": ("v",),
    "AdaGrad": ("h",),
    "RMSprop": ("ms",),
    "Adam": ("m", "v"),
    "AdamW": ("m", "v"),
}

_DEFAULTS = {
    "SGD": {"lr": 1e-2},
    "MomentumSGD": {"lr": 1e-2, "momentum": 0.9},
    "AdaGrad": {"lr": 1e-3, "eps": 1e-6},
    "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-6},
    "Adam": {"alpha": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "eta": 1.0,
             "weight_decay_rate": 0.0},
}
_DEFAULTS["AdamW"] = _DEFAULTS["Adam"]


def hyperparams(optimizer: str) -> dict:
    return {**_DEFAULTS[optimizer], **CHAINER_HYPERPARAMS.get(optimizer, {})}


def adam_alpha_t(hp: dict, t: int) -> float:
    return hp["alpha"] * math.sqrt(1.0 - hp["beta2"] ** t) / (1.0 - hp["beta1"] ** t)


# ---- CPU: one chain of NumPy expressions per array ------------------------------------

def _numpy_rule(optimizer: str, w, g, state: dict, hp: dict, t: int) -> None:
    if optimizer == "SGD":
        w -= hp["lr"] * g
    elif optimizer == "MomentumSGD":
        v = state["v"]
        v *= hp["momentum"]
        v -= hp["lr"] * g
        w += v
    elif optimizer == "AdaGrad":
        h = state["h"]
        h += g * g
        w -= hp["lr"] * g / (np.sqrt(h) + hp["eps"])
    elif optimizer == "RMSprop":
        ms = state["ms"]
        ms *= hp["alpha"]
        ms += (1 - hp["alpha"]) * g * g
        w -= hp["lr"] * g / (np.sqrt(ms) + hp["eps"])
    else:  # Adam, AdamW
        m, v = state["m"], state["v"]
        g = g.astype(np.float32, copy=False)
        m += (1 - hp["beta1"]) * (g - m)
        v += (1 - hp["beta2"]) * (g * g - v)
        step = adam_alpha_t(hp, t) / (np.sqrt(v.astype(np.float32, copy=False)) + hp["eps"])
        w *= 1 - hp["eta"] * hp["weight_decay_rate"]
        w -= hp["eta"] * step * m


# ---- GPU: one elementwise kernel per array ---------------------------------------------

_KERNEL_BODIES = {
    "SGD": ("", "T lr", "w_ -= lr * g_;"),
    "MomentumSGD": ("S v", "T lr, T momentum",
                    "T v_ = momentum * (T)v - lr * g_; v = (S)v_; w_ += v_;"),
    "AdaGrad": ("S h", "T lr, T eps",
                "T h_ = (T)h + g_ * g_; h = (S)h_; w_ -= lr * g_ / (sqrt(h_) + eps);"),
    "RMSprop": ("S ms", "T lr, T alpha, T eps",
                "T ms_ = alpha * (T)ms + (1 - alpha) * g_ * g_; ms = (S)ms_;"
                " w_ -= lr * g_ / (sqrt(ms_) + eps);"),
    "Adam": ("S m, S v", "T alpha_t, T beta1, T beta2, T eps, T eta, T weight_decay_rate",
             "T m_ = (T)m + (1 - beta1) * (g_ - (T)m); T v_ = (T)v + (1 - beta2) * (g_ * g_ - (T)v);"
             " m = (S)m_; v = (S)v_;"
             " w_ -= eta * (alpha_t * m_ / (sqrt(v_) + eps) + weight_decay_rate * w_);"),
}
_KERNEL_BODIES["AdamW"] = _KERNEL_BODIES["Adam"]
_KERNEL_SCALARS = {
    "SGD": ("lr",), "MomentumSGD": ("lr", "momentum"), "AdaGrad": ("lr", "eps"),
    "RMSprop": ("lr", "alpha", "eps"),
    "Adam": ("alpha_t", "beta1", "beta2", "eps", "eta", "weight_decay_rate"),
}
_KERNEL_SCALARS["AdamW"] = _KERNEL_SCALARS["Adam"]


def _cupy_kernel(cupy, optimizer: str):
    """One fused kernel: gradient G, parameter W and state S in storage dtypes, math in T."""
    states, scalars, body = _KERNEL_BODIES[optimizer]
    inputs = ", ".join(part for part in ("G g", scalars) if part)
    outputs = ", ".join(part for part in ("W w", states) if part)
    code = f"T g_ = (T)g; T w_ = (T)w; {body} w = (W)w_;"
    return cupy.ElementwiseKernel(inputs, outputs, code, f"per_array_{optimizer.lower()}")


class PerArrayOptimizer:
    """Updates each array with its own NumPy pass (CPU) or kernel launch (GPU)."""

    def __init__(self, optimizer: str, mode: str, params: list, grads: list, xp):
        if optimizer not in STATE_NAMES:
            raise KeyError(f"no per-array baseline for {optimizer!r}; "
                           f"have {sorted(STATE_NAMES)}")
        self.optimizer, self.xp, self.t = optimizer, xp, 0
        self.hp = hyperparams(optimizer)
        self.params, self.grads = params, grads
        self.masters = [p.astype(np.float32) for p in params] if mode == "fp16+master" else None
        updated = self.masters if self.masters is not None else params
        self.states = [{name: xp.zeros_like(w) for name in STATE_NAMES[optimizer]}
                       for w in updated]
        self.kernel = None if xp is np else _cupy_kernel(xp, optimizer)

    def step(self) -> None:
        self.t += 1
        for index, (param, grad) in enumerate(zip(self.params, self.grads)):
            if self.masters is not None:
                master = self.masters[index]
                self._update(master, grad.astype(np.float32), self.states[index])
                param[...] = master.astype(param.dtype)
            else:
                self._update(param, grad, self.states[index])

    def _update(self, w, g, state: dict) -> None:
        if self.kernel is None:
            _numpy_rule(self.optimizer, w, g, state, self.hp, self.t)
            return
        scalars = dict(self.hp)
        if self.optimizer in ("Adam", "AdamW"):
            scalars["alpha_t"] = adam_alpha_t(self.hp, self.t)
        values = [np.float32(scalars[name]) for name in _KERNEL_SCALARS[self.optimizer]]
        self.kernel(g, *values, w, *state.values())
