"""Run the suite in worker processes: fixed chunks of cases, results in case order.

The cases are cut into chunks of `CHUNK` consecutive cases whatever the number of workers;
each worker loads the target once and returns each chunk's results; the chunks come back in
order (`Pool.imap`), so the results, the progress bar, the verdict and every file written
from them are the same for any number of workers. Workers are started with `spawn`: the
implementation may hold threads (OpenMP) or a GPU context that a forked child cannot use.
"""
from __future__ import annotations

import multiprocessing
import os

from .runner import Progress, run_case, run_cases
from .target import Target

#: Cases per task handed to a worker.
CHUNK = 8

_worker = {}


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def run_suite(target: Target, cases: list, jobs: int = 1, progress=False, fail_fast=False,
              drift=False, require_all=False) -> list:
    """Every case's CaseResult, in case order, from `jobs` worker processes (in this process
    when one worker would do); stops after the first failure when fail_fast."""
    chunks = [cases[i:i + CHUNK] for i in range(0, len(cases), CHUNK)]
    workers = min(jobs, len(chunks))
    if workers <= 1:
        impl, xp = target.load()
        return run_cases(impl, cases, xp=xp, progress=progress, fail_fast=fail_fast,
                         fp16_compute=target.fp16_compute, drift=drift, require_all=require_all,
                         params=target.params)
    target.load()  # a usage error is reported here, once, not by every worker
    bar = Progress(len(cases), progress, require_all)
    results = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(target, drift)) as pool:
        for chunk_results in pool.imap(_run_chunk, chunks):
            for result in chunk_results:
                results.append(result)
                bar.add(result)
                if fail_fast and result.failed(require_all):
                    bar.stopped_early()
                    pool.terminate()
                    return results
    return results


def _start_worker(target: Target, drift: bool) -> None:
    impl, xp = target.load()
    _worker.update(impl=impl, xp=xp, fp16_compute=target.fp16_compute, drift=drift, params=target.params)


def _run_chunk(cases: list) -> list:
    return [run_case(_worker["impl"], case, _worker["xp"], _worker["fp16_compute"],
                     _worker["drift"], params=_worker["params"]) for case in cases]
