"""Interleaved timing of the target comparisons: fast, torch fused and the per-array baseline
step in turn, round after round, so load from other work on a shared machine falls on all
of them alike (AdamW in fp32 and in fp16 without a master, on one 16M tensor and on
ResNet-50's shapes; the per-array baseline in fp32 only); likewise fast with and without
dynamic loss scaling, in every dtype mode. Torch fused steps only after its one-step
check passed (torch_peers.check_one_step). On the CPU the limit's pass (and in fp16 the
F16C floor's, limit.ConvertPass) runs in the same rounds, LIMIT_PASSES_PER_ROUND times back
to back. The order rotates from round to round, so each implementation goes first (after the
others' cache traffic) equally often.

A speed-up is the median over rounds of the two step times' ratio within the round: a
paired statistic, so a slow spell on the machine moves both times of a round together.
The best-of-rounds ratio is recorded beside it. The report's targets use these speed-ups
where they were measured.
"""

import time

import numpy as np
import pytest

from .api_bench import footprint_bytes, import_impl
from .bytes_per_param import bytes_per_param, grad_read_floor
from .limit import ConvertPass, MixPass, ReadPass, mix_of
from .per_array_baseline import PerArrayOptimizer
from .plan import PARAM_SETS, Case
from .timing import LIMIT_PASSES_PER_ROUND
from .torch_peers import import_torch, torch_optimizer
from .workloads import STORAGE_DTYPE, api_optimizer, device_arrays, host_arrays

ROUNDS = 40
CASES = [Case("AdamW", "fp32", "flat-16M"), Case("AdamW", "fp32", "resnet50"),
         Case("AdamW", "fp16", "flat-16M"), Case("AdamW", "fp16", "resnet50")]
# NumPy steps fp16 arrays element by element (seconds a step): no per-array baseline there.
PER_ARRAY_MODES = ("fp32",)


def _time_step(step, device) -> float:
    start = time.perf_counter()
    step()
    device.synchronize()
    return time.perf_counter() - start


def _interleaved_times(steps: dict, device, best_of: dict | None = None) -> dict:
    """ROUNDS step times of each of ``steps`` (name -> step), in rotating order. A name in
    ``best_of`` (name -> k) runs k times back to back in its turn, and its best counts."""
    best_of = best_of or {}
    for step in steps.values():
        _time_step(step, device)  # warm-up: state allocation
    names = list(steps)
    times = {name: [] for name in names}
    for round_index in range(ROUNDS):
        first = round_index % len(names)
        for name in names[first:] + names[:first]:
            times[name].append(min(_time_step(steps[name], device)
                                   for _ in range(best_of.get(name, 1))))
    return {name: np.asarray(values) for name, values in times.items()}


def paired_speedup(peer_times, fast_times) -> float:
    """Median over rounds of peer time / fast time within the round."""
    return float(np.median(np.asarray(peer_times) / np.asarray(fast_times)))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_interleaved_ratios(case, device, require_memory, record_measurement):
    fast = import_impl("fast")
    import_torch(device)
    require_memory(3 * footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    torch_fused, check = torch_optimizer(case.optimizer, "fused", case.mode, host, device)
    if check.outcome != "ok":
        pytest.skip(f"torch fused {case.id} failed its one-step check: {check.describe()}")
    steps = {"fast": api_optimizer(fast, case.optimizer, case.mode, host, device)[0].update,
             "torch-fused": torch_fused.step}
    if case.mode in PER_ARRAY_MODES:
        dtype = STORAGE_DTYPE[case.mode]
        baseline = PerArrayOptimizer(case.optimizer, case.mode,
                                     device_arrays(host.params, dtype, device),
                                     device_arrays(host.grads, dtype, device), device.xp)
        steps["per-array"] = baseline.step
    passes = {}
    if not device.is_gpu:  # the limit, sampled in the same rounds under the same load
        # (these cases are far larger than the caches); in fp16, the F16C floor beside it
        mix, n = mix_of(case.optimizer, case.mode), PARAM_SETS[case.param_set].n_params
        passes["limit"] = MixPass(mix, n)
        if case.mode == "fp16":
            passes["f16c-floor"] = ConvertPass(mix, n)
    times = _interleaved_times(steps | passes, device,
                               best_of={name: LIMIT_PASSES_PER_ROUND for name in passes})
    limit_s = times.pop("limit", None)
    f16c_floor_s = times.pop("f16c-floor", None)
    best = {name: float(values.min()) for name, values in times.items()}
    median = {name: float(np.median(values)) for name, values in times.items()}
    peers = [name for name in times if name != "fast"]
    param_set = PARAM_SETS[case.param_set]
    record_measurement(kind="interleaved", optimizer=case.optimizer, mode=case.mode,
                       param_set=case.param_set, n_params=param_set.n_params,
                       bytes_per_param=bytes_per_param(case.optimizer, case.mode),
                       rounds=ROUNDS, best_s=best, median_s=median,
                       limit_s_in_rounds=None if limit_s is None else float(limit_s.min()),
                       f16c_floor_s=None if f16c_floor_s is None else float(f16c_floor_s.min()),
                       speedup={name: paired_speedup(times[name], times["fast"]) for name in peers},
                       best_speedup={name: best[name] / best["fast"] for name in peers})


@pytest.mark.plan("fast+loss-scaling")
def test_interleaved_loss_scaling(case, device, require_memory, record_measurement):
    """fast with and without dynamic loss scaling, stepping in turn."""
    fast = import_impl("fast")
    require_memory(2 * footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    steps = {scaled: api_optimizer(fast, case.optimizer, case.mode, host, device,
                                   loss_scaling=scaled)[0].update
             for scaled in (False, True)}
    if not device.is_gpu:  # the least a check must add: one read of as many gradient bytes
        steps["read"] = ReadPass(mix_of(case.optimizer, case.mode),
                                 PARAM_SETS[case.param_set].n_params)
    times = _interleaved_times(steps, device)
    read = times.pop("read", None)
    record_measurement(kind="interleaved-loss-scaling", optimizer=case.optimizer,
                       mode=case.mode, param_set=case.param_set, rounds=ROUNDS,
                       floor=grad_read_floor(case.optimizer, case.mode),
                       read_floor=None if read is None else paired_speedup(read, times[False]),
                       without_s=float(times[False].min()), with_s=float(times[True].min()),
                       overhead=paired_speedup(times[True], times[False]) - 1)
