"""AdaGrad and AdaDelta.

AdaGrad:  h <- h + g^2;  p <- p - lr g / (sqrt(h) + eps)
AdaDelta: msg <- rho msg + (1 - rho) g^2
          dx <- sqrt((msdx + eps) / (msg + eps)) g
          msdx <- rho msdx + (1 - rho) dx^2;  p <- p - dx
"""
from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule, table

_adagrad_defaults = defaults(lr=0.001, eps=1e-8)
_adadelta_defaults = defaults(rho=0.95, eps=1e-6)


class AdaGradRule(FamilyRule):
    hparam_names = ("lr", "eps")

    def __init__(self, parent_hyperparam=None, lr=None, eps=None, profile="chainer"):
        super().__init__(parent_hyperparam or _adagrad_defaults, profile)
        if lr is not None:
            self.hyperparam.lr = lr
        if eps is not None:
            self.hyperparam.eps = eps

    @classmethod
    def state_names(cls, hp):
        return ("h",)

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleAdaGrad")


class AdaDeltaRule(FamilyRule):
    hparam_names = ("rho", "eps")

    def __init__(self, parent_hyperparam=None, rho=None, eps=None, profile="chainer"):
        super().__init__(parent_hyperparam or _adadelta_defaults, profile)
        if rho is not None:
            self.hyperparam.rho = rho
        if eps is not None:
            self.hyperparam.eps = eps

    @classmethod
    def state_names(cls, hp):
        return ("msg", "msdx")

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleAdaDelta")

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        rho, eps = raw[:, 0], raw[:, 1]
        out = table(len(raw))
        out[:, 0], out[:, 1], out[:, 2] = rho, 1 - rho, eps
        return out


class AdaGrad(GradientMethod):
    rule_class = AdaGradRule
    lr = HyperparameterProxy("lr")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_adagrad_defaults.lr, eps=_adagrad_defaults.eps, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, eps=eps)


class AdaDelta(GradientMethod):
    rule_class = AdaDeltaRule
    rho = HyperparameterProxy("rho")
    eps = HyperparameterProxy("eps")

    def __init__(self, rho=_adadelta_defaults.rho, eps=_adadelta_defaults.eps, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(rho=rho, eps=eps)
