"""RMSprop: Hinton's running-mean-square normalisation."""

import numpy

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(lr=0.01, alpha=0.99, eps=1e-08,
                                         eps_inside_sqrt=False)


class RMSpropRule(UpdateRule):
    """State ``ms`` (zeros). With ``eps_g`` = eps converted to the gradient's dtype::

        ms <- alpha * ms
        ms <- ms + (1 - alpha) * g * g
        p  <- p - lr * g / (sqrt(ms) + eps_g)      (eps_inside_sqrt: sqrt(ms + eps_g))

    Chainer raises ValueError when a non-zero eps becomes 0 in the gradient's dtype (the
    fp32 copy when the master is used): checked in :meth:`check_update`.
    """

    def __init__(self, parent_hyperparam=None, lr=None, alpha=None, eps=None,
                 eps_inside_sqrt=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, lr=lr, alpha=alpha, eps=eps,
                      eps_inside_sqrt=eps_inside_sqrt)

    def init_state(self, param):
        self.init_zeros("ms", param)

    def check_update(self, param):
        super().check_update(param)
        dtype = self.working_dtype(param)
        eps = self.hyperparam.eps
        with numpy.errstate(under="ignore"):
            if eps != 0 and dtype.type(eps) == 0:
                raise ValueError("eps of RMSprop optimizer is too small for {} ({})"
                                 .format(dtype.name, eps))

    def update_core(self, param):
        ctx, hp = self.arithmetic, self.hyperparam
        grad = param.grad_value
        lr, alpha = ctx.scalar(hp.lr), ctx.scalar(hp.alpha)
        eps = ctx.round_to(ctx.scalar(hp.eps), param.dtype)[()]
        self.store_state("ms", self.state_values["ms"] * alpha)
        self.store_state("ms", self.state_values["ms"] + (1 - alpha) * grad * grad)
        ms = self.state_values["ms"]
        denominator = ctx.sqrt(ms + eps) if hp.eps_inside_sqrt else ctx.sqrt(ms) + eps
        param.store(param.value - ctx.divide(lr * grad, denominator))


class RMSprop(GradientMethod):
    """Chainer's ``RMSprop(lr=0.01, alpha=0.99, eps=1e-08, eps_inside_sqrt=False)``."""

    lr = HyperparameterProxy("lr")
    alpha = HyperparameterProxy("alpha")
    eps = HyperparameterProxy("eps")
    eps_inside_sqrt = HyperparameterProxy("eps_inside_sqrt")

    def __init__(self, lr=_default_hyperparam.lr, alpha=_default_hyperparam.alpha,
                 eps=_default_hyperparam.eps,
                 eps_inside_sqrt=_default_hyperparam.eps_inside_sqrt, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, lr=lr, alpha=alpha, eps=eps, eps_inside_sqrt=eps_inside_sqrt)

    def create_update_rule(self):
        return RMSpropRule(self.hyperparam)
