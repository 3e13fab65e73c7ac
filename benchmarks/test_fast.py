"""`fast`'s step time on every optimizer family, dtype mode and parameter set of the plan."""

import pytest

from .api_bench import bench_api_case


@pytest.mark.plan("fast")
def test_fast_step(benchmark, case, device, require_memory):
    bench_api_case(benchmark, "fast", case, device, require_memory)
