"""The precision ladder: the float64 reference against the same rules run in
mpmath (50 digits), for every optimizer and every hook.

Both optimizers store into float64 arrays, so the only differences are the
roundings of the intermediate float64 arithmetic: a handful of unit roundoffs
(1.1e-16) per step, amplified by at most the condition of the update. The
required agreement is

    |float64 - mpmath| <= 1e-13 * |mpmath| + 1e-13 * M,

with M the largest input magnitude (at least 1): the absolute floor covers
values that cancel to near zero, which inherit the rounding error of the terms
that cancelled, and gradients so small that float64 underflows where mpmath
does not.

One optimizer needs more: MSVAG's first step caps rho at 0.9999 and divides
vt - mt^2 (exactly 0 at step 1, a few unit roundoffs of mt^2 in float64) by
1 - rho = 1e-4, which amplifies those roundoffs 1e4-fold in the step's factor.
Its parameter error is bounded by an extra 8 u / (1 - 0.9999) * lr * M, with
u = 2**-53 (about 4.4e-12 * lr * M).

Cases come from hypothesis, derandomized, a few examples per optimizer.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from reference import optimizer_hooks as hooks
from reference import optimizers

RTOL = 1e-13
UNIT_ROUNDOFF = 2.0 ** -53
MSVAG_LR = 0.5
MSVAG_AMPLIFICATION = 8 * UNIT_ROUNDOFF / (1 - 0.9999)
STEPS = 3
SIZE = 4

OPTIMIZERS = {
    "SGD": lambda **kw: optimizers.SGD(lr=0.5, **kw),
    "MomentumSGD": lambda **kw: optimizers.MomentumSGD(lr=0.5, **kw),
    "CorrectedMomentumSGD": lambda **kw: optimizers.CorrectedMomentumSGD(lr=0.5, **kw),
    "NesterovAG": lambda **kw: optimizers.NesterovAG(lr=0.5, **kw),
    "AdaGrad": lambda **kw: optimizers.AdaGrad(lr=0.5, **kw),
    "AdaDelta": lambda **kw: optimizers.AdaDelta(**kw),
    "RMSprop": lambda **kw: optimizers.RMSprop(lr=0.5, **kw),
    "RMSprop eps_inside_sqrt": lambda **kw: optimizers.RMSprop(
        lr=0.5, eps=1e-4, eps_inside_sqrt=True, **kw),
    "RMSpropGraves": lambda **kw: optimizers.RMSpropGraves(lr=0.1, **kw),
    "Adam": lambda **kw: optimizers.Adam(alpha=0.5, **kw),
    "Adam weight decay": lambda **kw: optimizers.Adam(
        alpha=0.5, weight_decay_rate=0.1, eta=0.5, **kw),
    "AdamW": lambda **kw: optimizers.AdamW(alpha=0.5, weight_decay_rate=0.1, **kw),
    "AMSGrad": lambda **kw: optimizers.AMSGrad(alpha=0.5, beta2=0.9, **kw),
    "AdaBound": lambda **kw: optimizers.AdaBound(alpha=0.5, final_lr=0.5, gamma=0.1, **kw),
    "AMSBound": lambda **kw: optimizers.AMSBound(
        alpha=0.5, beta2=0.9, final_lr=0.5, gamma=0.1, **kw),
    "MSVAG": lambda **kw: optimizers.MSVAG(lr=MSVAG_LR, weight_decay_rate=0.01, **kw),
    "SMORMS3": lambda **kw: optimizers.SMORMS3(lr=0.5, **kw),
}


def constant_noise(xp, shape, dtype, hook, opt):
    """A deterministic noise_func, so both arithmetics see the same noise."""
    return xp.full(shape, 0.125, dtype=dtype)


HOOKS = {
    "WeightDecay": lambda: hooks.WeightDecay(0.1),
    "Lasso": lambda: hooks.Lasso(0.1),
    "GradientClipping": lambda: hooks.GradientClipping(1.0),
    "GradientHardClipping": lambda: hooks.GradientHardClipping(-0.5, 0.75),
    "GradientNoise": lambda: hooks.GradientNoise(0.3, noise_func=constant_noise),
    "GradientLARS": lambda: hooks.GradientLARS(threshold=1e-2, weight_decay=0.1),
}

finite = st.floats(min_value=-4.0, max_value=4.0, allow_nan=False,
                   allow_infinity=False, allow_subnormal=False)
vectors = st.lists(finite, min_size=SIZE, max_size=SIZE).map(np.array)
cases = st.tuples(vectors, st.lists(vectors, min_size=STEPS, max_size=STEPS))

LADDER_SETTINGS = settings(max_examples=8, derandomize=True, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow],
                           database=None)


def run(make, arithmetic, w0, grads, add_hooks=()):
    """Run `grads` through a fresh optimizer; return the parameter and its rule."""
    opt = make(arithmetic=arithmetic)
    p = reference.Parameter(np.array(w0, dtype=np.float64), name="w")
    opt.setup({"w": p})
    for make_hook in add_hooks:
        opt.add_hook(make_hook())
    for grad in grads:
        p.grad = np.array(grad, dtype=np.float64)
        opt.update()
    return p


def assert_on_the_ladder(actual, exact, magnitude, what, extra=0.0):
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    bound = RTOL * np.abs(exact) + RTOL * magnitude + extra
    error = np.abs(actual - exact)
    assert np.all(error <= bound), (what, actual, exact, error / np.maximum(bound, 1e-300))


def assert_float64_matches_mpmath(make, w0, grads, add_hooks=(), amplified=False):
    magnitude = max(1.0, float(np.max(np.abs(w0))), float(np.max(np.abs(grads))))
    p64 = run(make, reference.Float64(), w0, grads, add_hooks)
    pmp = run(make, reference.Mpmath(dps=50), w0, grads, add_hooks)
    extra = MSVAG_AMPLIFICATION * MSVAG_LR * magnitude if amplified else 0.0
    assert_on_the_ladder(p64.data, pmp.data, magnitude, "parameter", extra)
    state64, statemp = p64.update_rule.state, pmp.update_rule.state
    assert set(state64) == set(statemp)
    for key in state64:
        assert_on_the_ladder(state64[key], statemp[key], magnitude, key)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_float64_against_mpmath(name):
    make = OPTIMIZERS[name]

    @LADDER_SETTINGS
    @given(cases)
    def check(case):
        w0, grads = case
        assert_float64_matches_mpmath(make, w0, grads, amplified=(name == "MSVAG"))

    check()


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_float64_against_mpmath(hook):
    make = OPTIMIZERS["MomentumSGD"]

    @LADDER_SETTINGS
    @given(cases)
    def check(case):
        w0, grads = case
        assert_float64_matches_mpmath(make, w0, grads, add_hooks=[HOOKS[hook]])

    check()


def test_all_hooks_together_float64_against_mpmath():
    make = OPTIMIZERS["Adam"]
    order = ["GradientNoise", "WeightDecay", "Lasso", "GradientLARS",
             "GradientHardClipping", "GradientClipping"]

    @LADDER_SETTINGS
    @given(cases)
    def check(case):
        w0, grads = case
        assert_float64_matches_mpmath(make, w0, grads, add_hooks=[HOOKS[h] for h in order])

    check()


def test_the_ladder_can_tell_a_wrong_value():
    # A float64 run with a perturbed learning rate must fall off the ladder.
    w0 = np.array([1.0, -2.0, 0.5, 3.0])
    grads = [np.array([0.5, -1.0, 2.0, 0.25])] * STEPS
    pmp = run(OPTIMIZERS["Adam"], reference.Mpmath(dps=50), w0, grads)
    p64 = run(lambda **kw: optimizers.Adam(alpha=0.5 * (1 + 1e-11), **kw),
              reference.Float64(), w0, grads)
    with pytest.raises(AssertionError):
        assert_on_the_ladder(p64.data, pmp.data, 4.0, "parameter")
