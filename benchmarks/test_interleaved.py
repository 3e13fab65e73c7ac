"""Interleaved timing of the target comparisons: fast, torch fused and the per-array baseline
step in turn, round after round, so load from other work on a shared machine falls on all
of them alike; likewise fast with and without dynamic loss scaling. The report's targets
use these ratios where they were measured.
"""

import time

import numpy as np
import pytest

from .api_bench import footprint_bytes, import_impl
from .per_array_baseline import PerArrayOptimizer
from .plan import PARAM_SETS, Case
from .torch_peers import import_torch, torch_optimizer
from .workloads import STORAGE_DTYPE, api_optimizer, device_arrays, host_arrays

ROUNDS = 16
CASES = [Case("AdamW", "fp32", "flat-16M"), Case("AdamW", "fp32", "resnet50")]


def _time_step(step, device) -> float:
    start = time.perf_counter()
    step()
    device.synchronize()
    return time.perf_counter() - start


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_interleaved_ratios(case, device, require_memory, record_measurement):
    fast = import_impl("fast")
    import_torch(device)
    require_memory(3 * footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    steps = {"fast": api_optimizer(fast, case.optimizer, case.mode, host, device)[0].update,
             "torch-fused": torch_optimizer(case.optimizer, "fused", case.mode, host,
                                            device).step}
    dtype = STORAGE_DTYPE[case.mode]
    baseline = PerArrayOptimizer(case.optimizer, case.mode,
                                 device_arrays(host.params, dtype, device),
                                 device_arrays(host.grads, dtype, device), device.xp)
    steps["per-array"] = baseline.step
    times = {name: [] for name in steps}
    for step in steps.values():
        _time_step(step, device)  # warm-up: state allocation
    for _ in range(ROUNDS):
        for name, step in steps.items():
            times[name].append(_time_step(step, device))
    best = {name: min(values) for name, values in times.items()}
    median = {name: float(np.median(values)) for name, values in times.items()}
    record_measurement(kind="interleaved", optimizer=case.optimizer, mode=case.mode,
                       param_set=case.param_set, rounds=ROUNDS, best_s=best, median_s=median,
                       speedup={name: best[name] / best["fast"] for name in best
                                if name != "fast"})


@pytest.mark.plan("fast+loss-scaling")
def test_interleaved_loss_scaling(case, device, require_memory, record_measurement):
    """fast with and without dynamic loss scaling, stepping in turn."""
    fast = import_impl("fast")
    require_memory(2 * footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    steps = {scaled: api_optimizer(fast, case.optimizer, case.mode, host, device,
                                   loss_scaling=scaled)[0].update
             for scaled in (False, True)}
    times = {scaled: [] for scaled in steps}
    for step in steps.values():
        _time_step(step, device)
    for _ in range(ROUNDS):
        for scaled, step in steps.items():
            times[scaled].append(_time_step(step, device))
    without, with_scaling = min(times[False]), min(times[True])
    record_measurement(kind="interleaved-loss-scaling", optimizer=case.optimizer,
                       mode=case.mode, param_set=case.param_set, rounds=ROUNDS,
                       without_s=without, with_s=with_scaling,
                       overhead=with_scaling / without - 1)
