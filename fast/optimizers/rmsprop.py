"""RMSprop and RMSpropGraves.

RMSprop:       ms <- alpha ms + (1 - alpha) g^2
               p <- p - lr g / (sqrt(ms) + eps)   (eps_inside_sqrt: / sqrt(ms + eps))
               eps is first rounded to the gradient's dtype; if that makes it 0,
               ValueError (Chainer's check; fp16 without master, eps=1e-8 fails).
RMSpropGraves: n <- alpha n + (1 - alpha) g^2;  a <- alpha a + (1 - alpha) g
               delta <- momentum delta - lr g / sqrt(n - a^2 + eps);  p <- p + delta
"""
import numpy

from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule, check_eps_for, table

_rmsprop_defaults = defaults(lr=0.01, alpha=0.99, eps=1e-8, eps_inside_sqrt=False)
_graves_defaults = defaults(lr=1e-4, alpha=0.95, momentum=0.9, eps=1e-4)


class RMSpropRule(FamilyRule):
    hparam_names = ("lr", "alpha", "eps", "eps_inside_sqrt")

    def __init__(self, parent_hyperparam=None, lr=None, alpha=None, eps=None, eps_inside_sqrt=None,
                 profile="chainer"):
        super().__init__(parent_hyperparam or _rmsprop_defaults, profile)
        for name, value in (("lr", lr), ("alpha", alpha), ("eps", eps), ("eps_inside_sqrt", eps_inside_sqrt)):
            if value is not None:
                setattr(self.hyperparam, name, value)

    @classmethod
    def state_names(cls, hp):
        return ("ms",)

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleRMSprop")

    def check_update(self, param_dtype, update_dtype):
        check_eps_for("RMSprop", self.hyperparam.eps, update_dtype)

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        lr, alpha, eps, inside = raw.T[:4]
        out = table(len(raw))
        out[:, 0], out[:, 1] = alpha, 1 - alpha
        out[:, 2] = eps.astype(update_dtype).astype(numpy.float64)
        out[:, 3], out[:, 4] = lr, inside
        return out


class RMSpropGravesRule(FamilyRule):
    hparam_names = ("lr", "alpha", "momentum", "eps")

    def __init__(self, parent_hyperparam=None, lr=None, alpha=None, momentum=None, eps=None, profile="chainer"):
        super().__init__(parent_hyperparam or _graves_defaults, profile)
        for name, value in (("lr", lr), ("alpha", alpha), ("momentum", momentum), ("eps", eps)):
            if value is not None:
                setattr(self.hyperparam, name, value)

    @classmethod
    def state_names(cls, hp):
        return ("n", "g", "delta")

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleRMSpropGraves")

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        lr, alpha, momentum, eps = raw.T[:4]
        out = table(len(raw))
        out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] = alpha, 1 - alpha, momentum, lr, eps
        return out


class RMSprop(GradientMethod):
    rule_class = RMSpropRule
    lr = HyperparameterProxy("lr")
    alpha = HyperparameterProxy("alpha")
    eps = HyperparameterProxy("eps")
    eps_inside_sqrt = HyperparameterProxy("eps_inside_sqrt")

    def __init__(self, lr=_rmsprop_defaults.lr, alpha=_rmsprop_defaults.alpha, eps=_rmsprop_defaults.eps,
                 eps_inside_sqrt=_rmsprop_defaults.eps_inside_sqrt, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, alpha=alpha, eps=eps, eps_inside_sqrt=eps_inside_sqrt)


class RMSpropGraves(GradientMethod):
    rule_class = RMSpropGravesRule
    lr = HyperparameterProxy("lr")
    alpha = HyperparameterProxy("alpha")
    momentum = HyperparameterProxy("momentum")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_graves_defaults.lr, alpha=_graves_defaults.alpha, momentum=_graves_defaults.momentum,
                 eps=_graves_defaults.eps, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, alpha=alpha, momentum=momentum, eps=eps)
