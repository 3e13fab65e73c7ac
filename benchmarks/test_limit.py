"""The CPU's memory-bandwidth limit for each stream mix and size of the plan, and a STREAM
triad as the cross-check (benchmarks/limit.py), measured in the same run as the steps.

Each is sampled at the start and again at the end of the session (other work on a shared
machine comes and goes); the report takes the best sample, so a limit is the most the
machine was seen to give that mix in this run.
"""

import time

import pytest

from .limit import ConvertPass, MixPass, ReadPass, Triad, library, mix_of
from .plan import PARAM_SETS

WHEN = [pytest.param("start"), pytest.param("end", marks=pytest.mark.at_session_end)]
BUDGET_S = 0.3  # timed seconds per limit case
MIN_ROUNDS, MAX_ROUNDS = 5, 40


def _rounds(one_pass) -> int:
    start = time.perf_counter()
    one_pass()
    seconds = time.perf_counter() - start
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, BUDGET_S / max(seconds, 1e-9))))


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.plan("limit")
def test_limit(benchmark, case, device, when, require_memory):
    mix = mix_of(case.optimizer, case.mode)
    param_set = PARAM_SETS[case.param_set]
    require_memory(param_set.n_params * mix.bytes_per_param, case.id)
    one_pass = MixPass(mix, param_set.n_params)
    rounds = _rounds(one_pass)
    benchmark.group = "limit"
    benchmark.extra_info.update(kind="limit", mode=mix.mode, n_state=mix.n_state, mix=mix.key,
                                param_set=param_set.name, n_params=param_set.n_params,
                                bytes_moved=one_pass.bytes_moved, threads=device.threads,
                                when=when, device=device.kind)
    benchmark.pedantic(one_pass, rounds=rounds, iterations=1, warmup_rounds=1)
    assert one_pass.moved_every_stream(rounds + 2), "the limit kernel skipped work"


@pytest.mark.parametrize("when", WHEN)
def test_triad(benchmark, device, when, require_memory):
    if device.is_gpu:
        pytest.skip("the triad cross-checks the CPU limit")
    require_memory(3 * 4 * 64 * 2**20, "triad")
    triad = Triad()
    benchmark.group = "limit"
    benchmark.extra_info.update(kind="triad", variant=f"STREAM triad, {when}",
                                bytes_moved=triad.bytes_moved, threads=device.threads,
                                when=when, device=device.kind)
    benchmark.pedantic(triad, rounds=20, iterations=1, warmup_rounds=1)
    assert float(triad.a[-1]) == 2.0


@pytest.mark.parametrize("width", [2, 4, 8])
def test_the_read_pass_reads_every_word(width):
    """The loss-scaling floor's read pass (ReadPass) must read every word, whatever the
    streams and the chunk and stream edges: a larger word anywhere is its result."""
    import numpy as np

    dtype = {2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    n = 3 * 32768 + 17  # chunks, streams and a tail that do not divide evenly
    words = np.ones(n, dtype=dtype)
    for streams in (1, 2, 4, 8):
        for where in (0, 32767, 32768, 32768 + 32768 // streams, n - 18, n - 1):
            words[where] = 6
            found = library().stream_read_pass(width, streams, words.ctypes.data, n)
            words[where] = 1
            assert found == (3 if width == 8 else 6), (streams, where)
    read = ReadPass(mix_of("AdamW", "fp16"), n)
    read()
    assert read.bytes_moved == 2 * n


@pytest.mark.parametrize("n_state", [0, 1, 2, 3])
def test_the_f16c_floor_does_the_conversions_of_an_fp16_step(n_state):
    """ConvertPass, the F16C floor set beside the fp16 steps, must do every conversion it
    stands for, in every chunk and in the tail: its result equals NumPy doing them (float32
    additions, each state rounded to fp16 and read back, the parameter rounded on store)."""
    import numpy as np

    n = 2 * 32768 + 13  # two chunks, a tail shorter than eight lanes
    optimizer = {0: "SGD", 1: "MomentumSGD", 2: "AdamW", 3: "RMSpropGraves"}[n_state]
    floor = ConvertPass(mix_of(optimizer, "fp16"), n)
    rng = np.random.default_rng(n_state)
    for array in [floor.grad] + floor.rw:
        array[...] = rng.standard_normal(n).astype(np.float16).view(np.uint16)
    x = floor.grad.view(np.float16).astype(np.float32)
    param = floor.rw[0].view(np.float16).astype(np.float32) + x
    states = []
    for array in floor.rw[1:]:
        kept = (array.view(np.float16).astype(np.float32) + x).astype(np.float16)
        states.append(kept)
        param = param + kept.astype(np.float32)
    floor()
    assert np.array_equal(floor.rw[0].view(np.float16), param.astype(np.float16))
    for array, kept in zip(floor.rw[1:], states):
        assert np.array_equal(array.view(np.float16), kept)
    assert floor.bytes_moved == n * mix_of(optimizer, "fp16").bytes_per_param
    with pytest.raises(ValueError, match="fp16 mix"):
        ConvertPass(mix_of("AdamW", "fp32"), 16)
