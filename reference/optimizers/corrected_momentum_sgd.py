"""CorrectedMomentumSGD: momentum SGD with the learning rate applied outside the momentum."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.01, momentum=0.9)


class CorrectedMomentumSGDRule(UpdateRule):
    """State ``v`` (zeros). One store per line::

        v <- momentum * v
        v <- v - g
        p <- p + lr * v
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
        self.store_state("v", self.state_values["v"] - param.grad_value)
        param.store(param.value + lr * self.state_values["v"])


class CorrectedMomentumSGD(GradientMethod):
    """Chainer's ``CorrectedMomentumSGD(lr=0.01, momentum=0.9)``."""

    lr = HyperparameterProxy("lr")
    momentum = HyperparameterProxy("momentum")

    def __init__(self, lr=_default_hyperparam.lr, momentum=_default_hyperparam.momentum, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, momentum=momentum)

    def create_update_rule(self):
        return CorrectedMomentumSGDRule(self.hyperparam)
