"""AdaDelta: Zeiler's learning-rate-free method."""

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(rho=0.95, eps=1e-06)


class AdaDeltaRule(UpdateRule):
    """States ``msg``, ``msdx`` (zeros). One store per state line::

        msg  <- rho * msg
        msg  <- msg + (1 - rho) * g * g
        dx    = sqrt((msdx + eps) / (msg + eps)) * g
        msdx <- rho * msdx
        msdx <- msdx + (1 - rho) * dx * dx
        p    <- p - dx
    """

    def __init__(self, parent_hyperparam=None, rho=None, eps=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, rho=rho, eps=eps)

    def init_state(self, param):
        self.init_zeros("msg", param)
        self.init_zeros("msdx", param)

    def update_core(self, param):
        ctx, hp = self.arithmetic, self.hyperparam
        rho, eps = ctx.scalar(hp.rho), ctx.scalar(hp.eps)
        one_minus_rho = 1 - rho
        grad, state = param.grad_value, self.state_values
        self.store_state("msg", state["msg"] * rho)
        self.store_state("msg", state["msg"] + one_minus_rho * grad * grad)
        dx = ctx.sqrt(ctx.divide(state["msdx"] + eps, state["msg"] + eps)) * grad
        self.store_state("msdx", state["msdx"] * rho)
        self.store_state("msdx", state["msdx"] + one_minus_rho * dx * dx)
        param.store(param.value - dx)


class AdaDelta(GradientMethod):
    """Chainer's ``AdaDelta(rho=0.95, eps=1e-06)``."""

    rho = HyperparameterProxy("rho")
    eps = HyperparameterProxy("eps")

    def __init__(self, rho=_default_hyperparam.rho, eps=_default_hyperparam.eps, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, rho=rho, eps=eps)

    def create_update_rule(self):
        return AdaDeltaRule(self.hyperparam)
