"""SGD, MomentumSGD, CorrectedMomentumSGD and NesterovAG.

SGD:                  p <- p - lr g
MomentumSGD:          v <- momentum v - lr g;  p <- p + v
CorrectedMomentumSGD: v <- momentum v - g;     p <- p + lr v
NesterovAG:           v <- momentum v - lr g;  p <- p + momentum^2 v - (1 + momentum) lr g
"""
from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule, table

_sgd_defaults = defaults(lr=0.01)
_momentum_defaults = defaults(lr=0.01, momentum=0.9)


class SGDRule(FamilyRule):
    hparam_names = ("lr",)

    def __init__(self, parent_hyperparam=None, lr=None, profile="chainer"):
        super().__init__(parent_hyperparam or _sgd_defaults, profile)
        if lr is not None:
            self.hyperparam.lr = lr

    @staticmethod
    def kernel_id(hp):
        return kernel_id("RuleSGD")


class _MomentumRule(FamilyRule):
    hparam_names = ("lr", "momentum")
    KERNEL = None

    def __init__(self, parent_hyperparam=None, lr=None, momentum=None, profile="chainer"):
        super().__init__(parent_hyperparam or _momentum_defaults, profile)
        if lr is not None:
            self.hyperparam.lr = lr
        if momentum is not None:
            self.hyperparam.momentum = momentum

    @classmethod
    def state_names(cls, hp):
        return ("v",)

    @classmethod
    def kernel_id(cls, hp):
        return cls.KERNEL

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        lr, momentum = raw[:, 0], raw[:, 1]
        out = table(len(raw))
        out[:, 0], out[:, 1] = momentum, lr
        out[:, 2] = momentum * momentum
        out[:, 3] = (1 + momentum) * lr
        return out


class MomentumSGDRule(_MomentumRule):
    KERNEL = kernel_id("RuleMomentumSGD")


class CorrectedMomentumSGDRule(_MomentumRule):
    KERNEL = kernel_id("RuleCorrectedMomentumSGD")


class NesterovAGRule(_MomentumRule):
    KERNEL = kernel_id("RuleNesterovAG")


class SGD(GradientMethod):
    rule_class = SGDRule
    lr = HyperparameterProxy("lr")

    def __init__(self, lr=_sgd_defaults.lr, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr)


class _MomentumMethod(GradientMethod):
    lr = HyperparameterProxy("lr")
    momentum = HyperparameterProxy("momentum")

    def __init__(self, lr=_momentum_defaults.lr, momentum=_momentum_defaults.momentum, *, profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(lr=lr, momentum=momentum)


class MomentumSGD(_MomentumMethod):
    rule_class = MomentumSGDRule


class CorrectedMomentumSGD(_MomentumMethod):
    rule_class = CorrectedMomentumSGDRule


class NesterovAG(_MomentumMethod):
    rule_class = NesterovAGRule
