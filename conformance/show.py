"""`python -m conformance show CASE`: a case's definition, in words and numbers.

What a user needs to rerun a case by hand: the optimizer with every hyperparameter (the case's
and Chainer's defaults), the dtype mode, the profile, the hooks, the loss scaling, the
injections, disabled rules, per-rule overrides, checkpoints, a resumed start, each parameter's
initial value and the gradient every step hands the implementation (the case's stream times
the loss scale at that step, cast to the storage dtype, with the injections planted). The
loss scale of each step is the reference's (so a dynamic scale after a skipped step is the one
the implementation must have too).
"""
from __future__ import annotations

import difflib
import inspect
import re

import numpy as np

from . import generators, streams
from .target import UsageError

#: The dtype modes in words.
MODES = {
    "float64": "parameters, gradients and state in float64; computed in float64",
    "float32": "parameters, gradients and state in float32; computed in float32",
    "float16_master": "float16 parameters and gradients, use_fp32_update(): an fp32 master, fp32 "
                      "state and fp32 arithmetic, the float16 parameter written from the master",
    "float16": "parameters, gradients and state in float16, no master; computed in float32 "
               "(--fp16-compute float16 declares float16 arithmetic)",
}


def find_case(args):
    """The case `show` prints: by --case-repr, or by name at --level (a distributed case's
    name starts with ranks<N>/, which picks the slice of N ranks unless --ranks says)."""
    if args.case_repr:
        from .runner import case_from_repr
        return case_from_repr(args.case_repr)
    if not args.case:
        raise UsageError("show: name a case (or give --case-repr)")
    ranks = args.ranks
    if ranks is None:
        match = re.match(r"ranks(\d+)/", args.case)
        ranks = int(match.group(1)) if match else 1
    suite = generators.ci_suite(args.level, ranks=ranks)
    for case in suite:
        if case.name == args.case:
            return case
    close = difflib.get_close_matches(args.case, [c.name for c in suite], n=3, cutoff=0.8)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise UsageError(f"no case named {args.case!r} at level {args.level!r}{hint}")


def show_case(case) -> str:
    """The case's definition and its inputs, as text."""
    lines = [f"case {case.name}", *(f"  {line}" for line in definition_lines(case)), "",
             f"parameters (initial values, {case.storage_dtype}):"]
    for i, spec in enumerate(case.params):
        value = streams.initial_value(case, i, spec)
        lines.append(f"  /{spec.name} shape {spec.shape}, gradient stream {spec.grad_kind}"
                     f"{'' if spec.grad_scale == 1 else f' x {spec.grad_scale:g}'}:")
        lines.append(_array(value, "    "))
    lines += ["", f"gradients handed to the implementation at each step (the stream x the "
                  f"loss scale at that step, cast to {case.storage_dtype}, injections planted; "
                  f"None: no gradient):"]
    recorded, raised = gradient_steps(case)
    for step, scale, grads in recorded:
        label = "step 0 (the update before the resume checkpoint)" if step == 0 else f"step {step}"
        lines.append(f"  {label}, loss scale {scale!r}:")
        for name, per_rank in grads.items():
            for rank, grad in per_rank:
                who = f"/{name}" if rank is None else f"/{name} on rank {rank}"
                lines.append(f"    {who}:")
                lines.append("      None" if grad is None else _array(grad, "      "))
    if raised is not None:
        lines.append(f"  the reference's update raises {raised} at step {recorded[-1][0]}: the "
                     f"implementation must raise the same type there, and change nothing")
    lines += ["", f"repr (for --case-repr): {case!r}"]
    return "\n".join(lines) + "\n"


def definition_lines(case) -> list:
    """The case's settings, one per line."""
    lines = [f"optimizer: {optimizer_call(case)}"]
    if case.hyperparams:
        lines.append("  set by the case: " + ", ".join(f"{k}={v!r}" for k, v in case.hyperparams)
                     + "; the others are Chainer's defaults")
    lines.append(f"dtype mode: {case.dtype_mode}: {MODES[case.dtype_mode]}")
    lines.append(f"profile: {case.profile}" + ("" if case.profile == "chainer" else
                                                " (passed as profile='fixed')"))
    ls = case.loss_scaling
    lines.append("loss scaling: " + {"none": "none",
                                     "static": f"static, opt.loss_scaling(scale={ls.scale!r})",
                                     "dynamic": f"dynamic from 1.0, opt.loss_scaling(interval="
                                                f"{ls.interval}, scale=None)"}[ls.mode])
    if case.hooks:
        lines.append("hooks, in the order added:")
        for position, spec in enumerate(case.hooks):
            where = ("optimizer-level, opt.add_hook" if spec.param is None else
                     f"on the rule of /{spec.param}, p.update_rule.add_hook")
            args = ", ".join(repr(a) for a in spec.args)
            if spec.kind == "GradientNoise":
                args += ", noise_func=conformance.streams.deterministic_noise"
            lines.append(f"  {spec.kind}({args}), {where}, name {spec.kind}_{position}, "
                         f"timing {spec.timing}")
    else:
        lines.append("hooks: none")
    for inj in case.injections:
        what = ("the gradient is None" if inj.kind == "none" else
                f"flat element {inj.index} of the gradient is {inj.kind}")
        on = "" if inj.rank is None else f" on rank {inj.rank}"
        lines.append(f"injection: step {inj.step}, /{inj.param}{on}: {what}")
    for name in case.disabled:
        lines.append(f"disabled: /{name} (p.update_rule.enabled = False)")
    for name, hp, value in case.overrides:
        lines.append(f"override: /{name}: p.update_rule.hyperparam.{hp} = {value!r}")
    if case.checkpoints:
        lines.append("checkpoints: save_npz and load_npz into a freshly built optimizer after "
                     f"step{'s' if len(case.checkpoints) > 1 else ''} "
                     + ", ".join(str(s) for s in case.checkpoints))
    if case.resume is not None:
        r = case.resume
        lines.append(f"resumed: one update on the step-0 gradients, save_npz, the counters "
                     f"written into the file (t={r.t}, rule t={list(r.rule_t)}"
                     + (f", beta_power={list(r.beta_power)}" if r.beta_power else "")
                     + "), load_npz into a freshly built optimizer")
    if case.ranks > 1:
        lines.append(f"ranks: {case.ranks} (zero={case.zero}, exchange dtype "
                     f"{case.exchange_dtype or 'the gradient dtype'}); each rank feeds its own "
                     f"stream")
    lines.append(f"steps: {case.steps}, seed: {case.seed}")
    return lines


def optimizer_call(case) -> str:
    """`Adam(alpha=0.001, ...)`: every constructor argument, the case's values where it sets
    them (read from the reference's signature: Chainer's names and defaults)."""
    import reference
    cls = getattr(reference.optimizers, case.optimizer)
    values = dict(case.hyperparams)
    parts = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            parts.append(f"{p.name}={values.get(p.name, p.default)!r}")
    return f"{case.optimizer}({', '.join(parts)})"


def gradient_steps(case) -> tuple:
    """([(step, loss scale, {param: [(rank or None, gradient or None)]})] for every step the
    case runs, what the reference's update raised or None): the loss scale is the reference's
    at that step (the reference is run in float64 through the case's steps and checkpoints)."""
    import warnings

    import reference
    from .adapter import CalledCodeRaised
    if case.ranks > 1:
        from .ranks import MeanGradientDriver as base
    else:
        from .adapter import Driver as base
    recorded = []

    class Recorder(base):
        def set_grads(self, step: int) -> None:
            scale = self.optimizer.loss_scale
            ranks = [None] if case.ranks == 1 else list(range(case.ranks))
            grads = {spec.name: [(rank, streams.gradient(case, i, spec, step, scale, rank=rank))
                                 for rank in ranks]
                     for i, spec in enumerate(case.params)}
            recorded.append((step, scale, grads))
            super().set_grads(step)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the reference warns on non-finite gradients
        driver = Recorder(reference, case, side="reference")
        for step in range(1, case.steps + 1):
            try:
                driver.step(step)
                if step in case.checkpoints:
                    driver.checkpoint()
            except CalledCodeRaised as exc:   # the case ends at this step
                cause = exc.__cause__
                return recorded, f"{type(cause).__name__}: {cause}"
    return recorded, None


def _array(value, indent: str) -> str:
    text = np.array2string(np.asarray(value), threshold=24, edgeitems=4, floatmode="unique",
                           separator=", ", max_line_width=100 - len(indent))
    return "\n".join(indent + line for line in text.splitlines())
