"""The Adam family: Adam, AdamW, AMSGrad, AdaBound, AMSBound (update_math.h's RuleAdamT).

    m <- m + (1 - beta1) (g - m);   v <- v + (1 - beta2) (g^2 - v)
    vhat <- max(vhat, v) (amsgrad) or v
    alpha_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t)
    step = alpha_t / (sqrt(vhat) + eps), clipped to [lower_t, upper_t] (adabound)
    p <- (1 - eta wd) p - eta step m

AdaBound's bounds: final = final_lr alpha / initial_alpha,
lower_t = final (1 - 1 / (gamma t + 1)), upper_t = final (1 + 1 / (gamma t)).
alpha_t and the bounds are the host-side schedule, computed per tensor from
its rule's t. eps must not round to 0 in the intermediate dtype (float32 for
float16 parameters), else ValueError, as in Chainer.
"""
import math

import numpy

from fast.backends.abi import kernel_id
from fast.hyperparameter import HyperparameterProxy, defaults
from fast.optimizer import GradientMethod
from fast.optimizers._base import FamilyRule, check_eps_for, intermediate_dtype, table

_defaults = defaults(alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-8, eta=1.0, weight_decay_rate=0,
                     amsgrad=False, adabound=False, final_lr=0.1, gamma=1e-3)


def c_pow(base, exponent):
    """``base ** exponent`` elementwise (float64 arrays) with C's ``pow``, as Chainer computes
    Adam's bias corrections (``math.pow``): NumPy's vectorised power (AVX-512 on some CPUs)
    can differ from it in the last bit. One ``pow`` per distinct pair; one in all in the
    usual case (every rule of a group at the same beta and t)."""
    if len(base) and (base == base[0]).all() and (exponent == exponent[0]).all():
        return numpy.full(len(base), math.pow(base[0], exponent[0]))
    return numpy.fromiter((math.pow(b, e) for b, e in zip(base.tolist(), exponent.tolist())),
                          dtype=numpy.float64, count=len(base))


def learning_rate(hp, t):
    """alpha_t of Adam at step t (RuntimeError before the first step)."""
    if t == 0:
        raise RuntimeError("Can't determine the learning rate of Adam optimizer "
                           "because the update steps have not been started.")
    fix1 = 1. - math.pow(hp.beta1, t)
    fix2 = 1. - math.pow(hp.beta2, t)
    return hp.alpha * math.sqrt(fix2) / fix1


class AdamRule(FamilyRule):
    hparam_names = ("alpha", "beta1", "beta2", "eps", "eta", "weight_decay_rate", "adabound", "final_lr", "gamma")
    extras = ("initial_alpha",)

    def __init__(self, parent_hyperparam=None, alpha=None, beta1=None, beta2=None, eps=None, eta=None,
                 weight_decay_rate=None, amsgrad=None, adabound=None, final_lr=None, gamma=None,
                 profile="chainer"):
        super().__init__(parent_hyperparam or _defaults, profile)
        given = dict(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta, weight_decay_rate=weight_decay_rate,
                     amsgrad=amsgrad, adabound=adabound, final_lr=final_lr, gamma=gamma)
        for name, value in given.items():
            if value is not None:
                setattr(self.hyperparam, name, value)
        self.set_extra("initial_alpha", float(self.hyperparam.alpha) if self.hyperparam.adabound else float("nan"))

    @property
    def initial_alpha(self):
        """AdaBound's alpha when the rule was created."""
        value = self.extra("initial_alpha")
        if math.isnan(value):
            raise AttributeError("initial_alpha is set only for rules created with adabound=True")
        return value

    @initial_alpha.setter
    def initial_alpha(self, value):
        self.set_extra("initial_alpha", float(value))

    @classmethod
    def state_names(cls, hp):
        return ("m", "v", "vhat") if hp.amsgrad else ("m", "v")

    @staticmethod
    def kernel_id(hp):
        """The compile-time variant of update_math.h's RuleAdamT that runs the rule."""
        if hp.adabound:
            return kernel_id("RuleAMSBound" if hp.amsgrad else "RuleAdaBound")
        return kernel_id("RuleAMSGrad" if hp.amsgrad else "RuleAdam")

    def check_update(self, param_dtype, update_dtype):
        check_eps_for("Adam", self.hyperparam.eps, intermediate_dtype(update_dtype))
        if self.hyperparam.adabound and math.isnan(self.extra("initial_alpha")):
            raise AttributeError("adabound was switched on after the rule was created: it has no initial_alpha")

    @property
    def alpha_t(self):
        return learning_rate(self.hyperparam, self.t)

    @property
    def lr(self):
        """alpha_t at the rule's t (Chainer's name; RuntimeError before the first step)."""
        return learning_rate(self.hyperparam, self.t)

    @property
    def bounds(self):
        """AdaBound's (lower, upper) at the rule's t."""
        if self.t == 0:
            raise RuntimeError("Can't determine the bounds of AdaBound optimizer "
                               "because the update steps have not been started.")
        hp = self.hyperparam
        final_lr = hp.final_lr * hp.alpha / self.initial_alpha
        return final_lr * (1.0 - 1.0 / (hp.gamma * self.t + 1)), final_lr * (1.0 + 1.0 / (hp.gamma * self.t))

    def saved_extras(self):
        return ("initial_alpha",) if self.hyperparam.adabound else ()

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        alpha, beta1, beta2, eps, eta, wd, adabound, final_lr, gamma = raw.T[:9]
        out = table(len(raw))
        a = 1.0 - eta * wd
        with numpy.errstate(divide="ignore", invalid="ignore"):  # rows with t = 0 are not stepped
            out[:, 2] = alpha * numpy.sqrt(1. - c_pow(beta2, t)) / (1. - c_pow(beta1, t))
            if adabound.any():
                final = final_lr * alpha / extras["initial_alpha"]
                lower = final * (1.0 - 1.0 / (gamma * t + 1))
                upper = final * (1.0 + 1.0 / (gamma * t))
                out[:, 4], out[:, 5] = numpy.where(adabound != 0, lower, 0), numpy.where(adabound != 0, upper, 0)
        out[:, 0], out[:, 1], out[:, 3] = 1.0 - beta1, 1.0 - beta2, eps
        out[:, 6], out[:, 7] = a, -eta
        return out


class Adam(GradientMethod):
    rule_class = AdamRule
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

    def __init__(self, alpha=_defaults.alpha, beta1=_defaults.beta1, beta2=_defaults.beta2, eps=_defaults.eps,
                 eta=_defaults.eta, weight_decay_rate=_defaults.weight_decay_rate, amsgrad=_defaults.amsgrad,
                 adabound=_defaults.adabound, final_lr=_defaults.final_lr, gamma=_defaults.gamma, *,
                 profile="chainer"):
        super().__init__(profile)
        self._set_hyperparameters(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                                  weight_decay_rate=weight_decay_rate, amsgrad=amsgrad, adabound=adabound,
                                  final_lr=final_lr, gamma=gamma)

    @property
    def alpha_t(self):
        """alpha_t at the optimizer's t (RuntimeError before the first step)."""
        return learning_rate(self.hyperparam, self.t)

    @property
    def lr(self):
        """alpha_t at the optimizer's t: Chainer's name, which ``extensions.observe_lr``
        reads (RuntimeError before the first step)."""
        return learning_rate(self.hyperparam, self.t)


class AdamW(Adam):
    def __init__(self, alpha=_defaults.alpha, beta1=_defaults.beta1, beta2=_defaults.beta2, eps=_defaults.eps,
                 eta=_defaults.eta, weight_decay_rate=_defaults.weight_decay_rate, *, profile="chainer"):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta,
                         weight_decay_rate=weight_decay_rate, profile=profile)


class AMSGrad(Adam):
    def __init__(self, alpha=_defaults.alpha, beta1=_defaults.beta1, beta2=_defaults.beta2, eps=_defaults.eps,
                 eta=_defaults.eta, *, profile="chainer"):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta, amsgrad=True, profile=profile)


class AdaBound(Adam):
    def __init__(self, alpha=_defaults.alpha, beta1=_defaults.beta1, beta2=_defaults.beta2,
                 final_lr=_defaults.final_lr, gamma=_defaults.gamma, eps=_defaults.eps, eta=_defaults.eta, *,
                 profile="chainer"):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta, amsgrad=False, adabound=True,
                         final_lr=final_lr, gamma=gamma, profile=profile)


class AMSBound(Adam):
    def __init__(self, alpha=_defaults.alpha, beta1=_defaults.beta1, beta2=_defaults.beta2,
                 final_lr=_defaults.final_lr, gamma=_defaults.gamma, eps=_defaults.eps, eta=_defaults.eta, *,
                 profile="chainer"):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps, eta=eta, amsgrad=True, adabound=True,
                         final_lr=final_lr, gamma=gamma, profile=profile)
