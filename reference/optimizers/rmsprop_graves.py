"""RMSpropGraves: Graves' RMSprop with a centred second moment and momentum."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.0001, alpha=0.95, momentum=0.9, eps=0.0001)


class RMSpropGravesRule(UpdateRule):
    """States ``n``, ``g``, ``delta`` (zeros). One store per line::

        n     <- alpha * n
        n     <- n + (1 - alpha) * grad * grad
        g     <- alpha * g
        g     <- g + (1 - alpha) * grad
        delta <- momentum * delta
        delta <- delta - lr * grad / sqrt(n - g * g + eps)
        p     <- p + delta

    ``n - g * g`` may round below zero; sqrt of a negative number is NaN, as in NumPy.
    """

    def __init__(self, parent_hyperparam=None, lr=None, alpha=None, momentum=None, eps=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, alpha=alpha, momentum=momentum, eps=eps)

    def init_state(self, param):
        for name in ("n", "g", "delta"):
            self.init_zeros(name, param)

    def update_core(self, param):
        ctx, hp, state = self.arithmetic, self.hyperparam, self.state_values
        lr, alpha = ctx.scalar(hp.lr), ctx.scalar(hp.alpha)
        momentum, eps = ctx.scalar(hp.momentum), ctx.scalar(hp.eps)
        grad = param.grad_value
        self.store_state("n", state["n"] * alpha)
        self.store_state("n", state["n"] + (1 - alpha) * grad * grad)
        self.store_state("g", state["g"] * alpha)
        self.store_state("g", state["g"] + (1 - alpha) * grad)
        self.store_state("delta", state["delta"] * momentum)
        denominator = ctx.sqrt(state["n"] - state["g"] * state["g"] + eps)
        self.store_state("delta", state["delta"] - ctx.divide(lr * grad, denominator))
        param.store(param.value + state["delta"])


class RMSpropGraves(GradientMethod):
    """Chainer's ``RMSpropGraves(lr=1e-4, alpha=0.95, momentum=0.9, eps=1e-4)``."""

    lr = HyperparameterProxy("lr")
    alpha = HyperparameterProxy("alpha")
    momentum = HyperparameterProxy("momentum")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_default_hyperparam.lr, alpha=_default_hyperparam.alpha,
                 momentum=_default_hyperparam.momentum, eps=_default_hyperparam.eps, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, alpha=alpha, momentum=momentum, eps=eps)

    def create_update_rule(self):
        return RMSpropGravesRule(self.hyperparam)
