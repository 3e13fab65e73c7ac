"""`python -m conformance mutants`: every mutant against the suite, and the detection table.

A mutant counts as detected only on a case where the correct `fast` passes (the baseline),
so a disagreement that fast already has can never be credited to a mutant. Each mutant runs
in its own process (worker.py); cases are checked in an order that interleaves optimizers, so
a mutant is usually caught within its first few cases.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict

from .. import generators, report
from ..runner import run_cases
from .catalog import CATALOG, by_name


def interleaved(cases: list) -> list:
    """Round-robin over (case family, optimizer), keeping each pair's own order, so every
    feature of every optimizer comes up within the first few hundred cases."""
    rank = defaultdict(int)
    keyed = []
    for case in cases:
        key = (case.name.split("/")[0], case.optimizer)
        keyed.append((rank[key], key, case))
        rank[key] += 1
    return [case for _, _, case in sorted(keyed, key=lambda k: (k[0], k[1]))]


def baseline_cases(level: str) -> tuple:
    """The suite's cases on which the correct fast passes, and how many it fails."""
    import fast
    cases = generators.ci_suite(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_cases(fast, cases, progress=True)
    passing = [r.case for r in results if r.passed]
    return passing, len(cases) - len(passing)


def run_mutant(name: str, cases: list, timeout: float = 900) -> dict:
    payload = json.dumps([repr(c) for c in cases])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "conformance.mutants.worker", name],
                          input=payload, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    outcome = json.loads(lines[-1]) if lines else {
        "mutant": name, "detected": False, "error": f"worker failed: {proc.stderr[-500:]}"}
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


BASELINE_CACHE = os.path.join("reports", "mutants-baseline.json")


def cached_baseline(level: str, reuse: bool) -> tuple:
    """baseline_cases, or the cached one from the last run at this level when `reuse`."""
    if reuse and os.path.exists(BASELINE_CACHE):
        with open(BASELINE_CACHE) as f:
            cached = json.load(f)
        if cached["level"] == level:
            names = set(cached["passing"])
            return [c for c in generators.ci_suite(level) if c.name in names], cached["excluded"]
    passing, excluded = baseline_cases(level)
    os.makedirs("reports", exist_ok=True)
    with open(BASELINE_CACHE, "w") as f:
        json.dump({"level": level, "excluded": excluded, "passing": [c.name for c in passing]}, f)
    return passing, excluded


def run_catalog(level="ci", only=None, write=False, reuse_baseline=False) -> int:
    mutants = CATALOG if not only else tuple(by_name(n.strip()) for n in only.split(","))
    passing, fast_failures = cached_baseline(level, reuse_baseline)
    order = interleaved(passing)
    print(f"baseline: correct fast passes {len(passing)} cases at level {level!r} "
          f"({fast_failures} excluded)")
    rows = []
    for mutant in mutants:
        outcome = run_mutant(mutant.name, order)
        rows.append({"mutant": mutant.name, "models": mutant.models, "visible": mutant.visible,
                     "detected": "yes" if outcome.get("detected") else "NO",
                     "case": outcome.get("case") or outcome.get("error") or "-",
                     "cases_run": outcome.get("cases_run", 0), "seconds": outcome["seconds"],
                     "divergence": outcome.get("divergence")})
        print(f"  {mutant.name:38s} {rows[-1]['detected']:3s} after {rows[-1]['cases_run']} "
              f"cases ({rows[-1]['seconds']}s): {rows[-1]['case']}", flush=True)
    detected = sum(r["detected"] == "yes" for r in rows)
    print()
    print(report.format_table(rows, ["mutant", "detected", "cases_run", "seconds", "case"]))
    print(f"\ndetected {detected}/{len(rows)} mutants")
    if write:
        _write(rows, level, len(passing), fast_failures)
    return 0 if detected == len(rows) else 1


def _write(rows, level, baseline, excluded) -> None:
    os.makedirs("reports", exist_ok=True)
    detected = sum(r["detected"] == "yes" for r in rows)
    with open(os.path.join("reports", "mutants.json"), "w") as f:
        json.dump({"level": level, "baseline_cases": baseline, "excluded_cases": excluded,
                   "detected": detected, "total": len(rows), "mutants": rows}, f, indent=1)
    lines = ["# Mutant detection", "",
             f"Level `{level}`; the correct `fast` passes {baseline} cases (the baseline; "
             f"{excluded} cases where it disagrees with the reference are excluded).", "",
             f"**Detected {detected}/{len(rows)}.**", "",
             "| mutant | models | visible | detected | first case | cases run |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['mutant']} | {r['models']} | {r['visible']} | {r['detected']} | "
              f"`{r['case']}` | {r['cases_run']} |" for r in rows]
    with open(os.path.join("reports", "mutants.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
