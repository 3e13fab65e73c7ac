"""Evidence that a step of `fast` on the GPU does not wait for the device.

A spin kernel keeps the GPU busy for SPIN_S seconds on the legacy default stream, which
every blocking stream waits for. The host then issues one optimizer step with dynamic loss
scaling (non-finite check, unscaling, skip decision and update all launched). If the step
synchronised with the device, issuing it would take at least as long as the spin; without
synchronisation the host is done long before, and the stream is still busy.

Only one step is issued: the next step settles this one first (its rule counters, loss-scale
schedule and warning depend on the check's outcome; Chainer's API hands the loss scale to
backward as a Python float), so it waits for this step's check kernel (see docs/fast.md).
"""

import time

import pytest

from .api_bench import footprint_bytes, import_impl
from .plan import PARAM_SETS, Case
from .workloads import api_optimizer, host_arrays

SPIN_S = 1.0
CASES = [Case("AdamW", "fp16+master", "resnet50"), Case("Adam", "fp16+master", "flat-16M")]

_SPIN_SOURCE = r"""
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


def _spin(cupy, seconds: float) -> None:
    clock_khz = cupy.cuda.runtime.getDeviceProperties(0)["clockRate"]
    kernel = cupy.RawKernel(_SPIN_SOURCE, "spin")
    with cupy.cuda.Stream.null:
        kernel((1,), (1,), (cupy.int64(int(seconds * clock_khz * 1e3)),))


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fast_step_issues_no_host_sync(case, device, require_memory, record_measurement):
    if not device.is_gpu:
        pytest.skip("host synchronisation is a GPU question (--device gpu)")
    fast = import_impl("fast")
    cupy = device.xp
    require_memory(footprint_bytes(case), case.id)
    opt, _params = api_optimizer(fast, case.optimizer, case.mode,
                                 host_arrays(PARAM_SETS[case.param_set]), device,
                                 loss_scaling=True)
    for _ in range(2):  # state allocation, kernel compilation
        opt.update()
    cupy.cuda.Device().synchronize()

    _spin(cupy, SPIN_S)
    start = time.perf_counter()
    opt.update()
    issue_s = time.perf_counter() - start
    busy_after_issue = not cupy.cuda.Stream.null.done
    cupy.cuda.Device().synchronize()
    total_s = time.perf_counter() - start

    record_measurement(kind="host-sync", impl="fast", optimizer=case.optimizer,
                       mode=case.mode, param_set=case.param_set, spin_s=SPIN_S,
                       steps=1, issue_s=issue_s, device_busy_after_issue=busy_after_issue,
                       total_s=total_s)
    assert issue_s < 0.5 * SPIN_S and busy_after_issue, (
        f"one step took {issue_s:.3f} s to issue behind a {SPIN_S} s kernel: it waits for the device")
