"""A step's peak extra memory against the bytes of parameters, fp32 masters and state.

`fast` is measured with and without dynamic loss scaling; the per-array baseline, whose
NumPy expressions allocate full-size temporaries, is measured alongside for contrast.
"""

import pytest

from .api_bench import footprint_bytes, import_impl
from .memory import peak_extra_bytes
from .per_array_baseline import PerArrayOptimizer
from .plan import PARAM_SETS
from .workloads import (STORAGE_DTYPE, api_optimizer, device_arrays, host_arrays,
                        parameter_and_state_bytes)


def _record(record_measurement, impl, case, held_bytes, extra, **more):
    largest = max(value for value in extra.values() if value is not None)
    record_measurement(kind="memory", impl=impl, optimizer=case.optimizer, mode=case.mode,
                       param_set=case.param_set, held_bytes=held_bytes,
                       peak_extra_bytes=largest, extra_fraction=largest / held_bytes,
                       **extra, **more)


@pytest.mark.plan("fast-memory")
@pytest.mark.parametrize("loss_scaling", [False, True], ids=["plain", "loss-scaling"])
def test_fast_step_memory(case, loss_scaling, device, require_memory, record_measurement):
    fast = import_impl("fast")
    require_memory(footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    opt, params = api_optimizer(fast, case.optimizer, case.mode, host, device,
                                loss_scaling=loss_scaling)
    opt.update()  # allocates the state; later steps must not allocate much more
    held = parameter_and_state_bytes(params)
    extra = peak_extra_bytes(opt.update, device)
    _record(record_measurement, "fast", case, held, extra, loss_scaling=loss_scaling)


@pytest.mark.plan("per-array-memory")
def test_per_array_step_memory(case, device, require_memory, record_measurement):
    require_memory(2 * footprint_bytes(case), case.id)
    host = host_arrays(PARAM_SETS[case.param_set])
    dtype = STORAGE_DTYPE[case.mode]
    params = device_arrays(host.params, dtype, device)
    opt = PerArrayOptimizer(case.optimizer, case.mode, params,
                            device_arrays(host.grads, dtype, device), device.xp)
    opt.step()
    held = sum(p.nbytes for p in params) + sum(
        a.nbytes for state in opt.states for a in state.values())
    if opt.masters is not None:
        held += sum(m.nbytes for m in opt.masters)
    extra = peak_extra_bytes(opt.step, device)
    _record(record_measurement, "per-array", case, held, extra, loss_scaling=False)
