"""A user's own Adam, gated by the conformance suite: NumPy, written from Chainer's equations.

    python -m conformance gate --impl examples.my_adam --filter Adam
    python -m pytest --conformance-impl=examples.my_adam -k Adam examples

What it implements, and so what the suite runs: Chainer's Adam (alpha, beta1, beta2, eps,
eta, weight_decay_rate) for float64, float32 and float16 parameters (float16: float32
arithmetic, float16 state, as Chainer computes Adam for float16 without a master), per-rule
`enabled`, `t`, `state` and hyperparameter overrides, None gradients taken as zeros, and
Chainer's ValueError when eps is 0 in the dtype Adam computes in, raised where Chainer raises
it: inside the rule's update, after `opt.t`, the rules before it and its own `t` and state. It has no other optimizer,
no `amsgrad`/`adabound` switch, no optimizer hooks, no loss scaling, no fp32 master weights
(`use_fp32_update`), no checkpoints (`serializers`) and no `profile=` argument: the suite
reports the cases that need those as not applicable, with the reason.

Per step t, for a parameter p with gradient g (Chainer's order of operations)::

    m <- m + (1 - beta1) * (g - m)
    v <- v + (1 - beta2) * (g * g - v)
    p <- (1 - eta * weight_decay_rate) * p - eta * (alpha_t / (sqrt(v) + eps) * m)
    alpha_t = alpha * sqrt(1 - beta2**t) / (1 - beta1**t)
"""
import math
import types

import numpy as np

__all__ = ["Parameter", "optimizers"]


class Parameter:
    """An array (`data`, updated in place), its gradient (`grad`, None or an array), a name
    and, after `setup`, its `update_rule`."""

    def __init__(self, array, name=None):
        self.data = np.array(array)
        self.grad = None
        self.name = name
        self.update_rule = None

    @property
    def array(self):
        return self.data

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype


class Hyperparameter:
    """Attributes looked up here first, then in the parent (a rule's overrides)."""

    def __init__(self, parent=None):
        object.__setattr__(self, "_parent", parent)

    def __getattr__(self, name):
        if self._parent is None:
            raise AttributeError(name)
        return getattr(self._parent, name)


def compute_dtype(dtype):
    """The dtype Adam computes in: float32 for float16 parameters."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


class AdamRule:
    """One parameter's step count, state (`m`, `v`, in the parameter's dtype) and overrides."""

    def __init__(self, parent_hyperparam):
        self.hyperparam = Hyperparameter(parent_hyperparam)
        self.enabled = True
        self.t = 0
        self.state = None
        self.fp32_param = None   # no fp32 master weights

    def check(self, param):
        eps = self.hyperparam.eps
        dtype = compute_dtype(param.dtype)
        with np.errstate(under="ignore"):
            if eps != 0 and dtype.type(eps) == 0:
                raise ValueError(f"eps of Adam optimizer is too small for {dtype.name} ({eps})")

    def update(self, param):
        if not self.enabled:
            return
        self.t += 1
        if self.state is None:
            self.state = {"m": np.zeros_like(param.data), "v": np.zeros_like(param.data)}
        self.check(param)
        with np.errstate(all="ignore"):
            self._step(param)

    def _step(self, param):
        hp, dtype = self.hyperparam, compute_dtype(param.dtype)
        g = param.grad.astype(dtype)
        m, v = self.state["m"], self.state["v"]
        m_new = m.astype(dtype) + (1 - hp.beta1) * (g - m.astype(dtype))
        v_new = v.astype(dtype) + (1 - hp.beta2) * (g * g - v.astype(dtype))
        m[...], v[...] = m_new, v_new        # stored in the parameter's dtype
        alpha_t = hp.alpha * math.sqrt(1 - hp.beta2 ** self.t) / (1 - hp.beta1 ** self.t)
        step = alpha_t / (np.sqrt(v.astype(dtype)) + hp.eps)
        decay = 1 - hp.eta * hp.weight_decay_rate
        param.data[...] = decay * param.data.astype(dtype) - hp.eta * (step * m.astype(dtype))


class Adam:
    """Chainer's Adam(alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-08, eta=1.0,
    weight_decay_rate=0) over a mapping name -> Parameter."""

    def __init__(self, alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-08, eta=1.0,
                 weight_decay_rate=0):
        self.hyperparam = Hyperparameter()
        for name, value in (("alpha", alpha), ("beta1", beta1), ("beta2", beta2), ("eps", eps),
                            ("eta", eta), ("weight_decay_rate", weight_decay_rate)):
            setattr(self.hyperparam, name, value)
        self.t = 0
        self.epoch = 0
        self.target = None

    @property
    def loss_scale(self):
        return None   # no loss scaling

    def setup(self, params):
        self.target = dict(params)
        for param in self.target.values():
            param.update_rule = AdamRule(self.hyperparam)
        return self

    def update(self):
        """Takes a missing gradient as zeros, then steps every rule in order (a rule that
        rejects its eps raises from its update, as Chainer's does)."""
        params = list(self.target.values())
        for param in params:
            if param.grad is None:
                param.grad = np.zeros_like(param.data)
        self.t += 1
        for param in params:
            param.update_rule.update(param)


#: The optimizers this implementation offers: Adam alone.
optimizers = types.SimpleNamespace(Adam=Adam)
