"""The GPU's device-to-device copy bandwidth, measured in the same run as the optimizer
steps: the GPU's limit. (The CPU's limit is measured with each step's own stream mix by a
kernel built like fast's: test_limit.py.)

It is sampled at the start and again at the end of the session (other work on a shared
machine comes and goes); the report uses the best sample.
"""

import pytest

from .bandwidth import copy_arrays

COPY_ROUNDS = 30
WHEN = [pytest.param("start"), pytest.param("end", marks=pytest.mark.at_session_end)]


def _record(benchmark, source, variant: str, threads: int) -> None:
    benchmark.group = "copy bandwidth"
    benchmark.extra_info.update(kind="copy", variant=variant, threads=threads,
                                bytes_moved=2 * source.nbytes)


@pytest.mark.parametrize("when", WHEN)
def test_gpu_copy(benchmark, device, when):
    if not device.is_gpu:
        pytest.skip("GPU copy bandwidth is measured in GPU runs (--device gpu)")
    source, destination = copy_arrays(device)

    def copy() -> None:
        destination.data.copy_from_device(source.data, source.nbytes)
        device.synchronize()

    _record(benchmark, source, f"cupy device-to-device, {when}", 0)
    benchmark.extra_info["device"] = device.kind
    benchmark.pedantic(copy, rounds=COPY_ROUNDS, iterations=1, warmup_rounds=1)
    assert bool((destination[:: 1 << 20] == 1).all())
