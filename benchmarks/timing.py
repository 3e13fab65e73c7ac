"""Timing optimizer steps with pytest-benchmark.

One benchmark round is `steps_per_round` steps followed by a device synchronisation, so
GPU rounds measure completed work and are long enough to dwarf the launch of the first
step. On the CPU a round is one step. The number of rounds is chosen from an untimed
calibration step to fit a time budget, within [min_rounds, max_rounds].
"""

from __future__ import annotations

import math
import time
from typing import Callable

from .devices import Device
from .param_sets import ParamSet

GPU_MIN_ROUND_S = 0.02


def time_once(step: Callable[[], None], device: Device) -> float:
    start = time.perf_counter()
    step()
    device.synchronize()
    return time.perf_counter() - start


def bench_steps(benchmark, step: Callable[[], None], device: Device, *, budget_s: float,
                min_rounds: int = 3, max_rounds: int = 30, info: dict) -> None:
    """Benchmark `step` (one optimizer step) after a warm-up step; record `info`.

    `info` names what ran (impl, variant, optimizer, mode, param_set, ...); it is stored in
    the benchmark's extra_info, from which the report derives params/s, GB/s and ratios.
    On the CPU the limit kernel, with the step's stream mix and size, is also sampled beside
    the step's own rounds, so that it sees the same load from other work and the same caches
    (extra_info limit_gbps_in_rounds, the best of those passes): for steps too large for the
    caches, LIMIT_PASSES_PER_ROUND passes before every timed round (untimed for the step) and
    after the last one, so that each round is bracketed by passes; for
    steps that stay in the caches between rounds (where a pass between rounds would evict the
    step's arrays), as many passes right after the rounds, on caches as warm as the step's.
    """
    first_s = time_once(step, device)  # state allocation and any compilation
    # The first step is the calibration only when it alone exceeds the budget (then
    # min_rounds follow anyway); otherwise it may be mostly set-up cost.
    seconds = first_s if first_s > budget_s else time_once(step, device)
    steps_per_round = 1
    if device.is_gpu:
        steps_per_round = max(1, math.ceil(GPU_MIN_ROUND_S / max(seconds, 1e-9)))

    def one_round() -> None:
        for _ in range(steps_per_round):
            step()
        device.synchronize()

    rounds = int(min(max_rounds, max(min_rounds, budget_s / (seconds * steps_per_round))))
    benchmark.extra_info.update(info, steps_per_round=steps_per_round, device=device.kind,
                                threads=device.threads)
    between_rounds = samples_limit_in_rounds(info, device)
    limit = LimitInRounds(info) if not device.is_gpu else None
    benchmark.pedantic(one_round, setup=limit if between_rounds else None, rounds=rounds, iterations=1,
                       warmup_rounds=0)
    if limit is not None:
        if between_rounds:
            limit()  # after the last round too: every round has passes on both sides
        else:
            limit.one_pass()  # warms the caches with the limit's arrays
            for _ in range(rounds):
                limit()
        benchmark.extra_info["limit_gbps_in_rounds"] = limit.best_gbps()


# The limit is the best of its passes and a step's figure the best of its rounds: both are
# estimates of a maximum on a machine whose bandwidth varies from round to round, so the
# limit's must be the tighter one. A step that runs at its limit (fast's AdamW fp32 at 100M
# moves the same bytes as the limit's loop) ties it, and the best of k samples beats the best
# of j samples of the same distribution with probability k / (k + j): k rounds against
# LIMIT_PASSES_PER_ROUND * (k + 1) passes put such a step above its limit about once in
# 1 + LIMIT_PASSES_PER_ROUND runs. The passes come before every round and after the last,
# because the bandwidth left to the run changes within a second. (The runs that set these
# numbers: docs/performance.md, "What `make bench` measures".)
LIMIT_PASSES_PER_ROUND = 6

# Below this many bytes moved a step's arrays stay in the caches between rounds (the
# 2-core EPYC has 32 MiB of L3); a limit pass between its rounds would evict them and
# change what is measured, so such steps sample the limit right after their rounds.
IN_ROUNDS_MIN_BYTES = 64 * 2**20


def samples_limit_in_rounds(info: dict, device: Device) -> bool:
    return not device.is_gpu and info["n_params"] * info["bytes_per_param"] >= IN_ROUNDS_MIN_BYTES


class LimitInRounds:
    """LIMIT_PASSES_PER_ROUND timed passes of the limit kernel (benchmarks/limit.py) for a
    step's mix and size, run as pytest-benchmark's untimed set-up of every round."""

    def __init__(self, info: dict):
        from .limit import MixPass, mix_of

        self.one_pass = MixPass(mix_of(info["optimizer"], info["mode"]), info["n_params"])
        self.seconds: list[float] = []

    def __call__(self) -> None:
        for _ in range(LIMIT_PASSES_PER_ROUND):
            start = time.perf_counter()
            self.one_pass()
            self.seconds.append(time.perf_counter() - start)

    def best_gbps(self) -> float:
        return self.one_pass.bytes_moved / min(self.seconds) / 1e9


def describe_work(impl: str, optimizer: str, mode: str, param_set: ParamSet,
                  bytes_per_param: int, variant: str = "", **more) -> dict:
    """The extra_info of an optimizer-step benchmark."""
    return {
        "kind": "step",
        "impl": impl,
        "variant": variant,
        "optimizer": optimizer,
        "mode": mode,
        "param_set": param_set.name,
        "n_params": param_set.n_params,
        "n_arrays": param_set.n_arrays,
        "bytes_per_param": bytes_per_param,
        **more,
    }
