"""The words for one case's outcome: the diagnosis and the command that reproduces it.

One source for every place a failure is shown: the command line, the JUnit and JSON files
and the pytest plugin.
"""
from __future__ import annotations

import shlex

from .options import reproduce_flags


def reproduce_command(args, case, by_repr: bool = False) -> str:
    """The `gate` command that runs this one case again, from the run's options `args` (the
    command line's or the pytest plugin's namespace): the target, the options that change a
    verdict (conformance.options, `reproduce`: --fp16-compute, --params, and --optimizers and
    --require-all, under which a case that cannot run fails), and the case by name at the
    run's level, or by its repr for a case that is not in the suite; a distributed case's
    under `mpiexec -n <ranks>`."""
    words = ["python", "-m", "conformance", "gate", "--impl", args.impl, "--device", args.device]
    words += reproduce_flags(args)
    base = " ".join(shlex.quote(w) for w in words)
    if case.ranks > 1:
        base = f"mpiexec -n {case.ranks} {base} --ranks {case.ranks}"
    if by_repr or case.name == "hypothesis":
        return f"{base} --case-repr {shlex.quote(repr(case))}"
    return f"{base} --level {getattr(args, 'level', 'ci')} --case {shlex.quote(case.name)}"


def headline(result) -> str:
    """One line: the first divergence, or why the case was not run."""
    if result.not_applicable is not None:
        return f"not applicable: {'; '.join(result.not_applicable)}"
    return result.divergences[0].describe()


def failure_lines(result) -> list:
    """The diagnosis of a failed case: the case, the first divergence and, for a value, the
    element, both values, the error, the bound and the normalized error; for an exception or
    a contract failure, the implementation's traceback (its own frames)."""
    if result.not_applicable is not None:
        return [f"NOT APPLICABLE: case {result.case.name}: it needs what the implementation "
                f"lacks"] + [f"  {reason}" for reason in result.not_applicable]
    d = result.divergences[0]
    lines = [f"NON-CONFORMANCE in case {result.case.name}", f"  {d.describe()}"]
    if d.kind == "value":
        lines.append(f"  array {d.array} element {list(d.index)}: impl {d.impl_value!r}, "
                     f"reference {d.ref_value!r}, error {abs(d.impl_value - d.ref_value):.6g}, "
                     f"bound {d.bound:.6g}, normalized error {d.normalized:.3g}")
    raised = d.impl_raised
    if raised is not None and raised.traceback:
        lines.append(f"  the implementation's traceback ({raised.type}: {raised.message}):")
        lines += ["    " + line for line in raised.traceback.rstrip("\n").splitlines()]
    return lines


def failure_text(result, command: str) -> str:
    """The diagnosis followed by the reproduce line, as the command line prints it."""
    return "\n".join(failure_lines(result) + [f"  reproduce: {command}"]) + "\n"


def exception_record(result) -> dict | None:
    """The implementation's exception of a failed case, for JSON: type, message, traceback."""
    if not result.divergences or result.divergences[0].impl_raised is None:
        return None
    raised = result.divergences[0].impl_raised
    return {"type": raised.type, "message": raised.message, "traceback": raised.traceback}
