"""MomentumSGD: SGD with classical momentum."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.01, momentum=0.9)


class MomentumSGDRule(UpdateRule):
    """State ``v`` (zeros). Each line is one store, as in Chainer's in-place code::

        v <- momentum * v
        v <- v - lr * g
        p <- p + v
    """

    def __init__(self, parent_hyperparam=None, lr=None, momentum=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, momentum=momentum)

    def init_state(self, param):
        self.init_zeros("v", param)

    def update_core(self, param):
        ctx, hp = self.arithmetic, self.hyperparam
        lr, momentum = ctx.scalar(hp.lr), ctx.scalar(hp.momentum)
        self.store_state("v", self.state_values["v"] * momentum)
        self.store_state("v", self.state_values["v"] - lr * param.grad_value)
        param.store(param.value + self.state_values["v"])


class MomentumSGD(GradientMethod):
    """Momentum SGD (Chainer's ``MomentumSGD(lr=0.01, momentum=0.9)``)."""

    lr = HyperparameterProxy("lr")
    momentum = HyperparameterProxy("momentum")

    def __init__(self, lr=_default_hyperparam.lr, momentum=_default_hyperparam.momentum, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, momentum=momentum)

    def create_update_rule(self):
        return MomentumSGDRule(self.hyperparam)
