"""MSVAG.

    rho = min((1 - beta)^2 (1 - bp^2) / ((1 - bp)^2 (1 - beta^2)), 0.9999),  bp = beta_power
    m <- m + (1 - beta) (g - m);   v <- v + (1 - beta) (g^2 - v)
    mt = m / (1 - bp);  vt = v / (1 - bp);  s = (vt - mt^2) / (1 - rho)
    factor = clip(mt^2 / (mt^2 + rho s), 0, 1), NaN -> 0 (Chainer's CPU rule)
    p <- p - eta (lr mt factor + weight_decay_rate p);   then bp <- bp beta

beta_power starts at beta when the rule is created and is kept per rule by
the engine (the host-side schedule); the ``fixed`` profile saves it.
"""
import numpy

from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule, table

_defaults = defaults(lr=0.1, beta=0.9, eta=1.0, weight_decay_rate=0)


class MSVAGRule(FamilyRule):
    hparam_names = ("lr", "beta", "eta", "weight_decay_rate")
    extras = ("beta_power",)

    def __init__(self, parent_hyperparam=None, lr=None, beta=None, eta=None, weight_decay_rate=None,
                 profile="chainer"):
        super().__init__(parent_hyperparam or _defaults, profile)
        for name, value in (("lr", lr), ("beta", beta), ("eta", eta), ("weight_decay_rate", weight_decay_rate)):
            if value is not None:
                setattr(self.hyperparam, name, value)
        self.set_extra("beta_power", float(self.hyperparam.beta))

    @property
    def beta_power(self):
        return self.extra("beta_power")

    @beta_power.setter
    def beta_power(self, value):
        self.set_extra("beta_power", float(value))

    @classmethod
    def state_names(cls, hp):
        return ("m", "v")

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleMSVAG")

    def saved_extras(self):
        return ("beta_power",)

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        lr, beta, eta, wd = raw.T[:4]
        bp = extras["beta_power"]
        with numpy.errstate(divide="ignore", invalid="ignore"):
            rho = ((1.0 - beta) ** 2) * (1.0 - bp ** 2) / (((1.0 - bp) ** 2) * (1.0 - beta ** 2))
        rho = numpy.minimum(rho, 0.9999)
        out = table(len(raw))
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = 1 - beta, 1 - bp, 1 - rho, rho
        out[:, 4], out[:, 5], out[:, 6] = eta, lr, wd
        return out

    @classmethod
    def after_step(cls, raw, extras, stepped):
        extras["beta_power"][stepped] *= raw[stepped, 1]


class MSVAG(GradientMethod):
    rule_class = MSVAGRule
    lr = HyperparameterProxy("lr")
    beta = HyperparameterProxy("beta")
    eta = HyperparameterProxy("eta")
    weight_decay_rate = HyperparameterProxy("weight_decay_rate")

    def __init__(self, lr=_defaults.lr, beta=_defaults.beta, eta=_defaults.eta,
                 weight_decay_rate=_defaults.weight_decay_rate, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, beta=beta, eta=eta, weight_decay_rate=weight_decay_rate)
