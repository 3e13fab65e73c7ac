"""torch.optim peers (foreach and fused) on the same device, dtype and shapes as `fast`.

Each peer's first step is checked (torch_peers.check_one_step): a peer that does no work is
dropped, one outside the error bound is timed and marked; the report lists every check."""

import pytest

from .api_bench import STEP_BUDGET_S, footprint_bytes, group_name
from .bytes_per_param import bytes_per_param
from .plan import PARAM_SETS
from .timing import bench_steps, describe_work
from .torch_peers import import_torch, torch_optimizer
from .workloads import host_arrays


@pytest.mark.plan("torch")
def test_torch_step(benchmark, case, device, require_memory, record_measurement):
    torch = import_torch(device)
    param_set = PARAM_SETS[case.param_set]
    require_memory(footprint_bytes(case), case.id)
    host = host_arrays(param_set)
    opt, check = torch_optimizer(case.optimizer, case.variant, case.mode, host, device)
    record_measurement(kind="peer-check", impl="torch", variant=case.variant,
                       optimizer=case.optimizer, mode=case.mode, param_set=case.param_set,
                       outcome=check.outcome, description=check.describe(),
                       checked=check.checked, worst=check.worst)
    if check.outcome == "no work":
        pytest.skip(f"dropped: torch {case.variant} {case.id} {check.describe()}")
    benchmark.group = group_name(case)
    info = describe_work("torch", case.optimizer, case.mode, param_set,
                         bytes_per_param(case.optimizer, case.mode), variant=case.variant,
                         torch_version=torch.__version__, peer_check=check.outcome)
    bench_steps(benchmark, opt.step, device, budget_s=STEP_BUDGET_S, info=info)
