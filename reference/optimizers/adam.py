"""The Adam family: Adam, AdamW, AMSGrad, AdaBound, AMSBound (one rule, Chainer's flags)."""

import numpy

from reference import profiles
from reference.hyperparameter import HyperparameterProxy
from reference.optimizer import GradientMethod
from reference.optimizers._family import default_hyperparam, set_all, set_overrides
from reference.serializers import Deserializer
from reference.update_rule import UpdateRule

_default_hyperparam = default_hyperparam(
    alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-08, eta=1.0, weight_decay_rate=0,
    amsgrad=False, adabound=False, final_lr=0.1, gamma=0.001)


def learning_rate(ctx, hp, t):
    """``alpha_t = alpha * sqrt(1 - beta2**t) / (1 - beta1**t)`` (RuntimeError at t == 0)."""
    if t == 0:
        raise RuntimeError("Can't determine the learning rate of Adam optimizer because the "
                           "update steps have not been started.")
    fix1 = 1 - ctx.pow(hp.beta1, t)
    fix2 = 1 - ctx.pow(hp.beta2, t)
    return ctx.scalar(hp.alpha) * ctx.sqrt(fix2) / fix1


def intermediate_dtype(dtype):
    """Adam computes fp16 parameters in float32 (Chainer's ``_get_intermediate_dtype``)."""
    return numpy.dtype(numpy.float32) if dtype == numpy.float16 else numpy.dtype(dtype)


class AdamRule(UpdateRule):
    """States ``m``, ``v`` (zeros) and, with ``amsgrad``, ``vhat`` (zeros)::

        m    <- m + (1 - beta1) * (g - m)
        v    <- v + (1 - beta2) * (g * g - v)
        vhat <- max(vhat, v)                  (amsgrad; otherwise vhat = v)
        step  = alpha_t / (sqrt(vhat) + eps)
        step  = clip(step, lower, upper)      (adabound)
        p    <- (1 - eta * weight_decay_rate) * p - eta * step * m

    with ``alpha_t = alpha * sqrt(1 - beta2**t) / (1 - beta1**t)`` and, for AdaBound,
    ``final = final_lr * alpha / initial_alpha``,
    ``lower = final * (1 - 1 / (gamma * t + 1))``, ``upper = final * (1 + 1 / (gamma * t))``.
    ``initial_alpha`` is the alpha seen when the rule is built (Chainer). Chainer raises
    ValueError when a non-zero eps becomes 0 in the intermediate dtype (float32 for fp16).
    """

    def __init__(self, parent_hyperparam=None, alpha=None, beta1=None, beta2=None, eps=None,
                 eta=None, weight_decay_rate=None, amsgrad=None, adabound=None,
                 final_lr=None, gamma=None):
        super().__init__(parent_hyperparam or _default_hyperparam)
        set_overrides(self.hyperparam, alpha=alpha, beta1=beta1, beta2=beta2, eps=eps,
                      eta=eta, weight_decay_rate=weight_decay_rate, amsgrad=amsgrad,
                      adabound=adabound, final_lr=final_lr, gamma=gamma)
        if self.hyperparam.adabound:
            self.initial_alpha = self.hyperparam.alpha

    def init_state(self, param):
        self.init_zeros("m", param)
        self.init_zeros("v", param)
        if self.hyperparam.amsgrad:
            self.init_zeros("vhat", param)

    def check_update(self, param):
        super().check_update(param)
        dtype = intermediate_dtype(self.working_dtype(param))
        eps = self.hyperparam.eps
        with numpy.errstate(under="ignore"):
            if eps != 0 and dtype.type(eps) == 0:
                raise ValueError("eps of Adam optimizer is too small for {} ({})"
                                 .format(dtype.name, eps))

    def update_core(self, param):
        ctx, hp, state = self.arithmetic, self.hyperparam, self.state_values
        grad = param.grad_value
        beta1, beta2 = ctx.scalar(hp.beta1), ctx.scalar(hp.beta2)
        self.store_state("m", state["m"] + (1 - beta1) * (grad - state["m"]))
        self.store_state("v", state["v"] + (1 - beta2) * (grad * grad - state["v"]))
        if hp.amsgrad:
            self.store_state("vhat", ctx.maximum(state["vhat"], state["v"]))
            vhat = state["vhat"]
        else:
            vhat = state["v"]
        step = ctx.divide(self.alpha_t, ctx.sqrt(vhat) + ctx.scalar(hp.eps))
        if hp.adabound:
            lower, upper = self.bounds
            step = ctx.clip(step, lower, upper)
        eta = ctx.scalar(hp.eta)
        decay = 1 - eta * ctx.scalar(hp.weight_decay_rate)
        param.store(decay * param.value - eta * (step * state["m"]))

    @property
    def alpha_t(self):
        """The bias-corrected step size at this rule's ``t`` (a scalar of the arithmetic)."""
        return learning_rate(self.arithmetic, self.hyperparam, self.t)

    @property
    def bounds(self):
        """AdaBound's (lower, upper) step bounds at this rule's ``t``."""
        if self.t == 0:
            raise RuntimeError("Can't determine the bounds of AdaBound optimizer because the "
                               "update steps have not been started.")
        ctx, hp = self.arithmetic, self.hyperparam
        final_lr = ctx.scalar(hp.final_lr) * ctx.scalar(hp.alpha) / ctx.scalar(
            self.initial_alpha)
        gamma_t = ctx.scalar(hp.gamma) * self.t
        lower = final_lr * (1 - 1 / (gamma_t + 1))
        upper = final_lr * (1 + ctx.divide(1, gamma_t))
        return lower, upper

    def serialize_fixed_extras(self, serializer):
        """``fixed`` also keeps ``initial_alpha`` (AdaBound/AMSBound)."""
        super().serialize_fixed_extras(serializer)
        if not hasattr(self, "initial_alpha"):
            return
        if isinstance(serializer, Deserializer):
            if serializer.has("initial_alpha"):
                value = numpy.asarray(serializer("initial_alpha", None))
                if value.shape != () or value.dtype.kind != "f" or not numpy.isfinite(value):
                    raise ValueError("initial_alpha must be a finite float scalar, found {!r}"
                                     .format(value))
                self.initial_alpha = float(value)
        else:
            serializer("initial_alpha", numpy.float64(self.initial_alpha))


class Adam(GradientMethod):
    """Chainer's ``Adam(alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-08, eta=1.0,
    weight_decay_rate=0, amsgrad=False, adabound=False, final_lr=0.1, gamma=0.001)``."""

    alpha = HyperparameterProxy("alpha")
    beta1 = HyperparameterProxy("beta1")
    beta2 = HyperparameterProxy("beta2")
    eps = HyperparameterProxy("eps")
    eta = HyperparameterProxy("eta")
    weight_decay_rate = HyperparameterProxy("weight_decay_rate")
    amsgrad = HyperparameterProxy("amsgrad")
    adabound = HyperparameterProxy("adabound")
    final_lr = HyperparameterProxy("final_lr")
    gamma = HyperparameterProxy("gamma")

    def __init__(self, alpha=_default_hyperparam.alpha, beta1=_default_hyperparam.beta1,
                 beta2=_default_hyperparam.beta2, eps=_default_hyperparam.eps,
                 eta=_default_hyperparam.eta,
                 weight_decay_rate=_default_hyperparam.weight_decay_rate,
                 amsgrad=_default_hyperparam.amsgrad, adabound=_default_hyperparam.adabound,
                 final_lr=_default_hyperparam.final_lr, gamma=_default_hyperparam.gamma, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        set_all(self.hyperparam, alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                weight_decay_rate=weight_decay_rate, amsgrad=amsgrad, adabound=adabound,
                final_lr=final_lr, gamma=gamma)

    def create_update_rule(self):
        return AdamRule(self.hyperparam)

    @property
    def alpha_t(self):
        """``alpha_t`` at the optimizer's ``t`` (RuntimeError before the first step)."""
        return learning_rate(self.arithmetic, self.hyperparam, self.t)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p <- (1 - eta * wd) * p - ...``)."""

    def __init__(self, alpha=_default_hyperparam.alpha, beta1=_default_hyperparam.beta1,
                 beta2=_default_hyperparam.beta2, eps=_default_hyperparam.eps,
                 eta=_default_hyperparam.eta,
                 weight_decay_rate=_default_hyperparam.weight_decay_rate, *,
                 profile=profiles.CHAINER, arithmetic=None):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                         weight_decay_rate=weight_decay_rate, profile=profile,
                         arithmetic=arithmetic)


class AMSGrad(Adam):
    """Adam with ``amsgrad=True`` (the running maximum ``vhat`` of ``v``)."""

    def __init__(self, alpha=_default_hyperparam.alpha, beta1=_default_hyperparam.beta1,
                 beta2=_default_hyperparam.beta2, eps=_default_hyperparam.eps,
                 eta=_default_hyperparam.eta, *, profile=profiles.CHAINER, arithmetic=None):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                         amsgrad=True, profile=profile, arithmetic=arithmetic)


class AdaBound(Adam):
    """Adam with ``adabound=True`` (step clipped to the AdaBound bounds)."""

    def __init__(self, alpha=_default_hyperparam.alpha, beta1=_default_hyperparam.beta1,
                 beta2=_default_hyperparam.beta2, final_lr=_default_hyperparam.final_lr,
                 gamma=_default_hyperparam.gamma, eps=_default_hyperparam.eps,
                 eta=_default_hyperparam.eta, *, profile=profiles.CHAINER, arithmetic=None):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                         amsgrad=False, adabound=True, final_lr=final_lr, gamma=gamma,
                         profile=profile, arithmetic=arithmetic)


class AMSBound(Adam):
    """Adam with ``amsgrad=True, adabound=True``."""

    def __init__(self, alpha=_default_hyperparam.alpha, beta1=_default_hyperparam.beta1,
                 beta2=_default_hyperparam.beta2, final_lr=_default_hyperparam.final_lr,
                 gamma=_default_hyperparam.gamma, eps=_default_hyperparam.eps,
                 eta=_default_hyperparam.eta, *, profile=profiles.CHAINER, arithmetic=None):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                         amsgrad=True, adabound=True, final_lr=final_lr, gamma=gamma,
                         profile=profile, arithmetic=arithmetic)
