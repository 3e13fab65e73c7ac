"""The per-array baseline (Chainer's way: one NumPy pass or one kernel per array)."""

import pytest

import numpy as np

from .api_bench import STEP_BUDGET_S, footprint_bytes, group_name
from .bytes_per_param import bytes_per_param
from .per_array_baseline import PerArrayOptimizer
from .plan import PARAM_SETS
from .timing import bench_steps, describe_work
from .workloads import STORAGE_DTYPE, device_arrays, host_arrays


@pytest.mark.plan("per-array")
def test_per_array_step(benchmark, case, device, require_memory):
    param_set = PARAM_SETS[case.param_set]
    require_memory(2 * footprint_bytes(case), case.id)  # its temporaries are full size
    host = host_arrays(param_set)
    dtype = STORAGE_DTYPE[case.mode]
    params = device_arrays(host.params, dtype, device)
    grads = device_arrays(host.grads, dtype, device)
    opt = PerArrayOptimizer(case.optimizer, case.mode, params, grads, device.xp)
    benchmark.group = group_name(case)
    info = describe_work("per-array", case.optimizer, case.mode, param_set,
                         bytes_per_param(case.optimizer, case.mode))
    before = np.array(params[0].reshape(-1)[:1024].tolist())
    bench_steps(benchmark, opt.step, device, budget_s=STEP_BUDGET_S, info=info)
    assert not np.array_equal(np.array(params[0].reshape(-1)[:1024].tolist()), before)
