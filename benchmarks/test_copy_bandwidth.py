"""The copy bandwidth of the device, measured in the same run as the optimizer steps.

It is sampled at the start and again at the end of the session (other work on a shared
machine comes and goes); the report uses the best sample.
"""

import pytest

from .bandwidth import ThreadedCopy, copy_arrays

COPY_ROUNDS = 30
WHEN = [pytest.param("start"), pytest.param("end", marks=pytest.mark.at_session_end)]


def _record(benchmark, source, variant: str, threads: int) -> None:
    benchmark.group = "copy bandwidth"
    benchmark.extra_info.update(kind="copy", variant=variant, threads=threads,
                                bytes_moved=2 * source.nbytes)


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("threads", ["one", "all"])
def test_cpu_copy(benchmark, device, threads, when):
    if device.is_gpu:
        pytest.skip("CPU copy bandwidth is measured in CPU runs")
    n_threads = 1 if threads == "one" else device.threads
    source, destination = copy_arrays(device)
    copy = ThreadedCopy(source, destination, n_threads)
    _record(benchmark, source, f"numpy, {n_threads} thread(s), {when}", n_threads)
    benchmark.extra_info["device"] = device.kind
    try:
        benchmark.pedantic(copy, rounds=COPY_ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        copy.close()
    assert (destination[:: 1 << 20] == 1).all()


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
