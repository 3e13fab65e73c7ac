"""The words for one case's outcome: the diagnosis and the command that reproduces it.

One source for every place a failure is shown: the command line, the JUnit and JSON files
and the pytest plugin.
"""
from __future__ import annotations

import shlex

from .target import Target


def reproduce_command(target: Target, level: str, case, by_repr: bool = False) -> str:
    """The `gate` command that runs this one case again (by name, or by its repr for a case
    that is not in the suite); a distributed case's under `mpiexec -n <ranks>`."""
    base = f"python -m conformance gate --impl {target.impl} --device {target.device}"
    if target.fp16_compute != "float32":
        base += f" --fp16-compute {target.fp16_compute}"
    if target.params != "impl":
        base += f" --params {target.params}"
    if case.ranks > 1:
        base = f"mpiexec -n {case.ranks} {base} --ranks {case.ranks}"
    if by_repr or case.name == "hypothesis":
        return f"{base} --case-repr {shlex.quote(repr(case))}"
    return f"{base} --level {level} --case {shlex.quote(case.name)}"


def headline(result) -> str:
    """One line: the first divergence, or why the case was not run."""
    if result.not_applicable is not None:
        return f"not applicable: {result.not_applicable}"
    return result.divergences[0].describe()


def failure_lines(result) -> list:
    """The diagnosis of a failed case: the case, the first divergence and, for a value, the
    element, both values, the error and the bound."""
    if result.not_applicable is not None:
        return [f"NOT APPLICABLE: case {result.case.name}", f"  {result.not_applicable}"]
    d = result.divergences[0]
    lines = [f"NON-CONFORMANCE in case {result.case.name}", f"  {d.describe()}"]
    if d.kind == "value":
        lines.append(f"  array {d.array} element {list(d.index)}: impl {d.impl_value!r}, "
                     f"reference {d.ref_value!r}, error {abs(d.impl_value - d.ref_value):.6g}, "
                     f"bound {d.bound:.6g}")
    return lines


def failure_text(result, command: str) -> str:
    """The diagnosis followed by the reproduce line, as the command line prints it."""
    return "\n".join(failure_lines(result) + [f"  reproduce: {command}"]) + "\n"
