"""One to three float64 steps of every optimizer, against values worked out by hand.

Each expected value is the optimizer's update equation written out for the
step at hand (Chainer 7.8.1, optimizers/*.py), evaluated on small exactly
representable inputs. Agreement is required to 1e-12 relative.
"""
import math

import numpy as np
import pytest

import reference
from reference import optimizers

from .helpers import G1, G2, G3, W0, array, assert_close, single_param, step

w0, g1, g2, g3 = array(W0), array(G1), array(G2), array(G3)


def test_sgd_two_steps(profile):
    lr = 0.1
    opt = optimizers.SGD(lr=lr, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    w1 = w0 - lr * g1
    assert_close(p.data, w1)
    step(opt, p, g2)
    assert_close(p.data, w1 - lr * g2)


def test_momentum_sgd_two_steps(profile):
    lr, mu = 0.1, 0.9
    opt = optimizers.MomentumSGD(lr=lr, momentum=mu, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    v1 = -lr * g1
    w1 = w0 + v1
    assert_close(p.update_rule.state["v"], v1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    v2 = mu * v1 - lr * g2
    assert_close(p.update_rule.state["v"], v2)
    assert_close(p.data, w1 + v2)


def test_corrected_momentum_sgd_two_steps(profile):
    lr, mu = 0.1, 0.9
    opt = optimizers.CorrectedMomentumSGD(lr=lr, momentum=mu, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    v1 = -g1
    w1 = w0 + lr * v1
    assert_close(p.update_rule.state["v"], v1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    v2 = mu * v1 - g2
    assert_close(p.update_rule.state["v"], v2)
    assert_close(p.data, w1 + lr * v2)


def test_nesterov_ag_two_steps(profile):
    lr, mu = 0.1, 0.9
    opt = optimizers.NesterovAG(lr=lr, momentum=mu, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    v1 = -lr * g1
    w1 = w0 + mu * mu * v1 - (1 + mu) * lr * g1
    assert_close(p.update_rule.state["v"], v1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    v2 = mu * v1 - lr * g2
    assert_close(p.update_rule.state["v"], v2)
    assert_close(p.data, w1 + mu * mu * v2 - (1 + mu) * lr * g2)


def test_adagrad_two_steps(profile):
    lr, eps = 0.1, 1e-3
    opt = optimizers.AdaGrad(lr=lr, eps=eps, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    h1 = g1 ** 2
    w1 = w0 - lr * g1 / (np.sqrt(h1) + eps)
    assert_close(p.update_rule.state["h"], h1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    h2 = g1 ** 2 + g2 ** 2
    assert_close(p.update_rule.state["h"], h2)
    assert_close(p.data, w1 - lr * g2 / (np.sqrt(h2) + eps))


def test_adadelta_two_steps(profile):
    rho, eps = 0.95, 1e-2
    opt = optimizers.AdaDelta(rho=rho, eps=eps, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    msg1 = (1 - rho) * g1 ** 2
    dx1 = np.sqrt(eps / (msg1 + eps)) * g1
    msdx1 = (1 - rho) * dx1 ** 2
    w1 = w0 - dx1
    state = p.update_rule.state
    assert_close(state["msg"], msg1)
    assert_close(state["msdx"], msdx1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    msg2 = rho * msg1 + (1 - rho) * g2 ** 2
    dx2 = np.sqrt((msdx1 + eps) / (msg2 + eps)) * g2
    msdx2 = rho * msdx1 + (1 - rho) * dx2 ** 2
    assert_close(state["msg"], msg2)
    assert_close(state["msdx"], msdx2)
    assert_close(p.data, w1 - dx2)


@pytest.mark.parametrize("eps_inside_sqrt", [False, True])
def test_rmsprop_two_steps(profile, eps_inside_sqrt):
    lr, alpha, eps = 0.1, 0.9, 1e-2
    opt = optimizers.RMSprop(lr=lr, alpha=alpha, eps=eps,
                             eps_inside_sqrt=eps_inside_sqrt, profile=profile)
    p = single_param(opt)

    def denominator(ms):
        return np.sqrt(ms + eps) if eps_inside_sqrt else np.sqrt(ms) + eps

    step(opt, p, g1)
    ms1 = (1 - alpha) * g1 ** 2
    w1 = w0 - lr * g1 / denominator(ms1)
    assert_close(p.update_rule.state["ms"], ms1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    ms2 = alpha * ms1 + (1 - alpha) * g2 ** 2
    assert_close(p.update_rule.state["ms"], ms2)
    assert_close(p.data, w1 - lr * g2 / denominator(ms2))


def test_rmsprop_graves_two_steps(profile):
    lr, alpha, mu, eps = 0.1, 0.9, 0.8, 1e-2
    opt = optimizers.RMSpropGraves(lr=lr, alpha=alpha, momentum=mu, eps=eps,
                                   profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    n1 = (1 - alpha) * g1 ** 2
    mean1 = (1 - alpha) * g1
    delta1 = -lr * g1 / np.sqrt(n1 - mean1 ** 2 + eps)
    w1 = w0 + delta1
    state = p.update_rule.state
    assert_close(state["n"], n1)
    assert_close(state["g"], mean1)
    assert_close(state["delta"], delta1)
    assert_close(p.data, w1)
    step(opt, p, g2)
    n2 = alpha * n1 + (1 - alpha) * g2 ** 2
    mean2 = alpha * mean1 + (1 - alpha) * g2
    delta2 = mu * delta1 - lr * g2 / np.sqrt(n2 - mean2 ** 2 + eps)
    assert_close(state["n"], n2)
    assert_close(state["g"], mean2)
    assert_close(state["delta"], delta2)
    assert_close(p.data, w1 + delta2)


def test_smorms3_three_steps(profile):
    # lr = 0.3 lies between the x of the elements at step 2, so both sides of
    # min(x, lr) are taken.
    lr, eps = 0.3, 1e-16
    opt = optimizers.SMORMS3(lr=lr, eps=eps, profile=profile)
    p = single_param(opt)
    # Step 1 from mem = 1, g = g2 = 0: r = 1/2.
    step(opt, p, g1)
    mean1 = 0.5 * g1
    sq1 = 0.5 * g1 ** 2
    x1 = mean1 ** 2 / (sq1 + eps)                 # = 1/2 in every element
    w1 = w0 - g1 * np.minimum(x1, lr) / (np.sqrt(sq1) + eps)
    mem1 = 1 + 1 * (1 - x1)                       # = 3/2
    state = p.update_rule.state
    assert_close(state["g"], mean1)
    assert_close(state["g2"], sq1)
    assert_close(state["mem"], mem1)
    assert_close(p.data, w1)
    # Step 2: r = 1 / (mem1 + 1) = 2/5.
    step(opt, p, g2)
    r2 = 1 / (mem1 + 1)
    mean2 = (1 - r2) * mean1 + r2 * g2
    sq2 = (1 - r2) * sq1 + r2 * g2 ** 2
    x2 = mean2 ** 2 / (sq2 + eps)
    assert np.any(x2 < lr) and np.any(x2 > lr)
    w2 = w1 - g2 * np.minimum(x2, lr) / (np.sqrt(sq2) + eps)
    mem2 = 1 + mem1 * (1 - x2)
    assert_close(state["g"], mean2)
    assert_close(state["g2"], sq2)
    assert_close(state["mem"], mem2)
    assert_close(p.data, w2)
    step(opt, p, g3)
    r3 = 1 / (mem2 + 1)
    mean3 = (1 - r3) * mean2 + r3 * g3
    sq3 = (1 - r3) * sq2 + r3 * g3 ** 2
    x3 = mean3 ** 2 / (sq3 + eps)
    assert_close(p.data, w2 - g3 * np.minimum(x3, lr) / (np.sqrt(sq3) + eps))
    assert_close(state["mem"], 1 + mem2 * (1 - x3))


# ---------------------------------------------------------------- Adam family

ALPHA, BETA1, BETA2, EPS = 0.1, 0.9, 0.99, 1e-3


def adam_alpha_t(t, alpha=ALPHA):
    """alpha_t = alpha * sqrt(1 - beta2^t) / (1 - beta1^t)."""
    return alpha * math.sqrt(1 - BETA2 ** t) / (1 - BETA1 ** t)


def test_adam_two_steps(profile):
    opt = optimizers.Adam(alpha=ALPHA, beta1=BETA1, beta2=BETA2, eps=EPS,
                          profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    m1 = (1 - BETA1) * g1
    v1 = (1 - BETA2) * g1 ** 2
    w1 = w0 - adam_alpha_t(1) * m1 / (np.sqrt(v1) + EPS)
    state = p.update_rule.state
    assert set(state) == {"m", "v"}
    assert_close(state["m"], m1)
    assert_close(state["v"], v1)
    assert_close(p.data, w1)
    assert opt.alpha_t == pytest.approx(adam_alpha_t(1), rel=1e-15)
    step(opt, p, g2)
    m2 = BETA1 * m1 + (1 - BETA1) * g2
    v2 = BETA2 * v1 + (1 - BETA2) * g2 ** 2
    assert_close(state["m"], m2)
    assert_close(state["v"], v2)
    assert_close(p.data, w1 - adam_alpha_t(2) * m2 / (np.sqrt(v2) + EPS))
    assert opt.alpha_t == pytest.approx(adam_alpha_t(2), rel=1e-15)


@pytest.mark.parametrize("make", [
    lambda **kw: optimizers.Adam(weight_decay_rate=0.05, eta=0.5, **kw),
    lambda **kw: optimizers.AdamW(weight_decay_rate=0.05, eta=0.5, **kw),
], ids=["Adam(weight_decay_rate, eta)", "AdamW"])
def test_adamw_decoupled_weight_decay_two_steps(profile, make):
    wd, eta = 0.05, 0.5
    opt = make(alpha=ALPHA, beta1=BETA1, beta2=BETA2, eps=EPS, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    m1 = (1 - BETA1) * g1
    v1 = (1 - BETA2) * g1 ** 2
    w1 = w0 - eta * (adam_alpha_t(1) * m1 / (np.sqrt(v1) + EPS) + wd * w0)
    assert_close(p.data, w1)
    step(opt, p, g2)
    m2 = BETA1 * m1 + (1 - BETA1) * g2
    v2 = BETA2 * v1 + (1 - BETA2) * g2 ** 2
    w2 = w1 - eta * (adam_alpha_t(2) * m2 / (np.sqrt(v2) + EPS) + wd * w1)
    assert_close(p.data, w2)


# Gradients for AMSGrad: at step 2 elements 0 and 2 shrink enough that
# v2 < v1 (vhat keeps v1), element 1 grows (vhat takes v2).
AMS_G1 = array((2.0, -1.0, 0.5))
AMS_G2 = array((0.25, -3.0, 0.0))


@pytest.mark.parametrize("make", [
    lambda **kw: optimizers.Adam(amsgrad=True, **kw),
    lambda **kw: optimizers.AMSGrad(**kw),
], ids=["Adam(amsgrad=True)", "AMSGrad"])
def test_amsgrad_two_steps(profile, make):
    beta2 = 0.9
    opt = make(alpha=ALPHA, beta1=BETA1, beta2=beta2, eps=EPS, profile=profile)
    p = single_param(opt)
    step(opt, p, AMS_G1)
    m1 = (1 - BETA1) * AMS_G1
    v1 = (1 - beta2) * AMS_G1 ** 2
    alpha_t1 = ALPHA * math.sqrt(1 - beta2) / (1 - BETA1)
    w1 = w0 - alpha_t1 * m1 / (np.sqrt(v1) + EPS)
    state = p.update_rule.state
    assert set(state) == {"m", "v", "vhat"}
    assert_close(state["vhat"], v1)
    assert_close(p.data, w1)
    step(opt, p, AMS_G2)
    m2 = BETA1 * m1 + (1 - BETA1) * AMS_G2
    v2 = beta2 * v1 + (1 - beta2) * AMS_G2 ** 2
    vhat2 = array((v1[0], v2[1], v1[2]))
    assert v2[0] < v1[0] and v2[1] > v1[1] and v2[2] < v1[2]
    alpha_t2 = ALPHA * math.sqrt(1 - beta2 ** 2) / (1 - BETA1 ** 2)
    assert_close(state["v"], v2)
    assert_close(state["vhat"], vhat2)
    assert_close(p.data, w1 - alpha_t2 * m2 / (np.sqrt(vhat2) + EPS))


# AdaBound with alpha = 0.1 = 1 - beta1: the unclipped step of step 1 is
# alpha_t / sqrt(v1) = 1 / |g|; gamma = 0.5 and final_lr = 1 make the bounds
# [1/3, 3] at t = 1 and [1/2, 2] at t = 2, so these gradients hit both.
BOUND_G1 = array((0.25, -1.0, 4.0))
BOUND_G2 = array((1.0, -0.125, 0.5))
FINAL_LR, GAMMA = 1.0, 0.5


def adabound_bounds(t, final_lr=FINAL_LR):
    """lower = final_lr (1 - 1/(gamma t + 1)), upper = final_lr (1 + 1/(gamma t))."""
    return (final_lr * (1 - 1 / (GAMMA * t + 1)),
            final_lr * (1 + 1 / (GAMMA * t)))


def test_adabound_two_steps(profile):
    opt = optimizers.AdaBound(alpha=ALPHA, beta1=BETA1, beta2=BETA2,
                              final_lr=FINAL_LR, gamma=GAMMA, eps=EPS,
                              profile=profile)
    p = single_param(opt)
    step(opt, p, BOUND_G1)
    m1 = (1 - BETA1) * BOUND_G1
    v1 = (1 - BETA2) * BOUND_G1 ** 2
    raw1 = adam_alpha_t(1) / (np.sqrt(v1) + EPS)
    lower1, upper1 = adabound_bounds(1)
    assert raw1[0] > upper1 and lower1 < raw1[1] < upper1 and raw1[2] < lower1
    w1 = w0 - np.clip(raw1, lower1, upper1) * m1
    assert_close(p.data, w1)
    assert p.update_rule.bounds == pytest.approx((lower1, upper1), rel=1e-15)
    step(opt, p, BOUND_G2)
    m2 = BETA1 * m1 + (1 - BETA1) * BOUND_G2
    v2 = BETA2 * v1 + (1 - BETA2) * BOUND_G2 ** 2
    raw2 = adam_alpha_t(2) / (np.sqrt(v2) + EPS)
    lower2, upper2 = adabound_bounds(2)
    assert np.any(raw2 < lower2) or np.any(raw2 > upper2)
    assert_close(p.data, w1 - np.clip(raw2, lower2, upper2) * m2)


def test_adabound_bounds_follow_alpha_changes(profile):
    # final_lr is rescaled by alpha / initial_alpha, so halving alpha after
    # construction halves both bounds.
    opt = optimizers.AdaBound(alpha=ALPHA, final_lr=FINAL_LR, gamma=GAMMA,
                              eps=EPS, beta1=BETA1, beta2=BETA2, profile=profile)
    p = single_param(opt)
    opt.alpha = ALPHA / 2
    step(opt, p, BOUND_G1)
    m1 = (1 - BETA1) * BOUND_G1
    v1 = (1 - BETA2) * BOUND_G1 ** 2
    lower1, upper1 = adabound_bounds(1, final_lr=FINAL_LR / 2)
    raw1 = adam_alpha_t(1, alpha=ALPHA / 2) / (np.sqrt(v1) + EPS)
    assert_close(p.data, w0 - np.clip(raw1, lower1, upper1) * m1)


@pytest.mark.parametrize("make", [
    lambda **kw: optimizers.Adam(amsgrad=True, adabound=True, **kw),
    lambda **kw: optimizers.AMSBound(**kw),
], ids=["Adam(amsgrad=True, adabound=True)", "AMSBound"])
def test_amsbound_two_steps(profile, make):
    beta2 = 0.9
    opt = make(alpha=ALPHA, beta1=BETA1, beta2=beta2, final_lr=FINAL_LR,
               gamma=GAMMA, eps=EPS, profile=profile)
    p = single_param(opt)
    step(opt, p, AMS_G1)
    m1 = (1 - BETA1) * AMS_G1
    v1 = (1 - beta2) * AMS_G1 ** 2
    alpha_t1 = ALPHA * math.sqrt(1 - beta2) / (1 - BETA1)
    w1 = w0 - np.clip(alpha_t1 / (np.sqrt(v1) + EPS), *adabound_bounds(1)) * m1
    assert_close(p.data, w1)
    step(opt, p, AMS_G2)
    m2 = BETA1 * m1 + (1 - BETA1) * AMS_G2
    v2 = beta2 * v1 + (1 - beta2) * AMS_G2 ** 2
    vhat2 = array((v1[0], v2[1], v1[2]))
    alpha_t2 = ALPHA * math.sqrt(1 - beta2 ** 2) / (1 - BETA1 ** 2)
    raw2 = alpha_t2 / (np.sqrt(vhat2) + EPS)
    assert_close(p.update_rule.state["vhat"], vhat2)
    assert_close(p.data, w1 - np.clip(raw2, *adabound_bounds(2)) * m2)


# ---------------------------------------------------------------------- MSVAG

def msvag_rho(beta, beta_power):
    """rho = (1-b)^2 (1-bp^2) / ((1-bp)^2 (1-b^2)), capped at 0.9999."""
    rho = ((1 - beta) ** 2 * (1 - beta_power ** 2)
           / ((1 - beta_power) ** 2 * (1 - beta ** 2)))
    return min(rho, 0.9999)


def test_msvag_two_steps(profile):
    lr, beta, eta, wd = 0.1, 0.9, 0.5, 0.02
    opt = optimizers.MSVAG(lr=lr, beta=beta, eta=eta, weight_decay_rate=wd,
                           profile=profile)
    grad1 = array((0.5, -1.0, 0.0))
    grad2 = array((-1.5, 0.25, 1.0))
    p = single_param(opt)
    # Step 1 (beta_power = beta): rho caps at 0.9999; the bias-corrected
    # moments are g and g^2, so the variance estimate is 0 and factor = 1,
    # except where g = 0 (factor 0/0 is taken as 0).
    step(opt, p, grad1)
    assert msvag_rho(beta, beta) == 0.9999
    m1 = (1 - beta) * grad1
    v1 = (1 - beta) * grad1 ** 2
    factor1 = array((1.0, 1.0, 0.0))
    w1 = w0 - eta * (lr * grad1 * factor1 + wd * w0)
    state = p.update_rule.state
    assert_close(state["m"], m1)
    assert_close(state["v"], v1)
    assert_close(p.data, w1)
    # Step 2 (beta_power = beta^2).
    step(opt, p, grad2)
    rho2 = msvag_rho(beta, beta ** 2)
    m2 = beta * m1 + (1 - beta) * grad2
    v2 = beta * v1 + (1 - beta) * grad2 ** 2
    mt = m2 / (1 - beta ** 2)
    vt = v2 / (1 - beta ** 2)
    variance = (vt - mt ** 2) / (1 - rho2)
    factor2 = np.clip(mt ** 2 / (mt ** 2 + rho2 * variance), 0, 1)
    assert np.all((0 < factor2) & (factor2 < 1))
    assert_close(state["m"], m2)
    assert_close(state["v"], v2)
    assert_close(p.data, w1 - eta * (lr * mt * factor2 + wd * w1))


def test_msvag_beta_changed_after_setup_meets_the_rho_cap(profile):
    # beta_power is taken from beta when the rule is built (setup). Lowering
    # beta afterwards makes r = (1 - beta) / (1 - beta_power) slightly above 1,
    # so rho = r (1 + beta_power) / (1 + beta) > 1 is capped at 0.9999 and the
    # variance estimate r (1 - r) g^2 / (1 - 0.9999) turns the factor negative:
    # clipped to 0, only the weight decay moves the parameter.
    lr, old_beta, new_beta, eta, wd = 0.1, 0.9, 0.89998, 1.0, 0.02
    opt = optimizers.MSVAG(lr=lr, beta=old_beta, eta=eta, weight_decay_rate=wd,
                           profile=profile)
    p = single_param(opt)
    opt.beta = new_beta
    step(opt, p, g1)
    r = (1 - new_beta) / (1 - old_beta)
    assert r * (1 + old_beta) / (1 + new_beta) > 1          # rho is capped
    mt = r * g1
    variance = (r * g1 ** 2 - mt ** 2) / (1 - 0.9999)
    factor = np.clip(mt ** 2 / (mt ** 2 + 0.9999 * variance), 0, 1)
    assert np.all(factor == 0)
    assert_close(p.update_rule.state["m"], (1 - new_beta) * g1)
    assert_close(p.data, w0 - eta * (lr * mt * factor + wd * w0))


# ------------------------------------------------------ hyperparameter plumbing

def test_rule_override_shadows_the_optimizer_hyperparameter(profile):
    opt = optimizers.SGD(lr=0.1, profile=profile)
    p = reference.Parameter(array(W0), name="a")
    q = reference.Parameter(array(W0), name="b")
    opt.setup({"a": p, "b": q})
    q.update_rule.hyperparam.lr = 0.5
    p.grad, q.grad = array(G1), array(G1)
    opt.update()
    assert_close(p.data, w0 - 0.1 * g1)
    assert_close(q.data, w0 - 0.5 * g1)
    # The optimizer-level value reaches rules without an override.
    opt.lr = 0.25
    p.grad, q.grad = array(G2), array(G2)
    opt.update()
    assert_close(p.data, w0 - 0.1 * g1 - 0.25 * g2)
    assert_close(q.data, w0 - 0.5 * g1 - 0.5 * g2)


def test_disabled_rule_leaves_its_parameter_and_counter_alone(profile):
    opt = optimizers.MomentumSGD(lr=0.1, profile=profile)
    p = single_param(opt)
    p.update_rule.enabled = False
    step(opt, p, g1)
    assert_close(p.data, w0)
    assert p.update_rule.t == 0
    assert opt.t == 1


@pytest.mark.parametrize("name, defaults", [
    ("SGD", {"lr": 0.01}),
    ("MomentumSGD", {"lr": 0.01, "momentum": 0.9}),
    ("CorrectedMomentumSGD", {"lr": 0.01, "momentum": 0.9}),
    ("NesterovAG", {"lr": 0.01, "momentum": 0.9}),
    ("AdaGrad", {"lr": 0.001, "eps": 1e-8}),
    ("AdaDelta", {"rho": 0.95, "eps": 1e-6}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8,
                 "eps_inside_sqrt": False}),
    ("RMSpropGraves", {"lr": 1e-4, "alpha": 0.95, "momentum": 0.9,
                       "eps": 1e-4}),
    ("Adam", {"alpha": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
              "eta": 1.0, "weight_decay_rate": 0, "amsgrad": False,
              "adabound": False, "final_lr": 0.1, "gamma": 1e-3}),
    ("AdamW", {"weight_decay_rate": 0, "eta": 1.0, "amsgrad": False}),
    ("AMSGrad", {"amsgrad": True, "adabound": False}),
    ("AdaBound", {"amsgrad": False, "adabound": True, "final_lr": 0.1,
                  "gamma": 1e-3}),
    ("AMSBound", {"amsgrad": True, "adabound": True}),
    ("MSVAG", {"lr": 0.1, "beta": 0.9, "eta": 1.0, "weight_decay_rate": 0}),
    ("SMORMS3", {"lr": 0.001, "eps": 1e-16}),
])
def test_chainer_defaults_and_aliases(name, defaults):
    opt = getattr(optimizers, name)()
    assert opt.profile == "chainer"
    for key, value in defaults.items():
        assert getattr(opt, key) == value, key
        assert getattr(opt.hyperparam, key) == value, key


def test_missing_gradient_counts_as_zero(profile):
    # Chainer fills a missing gradient with zeros before the hooks and the
    # update, so momentum keeps moving the parameter: v2 = mu v1, w2 = w1 + v2.
    lr, mu = 0.1, 0.9
    opt = optimizers.MomentumSGD(lr=lr, momentum=mu, profile=profile)
    p = single_param(opt)
    step(opt, p, g1)
    p.cleargrad()
    opt.update()
    v1 = -lr * g1
    assert_close(p.update_rule.state["v"], mu * v1)
    assert_close(p.data, w0 + v1 + mu * v1)
    assert np.array_equal(p.grad, np.zeros(3))


def test_rule_hyperparameters_chain_to_the_optimizer(profile):
    opt = optimizers.Adam(alpha=0.25, profile=profile)
    p = single_param(opt)
    rule_hp = p.update_rule.hyperparam
    assert rule_hp.parent is opt.hyperparam
    assert rule_hp.alpha == 0.25
    rule_hp.beta1 = 0.5
    assert rule_hp.get_dict()["beta1"] == 0.5
    assert opt.hyperparam.get_dict()["beta1"] == 0.9
    opt.alpha = 0.125
    assert rule_hp.alpha == 0.125


def test_parameters_of_an_iterable_and_of_a_namedparams_object(profile, tmp_path):
    from reference import serializers

    class Model:
        def __init__(self, params):
            self.params = params

        def namedparams(self):
            return iter(self.params.items())

    by_position = optimizers.SGD(profile=profile)
    by_position.setup([reference.Parameter(array(W0)), reference.Parameter(array(W0))])
    serializers.save_npz(tmp_path / "positions.npz", by_position)
    assert {"0/t", "1/t"} <= set(np.load(tmp_path / "positions.npz").files)

    by_name = optimizers.SGD(profile=profile)
    a = reference.Parameter(array(W0))
    by_name.setup(Model({"/layer/W": a}))
    a.grad = array(G1)
    by_name.update()
    assert_close(a.data, w0 - 0.01 * g1)
    serializers.save_npz(tmp_path / "names.npz", by_name)
    assert "layer/W/t" in np.load(tmp_path / "names.npz").files


@pytest.mark.parametrize("name", ["SGD", "Adam", "AMSBound", "MSVAG", "SMORMS3",
                                  "RMSpropGraves"])
def test_empty_and_zero_dimensional_parameters(profile, name):
    # An empty parameter stays empty (its state too) and must not disturb a
    # 0-d neighbour, nor GradientClipping's global norm (which is 0.5 here,
    # below the threshold of 1: no clipping).
    from reference import optimizer_hooks

    opt = getattr(optimizers, name)(profile=profile)
    empty = reference.Parameter(np.zeros((0, 3)), name="empty")
    scalar = reference.Parameter(np.array(2.0), name="scalar")
    opt.setup({"empty": empty, "scalar": scalar})
    opt.add_hook(optimizer_hooks.GradientClipping(1.0))
    reference_opt = getattr(optimizers, name)(profile=profile)
    alone = reference.Parameter(np.array(2.0), name="scalar")
    reference_opt.setup({"scalar": alone})
    for _ in range(2):
        empty.grad, scalar.grad, alone.grad = np.zeros((0, 3)), np.array(0.5), np.array(0.5)
        opt.update()
        reference_opt.update()
    assert empty.data.shape == (0, 3)
    assert all(v.shape == (0, 3) for v in empty.update_rule.state.values())
    assert scalar.data.shape == ()
    assert_close(scalar.data, alone.data, rtol=0)
    assert scalar.data != 2.0


def test_adam_on_a_zero_dimensional_parameter(profile):
    alpha, b1, b2, eps = 0.1, 0.9, 0.99, 1e-3
    opt = optimizers.Adam(alpha=alpha, beta1=b1, beta2=b2, eps=eps, profile=profile)
    p = reference.Parameter(np.array(2.0), name="s")
    opt.setup({"s": p})
    p.grad = np.array(0.5)
    opt.update()
    m1, v1 = (1 - b1) * 0.5, (1 - b2) * 0.25
    expected = 2.0 - alpha * math.sqrt(1 - b2) / (1 - b1) * m1 / (math.sqrt(v1) + eps)
    assert p.data.shape == ()
    assert_close(p.data, expected)
