"""Benchmarking one case of an implementation with the README API (fast, reference)."""

from __future__ import annotations

import numpy as np
import pytest

from .bytes_per_param import DTYPE_MODES, STATE_ARRAYS, bytes_per_param
from .devices import Device
from .plan import PARAM_SETS, Case
from .timing import bench_steps, describe_work
from .workloads import api_optimizer, host_arrays

STEP_BUDGET_S = 1.0  # timed seconds per case, beyond the warm-up and calibration steps


def footprint_bytes(case: Case) -> int:
    """Memory a case holds: host fp32 copies, parameters, gradients, master and state."""
    n = PARAM_SETS[case.param_set].n_params
    traffic = DTYPE_MODES[case.mode]
    resident = traffic["param_and_grad"] + STATE_ARRAYS[case.optimizer] * traffic["per_state"]
    return n * (8 + resident)


def group_name(case: Case) -> str:
    return f"{case.optimizer} {case.mode} {case.param_set}"


def import_impl(name: str):
    return pytest.importorskip(name, reason=f"the `{name}` package is not importable")


def sample(array, device: Device) -> np.ndarray:
    """The first elements of an array, on the host, as float64."""
    head = array.reshape(-1)[:1024]
    return np.asarray(head.get() if device.is_gpu else head, dtype=np.float64)


def bench_api_case(benchmark, impl_name: str, case: Case, device: Device, require_memory,
                   *, loss_scaling: bool = False) -> None:
    """Time `opt.update()` of `impl_name` on `case`, after checking the step does work."""
    impl = import_impl(impl_name)
    param_set = PARAM_SETS[case.param_set]
    require_memory(footprint_bytes(case), case.id)
    host = host_arrays(param_set)
    opt, params = api_optimizer(impl, case.optimizer, case.mode, host, device,
                                loss_scaling=loss_scaling)
    before = sample(params[0].data, device)
    benchmark.group = group_name(case)
    info = describe_work(impl_name, case.optimizer, case.mode, param_set,
                         bytes_per_param(case.optimizer, case.mode),
                         loss_scaling=loss_scaling)
    bench_steps(benchmark, opt.update, device, budget_s=STEP_BUDGET_S, info=info)
    assert not np.array_equal(sample(params[0].data, device), before), \
        f"{impl_name} {case.id}: the steps left the parameters unchanged"
