"""The reference's step time at a small size, to show the scale of `fast`'s speed-up."""

import pytest

from .api_bench import bench_api_case


@pytest.mark.plan("reference")
def test_reference_step(benchmark, case, device, require_memory):
    if device.is_gpu:
        pytest.skip("the reference runs on the CPU only")
    bench_api_case(benchmark, "reference", case, device, require_memory)
