"""Run the suite against one mutant, in its own process (python -m conformance.mutants.worker).

Reads a JSON list of case reprs on stdin, plants the mutant, checks the cases in order until
the first divergence, and prints one JSON line: {"mutant", "detected", "case", "divergence",
"cases_run", "error"}.
"""
from __future__ import annotations

import json
import sys
import warnings

from ..target import array_module
from ..runner import case_from_repr


def build_kernels(device: str) -> None:
    """Compile (or load from the cache) the kernels `device` runs."""
    if device == "cpu":
        from fast.backends import cpu
        cpu.library()
    elif device == "gpu-emulated":
        from fast.backends import cuda_emulator
        cuda_emulator.library()
    else:
        import cupy
        from fast.backends import cuda
        cuda.cuda_backend(cupy.cuda.Device().id)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = argv[0]
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
    params = argv[argv.index("--params") + 1] if "--params" in argv else "impl"
    case_reprs = json.load(sys.stdin)
    outcome = {"mutant": name, "detected": False, "case": None, "divergence": None,
               "cases_run": 0, "error": None}
    try:
        from .catalog import by_name
        mutant = by_name(name)
        for patch in mutant.plant:
            patch.plant()
        import fast
        xp = array_module(device, "fast")
        # Build the (possibly edited) kernels of the device now: a mutant whose kernels do not
        # build is an error in the table, never a divergence that would count as detected.
        build_kernels(device)
        from ..compare import check_case
        warnings.simplefilter("ignore")
        for text in case_reprs:
            case = case_from_repr(text)
            result = check_case(fast, case, xp=xp, params=params)
            outcome["cases_run"] += 1
            if not result.passed:
                outcome.update(detected=True, case=case.name,
                               divergence=result.divergences[0].describe())
                break
    except Exception as exc:  # reported in the table; a mutant that cannot plant is a failure
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
