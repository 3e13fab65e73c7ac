"""Run a list of cases against an implementation, with an optional progress bar."""
from __future__ import annotations

import sys
import time
import warnings

from . import cases as case_model
from .compare import check_case, free_running_drift


def progress_bar(done: int, total: int, failed: int, started: float, stream=sys.stderr) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    elapsed = time.monotonic() - started
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"failed {failed}  {elapsed:5.0f}s")
    if done == total:
        stream.write("\n")
    stream.flush()


def run_cases(impl, cases: list, xp=None, progress=False, fail_fast=False,
              fp16_compute="float32", drift=False) -> list:
    """check_case over `cases` (and, with drift, the free-running drift of each);
    stops at the first failure when fail_fast."""
    import numpy
    xp = numpy if xp is None else xp
    results, failed, started = [], 0, time.monotonic()
    for i, case in enumerate(cases, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # implementations warn on non-finite gradients
            result = check_case(impl, case, xp=xp, fp16_compute=fp16_compute)
            if drift:
                result.drift = max(free_running_drift(impl, case, xp=xp).values(), default=0.0)
        results.append(result)
        failed += 0 if result.passed else 1
        if progress and (i == len(cases) or i % 10 == 0):
            progress_bar(i, len(cases), failed, started)
        if fail_fast and not result.passed:
            if progress:
                sys.stderr.write("\n")
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
