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
from concurrent.futures import ThreadPoolExecutor

from .. import generators, report
from ..target import array_module, describe_device
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


def suite(level: str, name_filter=None) -> list:
    """The level's cases, or those whose name contains `name_filter`."""
    return [c for c in generators.ci_suite(level) if name_filter is None or name_filter in c.name]


def baseline_cases(level: str, device: str = "cpu", name_filter=None, params="impl") -> tuple:
    """The suite's cases on which the correct fast passes on `device` (its parameters made as
    `params` says), and how many it fails."""
    import fast
    xp = array_module(device, "fast")
    cases = suite(level, name_filter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_cases(fast, cases, xp=xp, progress=sys.stderr.isatty(), params=params)
    passing = [r.case for r in results if r.passed]
    return passing, len(cases) - len(passing)


def run_mutant(name: str, cases: list, device: str = "cpu", timeout: float = 900, params="impl") -> dict:
    payload = json.dumps([repr(c) for c in cases])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "conformance.mutants.worker", name, "--device", device,
                               "--params", params],
                              input=payload, capture_output=True, text=True, timeout=timeout, env=env)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        outcome = json.loads(lines[-1]) if lines else {
            "mutant": name, "detected": False, "error": f"worker failed: {proc.stderr[-500:]}"}
    except subprocess.TimeoutExpired:
        outcome = {"mutant": name, "detected": False, "error": f"worker timed out after {timeout:.0f}s"}
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


def _baseline_path(device: str, params: str = "impl") -> str:
    suffix = ("" if device == "cpu" else f"-{device}") + ("" if params == "impl" else f"-params-{params}")
    return os.path.join("reports", f"mutants-baseline{suffix}.json")


def cached_baseline(level: str, reuse: bool, device: str = "cpu", name_filter=None, params="impl") -> tuple:
    """baseline_cases, or the cached one from the last run of the same selection when `reuse`."""
    path = _baseline_path(device, params)
    if reuse and os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if cached["level"] == level and cached.get("filter") == name_filter:
            names = set(cached["passing"])
            return [c for c in suite(level, name_filter) if c.name in names], cached["excluded"]
    passing, excluded = baseline_cases(level, device, name_filter, params)
    os.makedirs("reports", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"level": level, "filter": name_filter, "excluded": excluded,
                   "passing": [c.name for c in passing]}, f)
    return passing, excluded


def baseline_from_report(path: str, level: str, device: str, name_filter=None) -> tuple:
    """The baseline read from a conformance report of the correct fast (``report``'s JSON) on
    the same device and level: its passing cases, and how many failed."""
    with open(path) as f:
        saved = json.load(f)
    meta = saved.get("meta", {})
    wanted = {"impl": "fast", "device": device, "level": level}
    if any(meta.get(k) != v for k, v in wanted.items()):
        raise ValueError(f"{path} is a report of {meta.get('impl')} on {meta.get('device')} at level "
                         f"{meta.get('level')}, not of fast on {device} at level {level}")
    if any("status" not in r for r in saved["results"]):
        raise ValueError(f"{path} holds records without a status (written before statuses "
                         f"existed): write it again with `python -m conformance report`")
    passed = {r["case"]: r["status"] == "passed" for r in saved["results"]}
    cases = suite(level, name_filter)
    missing = [c.name for c in cases if c.name not in passed]
    if missing:
        raise ValueError(f"{path} has no result for {len(missing)} of the cases, e.g. {missing[0]}")
    passing = [c for c in cases if passed[c.name]]
    return passing, len(cases) - len(passing)


def chainer_available() -> bool:
    try:
        import chainer  # noqa: F401
    except ImportError:
        return False
    return True


def select_mutants(only=None, device="cpu", kind=None) -> tuple:
    """The catalog's mutants whose planted code runs on `device` (of `kind`, when given), or
    exactly the ones named in `only` (each must run on `device`). The mutants run with
    `--params chainer` need Chainer: without it they are left out of the default selection
    (a line says so) and refused by name."""
    if only:
        chosen = tuple(by_name(n.strip()) for n in only.split(","))
        idle = [m.name for m in chosen if device not in m.devices]
        if idle:
            raise ValueError(f"mutants whose planted code does not run on {device}: {', '.join(idle)}")
        if not chainer_available() and any(m.params == "chainer" for m in chosen):
            raise ValueError("mutants run with --params chainer need Chainer 7.8.1 (the Makefile's .venv-chainer)")
        return chosen
    chosen = tuple(m for m in CATALOG if device in m.devices and kind in (None, m.kind))
    if not chainer_available():
        left_out = [m.name for m in chosen if m.params == "chainer"]
        if left_out:
            print(f"left out (they run with --params chainer, which needs Chainer 7.8.1: use the "
                  f"Makefile's .venv-chainer): {', '.join(left_out)}")
        chosen = tuple(m for m in chosen if m.params != "chainer")
    return chosen


# -- distributed mutants: the distributed slice under mpiexec ---------------------------------
#: The wall-clock limit of one distributed launch; its process group is killed after it.
DISTRIBUTED_TIMEOUT_S = 600


def launch_ranks(ranks: int, args: list, env_extra=None, timeout=DISTRIBUTED_TIMEOUT_S) -> tuple:
    """`mpiexec -n ranks python -m conformance <args>` (see launch_python)."""
    return launch_python(ranks, ["-m", "conformance", *args], env_extra, timeout)


def launch_python(ranks: int, python_args: list, env_extra=None, timeout=DISTRIBUTED_TIMEOUT_S) -> tuple:
    """`mpiexec -n ranks python <python_args>` with one OpenMP thread per rank and the current
    directory first on the ranks' import path; (exit status, output), or (None, output) when
    it ran past `timeout` (its process group killed: a hang)."""
    import signal
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([mpiexec, "-n", str(ranks), sys.executable, *map(str, python_args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    return proc.returncode, out


def distributed_slice_results(ranks: int, level: str, impl: str, env_extra=None,
                              fail_fast=False, name_filter=None, params="impl") -> tuple:
    """(exit status, the run's JSON or None, output) of the distributed slice on `ranks`."""
    import tempfile
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        args = ["gate", "--impl", impl, "--ranks", str(ranks), "--level", level, "--json", path,
                "--params", params]
        args += ["--fail-fast"] if fail_fast else []
        args += ["--filter", name_filter] if name_filter else []
        status, out = launch_ranks(ranks, args, env_extra)
        payload = None
        if status in (0, 1) and os.path.getsize(path):
            with open(path) as f:
                payload = json.load(f)
        return status, payload, out
    finally:
        os.unlink(path)


def distributed_baseline(ranks: int, level: str, name_filter=None, params="impl") -> tuple:
    """The distributed slice's cases the correct fast passes on `ranks` ranks, and how many
    it does not."""
    status, payload, out = distributed_slice_results(ranks, level, "fast", name_filter=name_filter,
                                                     params=params)
    if payload is None:
        raise RuntimeError(f"the correct fast's distributed slice on {ranks} ranks did not "
                           f"finish (exit {status}): {out[-2000:]}")
    passing = {r["case"] for r in payload["results"] if r["status"] == "passed"}
    return passing, payload["cases"] - len(passing)


def run_distributed_mutant(mutant, level: str, passing: set, name_filter=None) -> dict:
    """Plant `mutant` on every rank (conformance.mutants.planted) and gate the distributed
    slice on mutant.ranks ranks, stopping at the first failure: detected when that run fails
    (exit 1) on a case the correct fast passes, or dies of an MPI fatal error in the
    implementation's own collectives (ranks that disagree on a skip call different
    collectives; the correct fast's run passes, so it is the mutant's doing). A hang, a harness
    error or a failure only where the correct fast fails is never a detection."""
    started = time.monotonic()
    status, payload, out = distributed_slice_results(
        mutant.ranks, level, "conformance.mutants.planted",
        env_extra={"CONFORMANCE_MUTANT": mutant.name}, fail_fast=True, name_filter=name_filter,
        params=mutant.params)
    outcome = {"mutant": mutant.name, "detected": False, "case": None, "divergence": None,
               "cases_run": 0, "error": None}
    fatal = _fatal_mpi_error_of_the_implementation(out)
    if status is None:
        outcome["error"] = f"{mutant.ranks} ranks timed out after {DISTRIBUTED_TIMEOUT_S}s"
    elif status not in (0, 1) and fatal:
        # The ranks' collectives desynchronized inside the implementation (the harness's own
        # exchanges use a duplicate communicator, so this is the implementation's): the run
        # failed where the correct fast's passes. Counted, and labelled as such in the table.
        outcome.update(detected=True, case="(the run crashed: MPI fatal error in the "
                                           "implementation's collectives)", divergence=fatal)
    elif payload is None:
        outcome["error"] = f"exit {status}: {out[-500:]}"
    else:
        outcome["cases_run"] = len(payload["results"])
        failure = payload["failures"][0] if payload["failures"] else None
        if status == 1 and failure and failure["case"] in passing:
            outcome.update(detected=True, case=failure["case"], divergence=failure["diagnosis"])
        elif failure:
            outcome["error"] = f"failed only where the correct fast fails: {failure['case']}"
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


def _fatal_mpi_error_of_the_implementation(out: str):
    """The first line of an MPI fatal error on MPI_COMM_WORLD (the implementation's
    communicator; the harness uses a duplicate) in a run's output, or None."""
    for line in out.splitlines():
        if "Fatal error in" in line:
            following = out[out.index(line):][:2000]
            if "MPI_COMM_WORLD) failed" in following:
                return line.strip()
    return None


def run_catalog(level="ci", only=None, write=False, reuse_baseline=False, device="cpu", kind=None,
                jobs=1, name_filter=None, baseline_from=None) -> int:
    mutants = select_mutants(only, device, kind)
    _baselines_seen.clear()
    distributed = [m for m in mutants if m.ranks > 1]
    one_process = [m for m in mutants if m.ranks == 1]
    rows = []
    if one_process:
        rows += _run_one_process(one_process, level, reuse_baseline, device, jobs, name_filter,
                                 baseline_from)
    if distributed:
        rows += _run_distributed(distributed, level, name_filter)
    detected = sum(r["detected"] == "yes" for r in rows)
    print()
    print(report.format_table(rows, ["mutant", "detected", "cases_run", "seconds", "case"]))
    print(f"\ndetected {detected}/{len(rows)} mutants")
    if write:
        baseline, fast_failures = _baselines_seen[0]  # the one-process one when both ran
        stem_device = device if one_process else "distributed"
        _write(rows, level, baseline, fast_failures, stem_device)
    return 0 if detected == len(rows) else 1


_baselines_seen = []


def _row(mutant, outcome) -> dict:
    row = {"mutant": mutant.name, "models": mutant.models, "visible": mutant.visible,
           "detected": "yes" if outcome.get("detected") else "NO",
           "case": outcome.get("case") or outcome.get("error") or "-",
           "cases_run": outcome.get("cases_run", 0), "seconds": outcome["seconds"],
           "divergence": outcome.get("divergence")}
    print(f"  {mutant.name:38s} {row['detected']:3s} after {row['cases_run']} "
          f"cases ({row['seconds']}s): {row['case']}", flush=True)
    return row


def _run_distributed(mutants, level, name_filter) -> list:
    rows = []
    for ranks, params in sorted({(m.ranks, m.params) for m in mutants}):
        passing, fast_failures = distributed_baseline(ranks, level, name_filter, params)
        _baselines_seen.append((len(passing), fast_failures))
        print(f"baseline: correct fast passes {len(passing)} cases of the distributed slice on "
              f"{ranks} ranks at level {level!r}, --params {params} ({fast_failures} excluded)")
        for mutant in (m for m in mutants if (m.ranks, m.params) == (ranks, params)):
            rows.append(_row(mutant, run_distributed_mutant(mutant, level, passing, name_filter)))
    return rows


def _run_one_process(mutants, level, reuse_baseline, device, jobs, name_filter, baseline_from):
    rows = []
    for params in sorted({m.params for m in mutants}, key=("impl", "chainer").index):
        chosen = [m for m in mutants if m.params == params]
        if baseline_from and params == "impl":
            passing, fast_failures = baseline_from_report(baseline_from, level, device, name_filter)
        else:
            passing, fast_failures = cached_baseline(level, reuse_baseline, device, name_filter, params)
        _baselines_seen.append((len(passing), fast_failures))
        order = interleaved(passing)
        print(f"baseline: correct fast passes {len(passing)} cases at level {level!r} on {device}, "
              f"--params {params} ({fast_failures} excluded)")
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = pool.map(lambda m: run_mutant(m.name, order, device, params=params), chosen)
            for mutant, outcome in zip(chosen, outcomes):
                rows.append(_row(mutant, outcome))
    return rows


def _write(rows, level, baseline, excluded, device="cpu") -> None:
    os.makedirs("reports", exist_ok=True)
    detected = sum(r["detected"] == "yes" for r in rows)
    stem = "mutants" if device == "cpu" else f"mutants-{device}"
    described = describe_device("cpu" if device == "distributed" else device)
    if device == "distributed":
        described["ranks"] = "3 (mpiexec -n 3; the distributed slice)"
    with open(os.path.join("reports", stem + ".json"), "w") as f:
        json.dump({"level": level, "device": described, "baseline_cases": baseline,
                   "excluded_cases": excluded, "detected": detected, "total": len(rows),
                   "mutants": rows}, f, indent=1)
    on = ", ".join(f"{k} {v}" for k, v in described.items() if k != "device")
    lines = ["# Mutant detection", "",
             f"Device `{device}` ({on}). Level `{level}`; the correct `fast` passes {baseline} cases "
             f"(the baseline; {excluded} cases where it disagrees with the reference are excluded).", "",
             f"**Detected {detected}/{len(rows)}.**", "",
             "| mutant | models | visible | detected | first case | cases run |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['mutant']} | {r['models']} | {r['visible']} | {r['detected']} | "
              f"`{r['case']}` | {r['cases_run']} |" for r in rows]
    with open(os.path.join("reports", stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
