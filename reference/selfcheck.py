"""Self-check of the reference: its float64 arithmetic against mpmath, for every optimizer
and every hook.

Run ``python -m reference.selfcheck``: prints a table, writes ``reports/selfcheck.md`` and
exits 1 if any check fails.

What is checked, and why the bound is what it is:

* ``round_to``: mpmath's correctly rounded conversion to float16/float32 must equal NumPy's
  cast bit for bit (including subnormals, ties and overflow to inf).
* Precision: ``Mpmath(dps=50)`` and ``Mpmath(dps=70)`` must give bitwise identical float64
  results (50 digits is far more than the float64 storage needs).
* Teacher-forced step: from one random, well-conditioned state (counters past the first
  steps, second moments well above squared first moments), one step in ``Float64()`` and in
  ``Mpmath(dps=50)``; every stored float64 value (parameter, each state array) must agree
  within ``ULP_BOUND`` units in the last place of the magnitude of the terms combined (the
  largest of the value before the step, after it, and the gradient). mpmath gives the exact
  value of each stored expression rounded once; float64 rounds after every operation; a
  stored value here is at most about eight float64 operations away from stored inputs of
  that magnitude, each contributing at most half an ulp, so the bound is 8 ulps. (Measured
  in ulps of the result alone, a cancellation such as ``p + momentum**2 * v`` would turn
  the same absolute error into tens of ulps: see DESIGN.md on pure ULP budgets.)
* The same for every optimizer hook (each under SGD), with a fixed noise for GradientNoise.
* Global state: mpmath's global precision is untouched afterwards.
"""

import os
import sys
import warnings

import mpmath
import numpy

from reference import optimizer_hooks, optimizers
from reference.arithmetic import Float64, Mpmath
from reference.parameter import Parameter

ULP_BOUND = 8
SHAPE = (3, 5)
REPORT_PATH = os.path.join("reports", "selfcheck.md")

OPTIMIZER_NAMES = ("SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad",
                   "AdaDelta", "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad",
                   "AdaBound", "AMSBound", "MSVAG", "SMORMS3")

#: Extra constructor arguments so that every term of the update is exercised.
OPTIMIZER_ARGUMENTS = {"AdamW": {"weight_decay_rate": 0.01},
                       "MSVAG": {"weight_decay_rate": 0.01},
                       "AdaBound": {"final_lr": 0.001}, "AMSBound": {"final_lr": 0.001}}

TEACHER_T = 7


def _well_conditioned_state(name, rng, shape):
    """State arrays for a rule at ``TEACHER_T`` steps that avoid cancellation."""
    positive = lambda: rng.uniform(0.5, 2.0, shape)  # noqa: E731
    signed = lambda: rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)  # noqa
    return {"m": signed, "v": positive, "vhat": positive, "h": positive, "ms": positive,
            "msg": positive, "msdx": positive, "n": positive, "delta": signed,
            "mem": positive}.get(name, signed)()


def _random_param_and_grad(rng):
    values = rng.uniform(0.5, 2.0, SHAPE) * rng.choice([-1.0, 1.0], SHAPE)
    grad = rng.uniform(0.1, 1.0, SHAPE) * rng.choice([-1.0, 1.0], SHAPE)
    return values, grad


def _run_one_step(optimizer_name, arithmetic, seed):
    rng = numpy.random.default_rng(seed)
    values, grad = _random_param_and_grad(rng)
    param = Parameter(values, name="w")
    opt = getattr(optimizers, optimizer_name)(arithmetic=arithmetic,
                                              **OPTIMIZER_ARGUMENTS.get(optimizer_name, {}))
    opt.setup({"w": param})
    rule = param.update_rule
    # One step creates the state; then teacher-force a well-conditioned one.
    param.grad = grad
    opt.update()
    param.data = values
    for name in list(rule.state):
        state = _well_conditioned_state(name, rng, SHAPE)
        if name == "g" and optimizer_name == "RMSpropGraves":
            state = state * 0.1  # keeps n - g*g away from cancellation
        if name == "g2":
            state = rng.uniform(0.5, 2.0, SHAPE)
        if name == "g" and optimizer_name == "SMORMS3":
            state = rng.uniform(0.1, 0.3, SHAPE)
        rule.state[name] = state
    rule.t = TEACHER_T
    if optimizer_name == "MSVAG":
        rule.beta_power = arithmetic.pow(0.9, TEACHER_T + 1)
        rule.state["v"] = rule.state["m"] ** 2 + rng.uniform(0.5, 2.0, SHAPE)
    param.grad = grad
    before = _stored_values(param)
    opt.update()
    return before, _stored_values(param), grad


def _stored_values(param):
    stored = {"param": param.data}
    rule = param.update_rule
    if rule.state is not None:
        stored.update({"state/" + name: rule.state[name] for name in rule.state})
    return stored


def _run_hook(hook_name, arithmetic, seed):
    rng = numpy.random.default_rng(seed)
    values, grad = _random_param_and_grad(rng)
    noise = rng.uniform(-0.1, 0.1, SHAPE)
    hooks = {
        "WeightDecay": lambda: optimizer_hooks.WeightDecay(0.01),
        "Lasso": lambda: optimizer_hooks.Lasso(0.01),
        "GradientClipping": lambda: optimizer_hooks.GradientClipping(0.5),
        "GradientHardClipping": lambda: optimizer_hooks.GradientHardClipping(-0.4, 0.6),
        "GradientNoise": lambda: optimizer_hooks.GradientNoise(
            0.01, noise_func=lambda xp, shape, dtype, hook, opt: noise.astype(dtype)),
        "GradientLARS": lambda: optimizer_hooks.GradientLARS(threshold=0.1,
                                                             weight_decay=0.01),
    }
    param = Parameter(values, name="w")
    opt = optimizers.SGD(lr=0.1, arithmetic=arithmetic).setup({"w": param})
    opt.loss_scaling(scale=4.0)
    opt.add_hook(hooks[hook_name]())
    param.grad = grad * 4.0
    before = {"param": param.data, "grad": param.grad}
    opt.update()
    return before, {"param": param.data, "grad": param.grad}, grad * 4.0


def _max_ulps(actual, expected, magnitude):
    """Largest ``|actual - expected|`` in ulps of ``magnitude`` (elementwise)."""
    actual = numpy.asarray(actual, dtype=numpy.float64)
    expected = numpy.asarray(expected, dtype=numpy.float64)
    if not (numpy.all(numpy.isfinite(actual)) and numpy.all(numpy.isfinite(expected))):
        return numpy.inf if not numpy.array_equal(actual, expected, equal_nan=True) else 0.0
    return float(numpy.max(numpy.abs(actual - expected) / numpy.spacing(magnitude)))


def _compare(run, name, seeds=(0, 1, 2)):
    """Worst float64-vs-mpmath difference over ``seeds``, in ulps of the magnitude of the
    terms combined (the larger of the value before the step, after it, and the gradient:
    the terms of one step are bounded by these on the well-conditioned inputs), and whether
    mpmath at 50 and 70 digits agree bitwise."""
    worst, exact_precision = 0.0, True
    for seed in seeds:
        _, float64, _ = run(name, Float64(), seed)
        before, mp50, grad = run(name, Mpmath(dps=50), seed)
        _, mp70, _ = run(name, Mpmath(dps=70), seed)
        for key in mp50:
            magnitude = numpy.maximum(numpy.abs(mp50[key]), numpy.abs(grad))
            if key in before:
                magnitude = numpy.maximum(magnitude, numpy.abs(before[key]))
            worst = max(worst, _max_ulps(float64[key], mp50[key], magnitude))
            exact_precision &= numpy.array_equal(mp50[key], mp70[key])
    return worst, exact_precision


def _check_round_to():
    rng = numpy.random.default_rng(0)
    samples = rng.standard_normal(3000) * numpy.exp(rng.uniform(-40, 15, 3000))
    edges = numpy.array([65504.0, 65519.99, 65520.0, -65520.0, 2.0 ** -24, 2.0 ** -25,
                         1.5 * 2.0 ** -25, 3.4028235677973366e38, 3.4028235e38 * 1.0001,
                         2.0 ** -149, 2.0 ** -150, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 0.0])
    samples = numpy.concatenate([samples, edges, -edges])
    mp = Mpmath(dps=50)
    ok = True
    with numpy.errstate(over="ignore"):
        for dtype in (numpy.float16, numpy.float32):
            expected = samples.astype(dtype).astype(numpy.float64)
            actual = mp.to_float64(mp.round_to(mp.array(samples), dtype))
            ok &= numpy.array_equal(expected, actual)
            ok &= numpy.array_equal(expected, Float64().round_to(samples, dtype))
    return ok


def run_checks():
    """Returns a list of rows (check, measured, bound, passed)."""
    rows = []
    global_dps = mpmath.mp.dps
    round_to_ok = _check_round_to()
    rows.append(("round_to float16/float32 (mpmath and float64) == numpy cast",
                 "bitwise" if round_to_ok else "MISMATCH", "bitwise", round_to_ok))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in OPTIMIZER_NAMES:
            worst, exact = _compare(_run_one_step, name)
            rows.append(("optimizer {} (teacher-forced step)".format(name),
                         "{:.1f} ulp".format(worst), "{} ulp".format(ULP_BOUND),
                         worst <= ULP_BOUND))
            rows.append(("optimizer {}: mpmath dps 50 == dps 70".format(name),
                         "bitwise" if exact else "differs", "bitwise", exact))
        for name in ("WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping",
                     "GradientNoise", "GradientLARS"):
            worst, exact = _compare(_run_hook, name)
            rows.append(("hook {} (under SGD, loss scale 4)".format(name),
                         "{:.1f} ulp".format(worst), "{} ulp".format(ULP_BOUND),
                         worst <= ULP_BOUND))
            rows.append(("hook {}: mpmath dps 50 == dps 70".format(name),
                         "bitwise" if exact else "differs", "bitwise", exact))
    untouched = mpmath.mp.dps == global_dps
    rows.append(("global mpmath precision untouched", str(mpmath.mp.dps), str(global_dps),
                 untouched))
    return rows


def format_table(rows):
    lines = ["| check | measured | bound | result |", "| --- | --- | --- | --- |"]
    for check, measured, bound, passed in rows:
        lines.append("| {} | {} | {} | {} |".format(check, measured, bound,
                                                    "pass" if passed else "FAIL"))
    return "\n".join(lines)


def main():
    rows = run_checks()
    table = format_table(rows)
    failures = sum(1 for row in rows if not row[3])
    summary = "{} checks, {} failed".format(len(rows), failures)
    print(table)
    print(summary)
    os.makedirs(os.path.dirname(REPORT_PATH), exist_ok=True)
    with open(REPORT_PATH, "w") as report:
        report.write("# Reference self-check: float64 against mpmath\n\n")
        report.write((__doc__.split("What is checked", 1)[1]).join(["What is checked", ""]))
        report.write("\n" + table + "\n\n" + summary + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
