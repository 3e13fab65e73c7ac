"""`fast` with dynamic loss scaling on; the report sets it against the same case without.

Gradients stay finite, so every step runs the non-finite check, the unscaling and the
full update: the difference to the plain step is the cost of loss scaling.
"""

import pytest

from .api_bench import bench_api_case


@pytest.mark.plan("fast+loss-scaling")
def test_fast_step_with_loss_scaling(benchmark, case, device, require_memory):
    bench_api_case(benchmark, "fast", case, device, require_memory, loss_scaling=True)
