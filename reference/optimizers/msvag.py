"""MSVAG: Balles & Hennig's M-SVAG (variance-adapted momentum SGD)."""

import numpy

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.serializers import ABSENT, same_bits, serialize_optional
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.1, beta=0.9, eta=1.0, weight_decay_rate=0)

#: Chainer clamps rho below 1 so that ``1 - rho`` stays positive.
RHO_MAX = 0.9999


class MSVAGRule(UpdateRule):
    """States ``m``, ``v`` (zeros); host scalar ``beta_power`` (``beta`` when the rule is
    built, times ``beta`` after every update)::

        rho    = min((1-beta)^2 (1-bp^2) / ((1-bp)^2 (1-beta^2)), 0.9999)
        m     <- m + (1 - beta) * (g - m)
        v     <- v + (1 - beta) * (g * g - v)
        mt     = m / (1 - bp),  vt = v / (1 - bp)
        s      = (vt - mt^2) / (1 - rho)
        factor = clip(mt^2 / (mt^2 + rho * s), 0, 1), NaN -> 0 (Chainer's CPU path)
        p     <- p - eta * (lr * mt * factor + weight_decay_rate * p)
        bp     = bp * beta                    (the host scalar, for the next update)
    """

    def __init__(self, parent_hyperparam=None, lr=None, beta=None, eta=None,
                 weight_decay_rate=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, beta=beta, eta=eta,
                      weight_decay_rate=weight_decay_rate)
        self._beta_power = self.hyperparam.beta

    @property
    def beta_power(self):
        """``beta ** (t + 1)`` in Chainer's bookkeeping (a scalar of the arithmetic)."""
        if isinstance(self._beta_power, (int, float)):  # a host number (numpy.float64 too)
            return self.arithmetic.scalar(self._beta_power)
        return self._beta_power

    @beta_power.setter
    def beta_power(self, value):
        self._beta_power = value

    def init_state(self, param):
        self.init_zeros("m", param)
        self.init_zeros("v", param)

    def update_core(self, param):
        ctx, hp, state = self.arithmetic, self.hyperparam, self.state_values
        grad = param.grad_value
        beta, beta_power = ctx.scalar(hp.beta), self.beta_power
        rho = ctx.minimum(self._rho(beta, beta_power), ctx.scalar(RHO_MAX))
        self.store_state("m", state["m"] + (1 - beta) * (grad - state["m"]))
        self.store_state("v", state["v"] + (1 - beta) * (grad * grad - state["v"]))
        mt = ctx.divide(state["m"], 1 - beta_power)
        vt = ctx.divide(state["v"], 1 - beta_power)
        mt2 = mt * mt
        s = (vt - mt2) / (1 - rho)
        factor = ctx.clip(ctx.divide(mt2, mt2 + rho * s), 0, 1)
        factor = ctx.where(ctx.isnan(factor), ctx.zeros_like(factor), factor)
        eta, lr = ctx.scalar(hp.eta), ctx.scalar(hp.lr)
        decay = ctx.scalar(hp.weight_decay_rate)
        param.store(param.value - eta * (lr * mt * factor + decay * param.value))
        self._beta_power = beta_power * beta

    @staticmethod
    def _rho(beta, beta_power):
        numerator = (1 - beta) ** 2 * (1 - beta_power ** 2)
        return numerator / ((1 - beta_power) ** 2 * (1 - beta ** 2))

    def serialize_fixed_extras(self, serializer):
        """``fixed`` also keeps ``beta_power``."""
        super().serialize_fixed_extras(serializer)
        current = numpy.float64(self.arithmetic.to_python_float(self.beta_power))
        answer = serialize_optional(serializer, "beta_power", current)
        if answer is not ABSENT and not same_bits(answer, current):
            value = numpy.asarray(answer)
            if value.shape != () or value.dtype.kind != "f" or not numpy.isfinite(value):
                raise ValueError("beta_power must be a finite float scalar, found {!r}"
                                 .format(answer))
            self._beta_power = self.arithmetic.scalar(float(value))


class MSVAG(GradientMethod):
    """Chainer's ``MSVAG(lr=0.1, beta=0.9, eta=1.0, weight_decay_rate=0)``."""

    lr = HyperparameterProxy("lr")
    beta = HyperparameterProxy("beta")
    eta = HyperparameterProxy("eta")
    weight_decay_rate = HyperparameterProxy("weight_decay_rate")

    def __init__(self, lr=_default_hyperparam.lr, beta=_default_hyperparam.beta,
                 eta=_default_hyperparam.eta,
                 weight_decay_rate=_default_hyperparam.weight_decay_rate, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, beta=beta, eta=eta,
                weight_decay_rate=weight_decay_rate)

    def create_update_rule(self):
        return MSVAGRule(self.hyperparam)
