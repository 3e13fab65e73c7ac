"""SMORMS3.

r = 1 / (mem + 1);  g <- (1 - r) g + r grad;  g2 <- (1 - r) g2 + r grad^2
x = g^2 / (g2 + eps);  p <- p - grad min(x, lr) / (sqrt(g2) + eps);  mem <- 1 + mem (1 - x)
State starts at mem = 1, g = g2 = 0.
"""
from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule

_defaults = defaults(lr=0.001, eps=1e-16)


class SMORMS3Rule(FamilyRule):
    hparam_names = ("lr", "eps")
    state_fill = {"mem": 1}

    def __init__(self, parent_hyperparam=None, lr=None, eps=None, profile="chainer"):
        super().__init__(parent_hyperparam or _defaults, profile)
        if lr is not None:
            self.hyperparam.lr = lr
        if eps is not None:
            self.hyperparam.eps = eps

    @classmethod
    def state_names(cls, hp):
        return ("mem", "g", "g2")

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleSMORMS3")


class SMORMS3(GradientMethod):
    rule_class = SMORMS3Rule
    lr = HyperparameterProxy("lr")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_defaults.lr, eps=_defaults.eps, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, eps=eps)
