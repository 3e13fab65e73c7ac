"""Run a list of cases against an implementation, with an optional progress bar."""
from __future__ import annotations

import sys
import time
import warnings

from . import applicability, cases as case_model
from .compare import check_case, free_running_drift
from .results import CaseResult


def progress_bar(done: int, total: int, failed: int, started: float, stream=sys.stderr) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    elapsed = time.monotonic() - started
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"failed {failed}  {elapsed:5.0f}s")
    if done == total:
        stream.write("\n")
    stream.flush()


def run_case(impl, case, xp, fp16_compute="float32", drift=False, world=None, params="impl") -> CaseResult:
    """check_case (and, with drift, the free-running drift), or a not-applicable result
    when the case needs something `impl` lacks. `world`: the ranks of a distributed run
    (conformance.ranks), which every rank calls with the same case; `params`: how the
    parameters are made and given their gradients (conformance.params)."""
    reasons = applicability.missing(impl, case)
    if reasons:
        return CaseResult(case, not_applicable=tuple(reasons))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implementations warn on non-finite gradients
        result = check_case(impl, case, xp=xp, fp16_compute=fp16_compute, world=world, params=params)
        if drift and not result.diverged:  # the drift of a conforming case only
            drifts = free_running_drift(impl, case, xp=xp, world=world, params=params)
            result.drift = max(drifts.values(), default=0.0)
            if world is not None and case.ranks > 1:
                result.drift = max(world.allgather(result.drift))
    return result


class Progress:
    """The progress bar of a run, fed one result at a time in case order."""

    def __init__(self, total: int, shown: bool, require_all: bool = False):
        self.total, self.shown, self.require_all = total, shown, require_all
        self.done, self.failed, self.started = 0, 0, time.monotonic()

    def add(self, result) -> None:
        self.done += 1
        self.failed += 1 if result.failed(self.require_all) else 0
        if self.shown and (self.done == self.total or self.done % 10 == 0):
            progress_bar(self.done, self.total, self.failed, self.started)

    def stopped_early(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def run_cases(impl, cases: list, xp=None, progress=False, fail_fast=False,
              fp16_compute="float32", drift=False, require_all=False, world=None, params="impl") -> list:
    """run_case over `cases` in this process; stops at the first failure when fail_fast
    (with require_all, a case that is not applicable is a failure)."""
    import numpy
    xp = numpy if xp is None else xp
    results, bar = [], Progress(len(cases), progress, require_all)
    for case in cases:
        result = run_case(impl, case, xp, fp16_compute, drift, world, params)
        results.append(result)
        bar.add(result)
        if fail_fast and result.failed(require_all):
            bar.stopped_early()
            break
    return results


def case_from_repr(text: str) -> case_model.Case:
    """Rebuild a case from its repr (as printed in a reproduce command)."""
    namespace = {name: getattr(case_model, name) for name in
                 ("Case", "HookSpec", "LossScaling", "Injection", "ParamSpec", "Resume")}
    case = eval(text, {"__builtins__": {}}, namespace)  # only the case classes are reachable
    if not isinstance(case, case_model.Case):
        raise ValueError("--case-repr must be the repr of a conformance Case")
    return case
