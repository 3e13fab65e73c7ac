"""Self-check of the reference: its float64 arithmetic against mpmath, for every optimizer
and every hook.

Run ``python -m reference.selfcheck``: prints a table, writes ``reports/selfcheck.md`` and
exits 1 if any check fails.

What is checked, and why the bound is what it is:

* ``round_to``: mpmath's correctly rounded conversion to float16/float32 must equal NumPy's
  cast bit for bit (including subnormals, ties and overflow to inf).
* Precision: ``Mpmath(dps=50)`` and ``Mpmath(dps=70)`` must give bitwise identical float64
  results (50 digits is far more than the float64 storage needs).
* Teacher-forced step: from three random, well-conditioned states (counters past the first
  steps, second moments well above squared first moments), one step in ``Float64()`` and in
  ``Mpmath(dps=50)``; every stored float64 value (parameter, each state array) must agree
  within ``ULP_BOUND`` units in the last place of the magnitude of the terms combined (the
  largest of the value before the step, after it, and the gradient). mpmath gives the exact
  value of each stored expression rounded once; float64 rounds after every operation; a
  stored value here is at most about eight float64 operations away from stored inputs of
  that magnitude, each contributing at most half an ulp, so the bound is 8 ulps. (Measured
  in ulps of the result alone, a cancellation such as ``p + momentum**2 * v`` would turn
  the same absolute error into tens of ulps: docs/conformance.md, "The error model", says why
  no ULP budget is used.)
* The same teacher-forced step with float32 parameters, fp16 parameters with the fp32
  master, and fp16 parameters without it, measured in ulps of each stored value's dtype at
  the magnitude of the terms combined. mpmath rounds each stored value once (correctly);
  float64 rounds it twice (to float64, then to the storage dtype), which moves a value that
  lies within float64 error of a storage tie by one storage ulp (this is common, not rare:
  ``v * 0.9`` for a float32 ``v`` divisible by 5 in its last bits lands on a float32 tie,
  plus 2e-17 of 0.9's binary error, which float64 drops). A value computed from another
  stored value of the same step can inherit one more such ulp, scaled by a factor of at
  most 1 here: bound 2 storage ulps. The table also reports how many elements agree bitwise.
* The same for every optimizer hook (each under SGD), with a fixed noise for GradientNoise.
* Profiles: on float64 parameters, ``chainer`` and ``fixed`` must give bitwise identical
  trajectories without loss scaling (WeightDecay, GradientClipping and GradientLARS
  installed) and with a static loss scale of 4 (WeightDecay installed: scaling by a power
  of two is exact, so the order of decay and unscaling cannot matter): the profiles differ
  only where the documentation says.
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
STORAGE_ULP_BOUND = 2
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


#: Teacher-forced state ranges: (low, high, signed). Second moments stay well above the
#: squared first moments, so no stored value comes from a catastrophic cancellation.
STATE_RANGES = {
    "m": (0.1, 1.0, True), "v": (0.5, 2.0, False), "vhat": (0.5, 2.0, False),
    "h": (0.5, 2.0, False), "ms": (0.5, 2.0, False), "msg": (0.5, 2.0, False),
    "msdx": (0.5, 2.0, False), "n": (0.5, 2.0, False), "delta": (0.1, 1.0, True),
    "mem": (0.5, 2.0, False), "g2": (0.5, 2.0, False),
    ("RMSpropGraves", "g"): (0.01, 0.1, True), ("SMORMS3", "g"): (0.1, 0.3, False),
}


def _well_conditioned_state(optimizer_name, state_name, rng):
    low, high, signed = STATE_RANGES.get((optimizer_name, state_name),
                                         STATE_RANGES.get(state_name, (0.1, 1.0, True)))
    values = rng.uniform(low, high, SHAPE)
    return values * rng.choice([-1.0, 1.0], SHAPE) if signed else values


def _random_param_and_grad(rng):
    values = rng.uniform(0.5, 2.0, SHAPE) * rng.choice([-1.0, 1.0], SHAPE)
    grad = rng.uniform(0.1, 1.0, SHAPE) * rng.choice([-1.0, 1.0], SHAPE)
    return values, grad


#: Storage modes: (parameter dtype, fp32 master).
STORAGE_MODES = {"float32": (numpy.float32, False), "float16+master": (numpy.float16, True),
                 "float16": (numpy.float16, False)}


def _run_one_step(optimizer_name, arithmetic, seed, mode="float64"):
    rng = numpy.random.default_rng(seed)
    values, grad = _random_param_and_grad(rng)
    dtype, master = STORAGE_MODES.get(mode, (numpy.float64, False))
    values, grad = values.astype(dtype), grad.astype(dtype)
    param = Parameter(values, name="w")
    arguments = dict(OPTIMIZER_ARGUMENTS.get(optimizer_name, {}))
    if optimizer_name == "RMSprop" and mode == "float16":
        arguments["eps"] = 1e-3  # Chainer rejects the default 1e-8 for fp16 gradients
    opt = getattr(optimizers, optimizer_name)(arithmetic=arithmetic, **arguments)
    opt.setup({"w": param})
    if master:
        opt.use_fp32_update()
    rule = param.update_rule
    # One step creates the state; then teacher-force a well-conditioned one.
    param.grad = grad
    opt.update()
    param.data = values
    for name in list(rule.state):
        rule.state[name] = _well_conditioned_state(optimizer_name, name, rng)
    rule.t = TEACHER_T
    if optimizer_name == "MSVAG":
        rule.beta_power = arithmetic.pow(0.9, TEACHER_T + 1)
        rule.state["v"] = rule.state["m"].astype(numpy.float64) ** 2 \
            + rng.uniform(0.5, 2.0, SHAPE)
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


def _compare_storage(name, mode, seeds=(0, 1, 2)):
    """Worst float64-vs-mpmath difference of the stored values, in ulps of each value's
    storage dtype at the magnitude of the terms combined, and the fraction of stored
    elements that agree bitwise."""
    worst, equal, total = 0.0, 0, 0
    for seed in seeds:
        _, float64, _ = _run_one_step(name, Float64(), seed, mode)
        before, mp50, grad = _run_one_step(name, Mpmath(dps=50), seed, mode)
        for key in mp50:
            expected = mp50[key]
            magnitude = numpy.maximum(numpy.abs(expected), numpy.abs(grad).astype(expected.dtype))
            if key in before:
                magnitude = numpy.maximum(magnitude, numpy.abs(before[key]))
            spacing = numpy.spacing(magnitude).astype(numpy.float64)
            difference = numpy.abs(float64[key].astype(numpy.float64)
                                   - expected.astype(numpy.float64))
            worst = max(worst, float(numpy.max(difference / spacing)))
            equal += int(numpy.sum(float64[key] == expected))
            total += expected.size
    return worst, equal / total


def _profiles_agree(name, loss_scale=None, steps=3, seed=0):
    """Where the profiles must not differ, on float64 parameters with non-zero gradients:

    * no loss scaling, WeightDecay + GradientClipping + GradientLARS;
    * a static loss scale that is a power of two, WeightDecay only (``chainer`` decays the
      scaled gradient by ``rate * scale`` and divides later, ``fixed`` divides first: exact
      either way). Dividing twice, or not at all, would show.

    Returns whether both profiles give bitwise identical parameters and state."""
    results = []
    for profile in ("chainer", "fixed"):
        rng = numpy.random.default_rng(seed)
        values, _ = _random_param_and_grad(rng)
        param = Parameter(values, name="w")
        opt = getattr(optimizers, name)(profile=profile,
                                        **OPTIMIZER_ARGUMENTS.get(name, {})).setup([param])
        opt.add_hook(optimizer_hooks.WeightDecay(0.01))
        if loss_scale is None:
            opt.add_hook(optimizer_hooks.GradientClipping(0.5))
            opt.add_hook(optimizer_hooks.GradientLARS(threshold=0.1, weight_decay=0.01))
        else:
            opt.loss_scaling(scale=loss_scale)
        for _ in range(steps):
            _, grad = _random_param_and_grad(rng)
            param.grad = grad * (1.0 if loss_scale is None else loss_scale)
            opt.update()
        results.append([param.data] + [param.update_rule.state[key]
                                       for key in sorted(param.update_rule.state)])
    return all(numpy.array_equal(a, b) for a, b in zip(*results))


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
            for loss_scale, what in ((None, "no loss scaling, 3 hooks"),
                                     (4.0, "loss scale 4, WeightDecay")):
                agree = _profiles_agree(name, loss_scale)
                rows.append(("optimizer {}: profiles chainer == fixed ({})".format(name, what),
                             "bitwise" if agree else "differs", "bitwise", agree))
            for mode in STORAGE_MODES:
                worst, equal_fraction = _compare_storage(name, mode)
                rows.append(("optimizer {} storage {} (teacher-forced step)".format(name, mode),
                             "{:.0f} ulp, {:.1%} bitwise".format(worst, equal_fraction),
                             "{} ulp".format(STORAGE_ULP_BOUND),
                             worst <= STORAGE_ULP_BOUND))
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
