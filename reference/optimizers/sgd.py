"""SGD: plain stochastic gradient descent."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.01)


class SGDRule(UpdateRule):
    """No state::

        p <- p - lr * g
    """

    def __init__(self, parent_hyperparam=None, lr=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr)

    def update_core(self, param):
        lr = self.arithmetic.scalar(self.hyperparam.lr)
        param.store(param.value - lr * param.grad_value)


class SGD(GradientMethod):
    """Vanilla stochastic gradient descent (Chainer's ``SGD(lr=0.01)``)."""

    lr = HyperparameterProxy("lr")

    def __init__(self, lr=_default_hyperparam.lr, *, profile=profiles.CHAINER,
                 arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr)

    def create_update_rule(self):
        return SGDRule(self.hyperparam)
