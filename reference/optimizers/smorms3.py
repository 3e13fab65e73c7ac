"""SMORMS3: Funk's squared-mean-over-root-mean-squared method."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.001, eps=1e-16)


class SMORMS3Rule(UpdateRule):
    """States ``mem`` (ones), ``g``, ``g2`` (zeros)::

        r    = 1 / (mem + 1)
        g   <- (1 - r) * g + r * grad
        g2  <- (1 - r) * g2 + r * grad * grad
        x    = g * g / (g2 + eps)                     (with the stored g, g2)
        p   <- p - grad * min(x, lr) / (sqrt(g2) + eps)
        mem <- 1 + mem * (1 - x)
    """

    def __init__(self, parent_hyperparam=None, lr=None, eps=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, eps=eps)

    def init_state(self, param):
        self.init_ones("mem", param)
        self.init_zeros("g", param)
        self.init_zeros("g2", param)

    def update_core(self, param):
        ctx, hp, state = self.arithmetic, self.hyperparam, self.state_values
        lr, eps = ctx.scalar(hp.lr), ctx.scalar(hp.eps)
        grad, mem = param.grad_value, state["mem"]
        r = ctx.divide(1, mem + 1)
        self.store_state("g", (1 - r) * state["g"] + r * grad)
        self.store_state("g2", (1 - r) * state["g2"] + r * grad * grad)
        g, g2 = state["g"], state["g2"]
        x = ctx.divide(g * g, g2 + eps)
        param.store(param.value - ctx.divide(grad * ctx.minimum(x, lr), ctx.sqrt(g2) + eps))
        self.store_state("mem", 1 + mem * (1 - x))


class SMORMS3(GradientMethod):
    """Chainer's ``SMORMS3(lr=0.001, eps=1e-16)``."""

    lr = HyperparameterProxy("lr")
    eps = HyperparameterProxy("eps")

    def __init__(self, lr=_default_hyperparam.lr, eps=_default_hyperparam.eps, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, eps=eps)

    def create_update_rule(self):
        return SMORMS3Rule(self.hyperparam)
