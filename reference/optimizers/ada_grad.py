"""AdaGrad: per-element rates from the accumulated squared gradient."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.001, eps=1e-08)


class AdaGradRule(UpdateRule):
    """State ``h`` (zeros)::

        h <- h + g * g
        p <- p - lr * g / (sqrt(h) + eps)
    """

    def __init__(self, parent_hyperparam=None, lr=None, eps=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, eps=eps)

    def init_state(self, param):
        self.init_zeros("h", param)

    def update_core(self, param):
        ctx, hp = self.arithmetic, self.hyperparam
        lr, eps = ctx.scalar(hp.lr), ctx.scalar(hp.eps)
        grad = param.grad_value
        self.store_state("h", self.state_values["h"] + grad * grad)
        param.store(param.value - ctx.divide(lr * grad, ctx.sqrt(self.state_values["h"]) + eps))


class AdaGrad(GradientMethod):
    """Chainer's ``AdaGrad(lr=0.001, eps=1e-08)``."""

    lr = HyperparameterProxy("lr")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_default_hyperparam.lr, eps=_default_hyperparam.eps, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, eps=eps)

    def create_update_rule(self):
        return AdaGradRule(self.hyperparam)
