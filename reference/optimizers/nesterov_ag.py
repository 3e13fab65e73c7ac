"""NesterovAG: Nesterov's accelerated gradient (Sutskever et al.'s formulation)."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.01, momentum=0.9)


class NesterovAGRule(UpdateRule):
    """State ``v`` (zeros). One store per line (the scalar factors are host-side)::

        v <- momentum * v
        v <- v - lr * g
        p <- p + (momentum * momentum) * v
        p <- p - ((1 + momentum) * lr) * g
    """

    def __init__(self, parent_hyperparam=None, lr=None, momentum=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, momentum=momentum)

    def init_state(self, param):
        self.init_zeros("v", param)

    def update_core(self, param):
        ctx, hp = self.arithmetic, self.hyperparam
        lr, momentum = ctx.scalar(hp.lr), ctx.scalar(hp.momentum)
        grad = param.grad_value
        self.store_state("v", self.state_values["v"] * momentum)
        self.store_state("v", self.state_values["v"] - lr * grad)
        param.store(param.value + (momentum * momentum) * self.state_values["v"])
        param.store(param.value - ((1 + momentum) * lr) * grad)


class NesterovAG(GradientMethod):
    """Chainer's ``NesterovAG(lr=0.01, momentum=0.9)``."""

    lr = HyperparameterProxy("lr")
    momentum = HyperparameterProxy("momentum")

    def __init__(self, lr=_default_hyperparam.lr, momentum=_default_hyperparam.momentum, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, momentum=momentum)

    def create_update_rule(self):
        return NesterovAGRule(self.hyperparam)
