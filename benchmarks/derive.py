"""Figures derived from one run's pytest-benchmark results: throughput, ratios, overheads.

Step time is the fastest round divided by the steps in a round (`min` is the figure least
disturbed by other work on a shared machine; the median is kept alongside). Ratios compare
entries of the same run: "x torch fused" is torch's step time over fast's, so a value
above 1 means fast is faster.

Every step is set against its limit: on the CPU the bandwidth measured for its own stream
mix and size (benchmarks/limit.py), on the GPU the device copy bandwidth. A step above
100% of its limit is a measurement error (the limit or the step did not measure what it
claims), and the report flags it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .bytes_per_param import STATE_ARRAYS


@dataclass(frozen=True)
class StepFigures:
    impl: str  # fast, torch, per-array, reference
    variant: str  # foreach / fused for torch peers
    optimizer: str
    mode: str
    param_set: str
    loss_scaling: bool
    n_params: int
    n_arrays: int
    bytes_per_param: int
    rounds: int
    step_s: float
    median_step_s: float
    params_per_s: float
    gb_per_s: float
    limit_gbps: float | None
    limit_fraction: float | None
    peer_check: str = ""  # torch peers: what the one-step check found

    @property
    def peer_key(self) -> str:
        return "-".join(part for part in (self.impl, self.variant) if part)

    @property
    def over_limit(self) -> bool:
        return self.limit_fraction is not None and self.limit_fraction > 1.0


def copy_bandwidth_gbps(benchmarks: list[dict]) -> dict[str, float]:
    """Copy bandwidth (GB/s, bytes read + written) of every copy variant measured (GPU)."""
    return {
        bench["extra_info"]["variant"]:
            bench["extra_info"]["bytes_moved"] / bench["stats"]["min"] / 1e9
        for bench in benchmarks if bench["extra_info"].get("kind") == "copy"
    }


def triad_gbps(benchmarks: list[dict]) -> float | None:
    """The best STREAM triad sample (GB/s, 12 bytes per element), or None."""
    samples = [bench["extra_info"]["bytes_moved"] / bench["stats"]["min"] / 1e9
               for bench in benchmarks if bench["extra_info"].get("kind") == "triad"]
    return max(samples) if samples else None


def limit_key(mode: str, n_state: int, n_params: int) -> tuple:
    return (mode, n_state, n_params)


def mix_limits_gbps(benchmarks: list[dict]) -> dict[tuple, float]:
    """The best sample of each measured (mode, state arrays, size) mix, in GB/s."""
    limits: dict[tuple, float] = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("kind") != "limit":
            continue
        key = limit_key(info["mode"], info["n_state"], info["n_params"])
        gbps = info["bytes_moved"] / bench["stats"]["min"] / 1e9
        limits[key] = max(gbps, limits.get(key, 0.0))
    return limits


class Limits:
    """The limit a step is measured against: its mix's (CPU), else the copy bandwidth (GPU)."""

    def __init__(self, mixes: dict[tuple, float], copy_gbps: float | None):
        self.mixes, self.copy_gbps = mixes, copy_gbps

    def gbps(self, optimizer: str, mode: str, n_params: int) -> float | None:
        key = limit_key(mode, STATE_ARRAYS[optimizer], n_params)
        return self.mixes.get(key, self.copy_gbps)

    def step_s(self, optimizer: str, mode: str, n_params: int, bytes_per_param: int):
        """The shortest step the limit allows, or None where none was measured."""
        gbps = self.gbps(optimizer, mode, n_params)
        return None if not gbps else n_params * bytes_per_param / (gbps * 1e9)


def _best(*gbps) -> float | None:
    """The highest of the limits measured for one step (session samples, in-round samples)."""
    measured = [g for g in gbps if g]
    return max(measured) if measured else None


def fraction(gb_per_s: float, limit: float | None) -> float | None:
    return gb_per_s / limit if limit else None


def step_figures(benchmarks: list[dict], limits: Limits) -> list[StepFigures]:
    figures = []
    for bench in benchmarks:
        info, stats = bench["extra_info"], bench["stats"]
        if info.get("kind") != "step":
            continue
        step_s = stats["min"] / info["steps_per_round"]
        gb_per_s = info["n_params"] * info["bytes_per_param"] / step_s / 1e9
        limit = _best(limits.gbps(info["optimizer"], info["mode"], info["n_params"]),
                      info.get("limit_gbps_in_rounds"))
        figures.append(StepFigures(
            impl=info["impl"], variant=info.get("variant", ""), optimizer=info["optimizer"],
            mode=info["mode"], param_set=info["param_set"],
            loss_scaling=bool(info.get("loss_scaling", False)),
            n_params=info["n_params"], n_arrays=info["n_arrays"],
            bytes_per_param=info["bytes_per_param"], rounds=stats["rounds"],
            step_s=step_s, median_step_s=stats["median"] / info["steps_per_round"],
            params_per_s=info["n_params"] / step_s, gb_per_s=gb_per_s,
            limit_gbps=limit, limit_fraction=fraction(gb_per_s, limit),
            peer_check=info.get("peer_check", ""),
        ))
    return figures


PEERS = ("torch-fused", "torch-foreach", "per-array", "reference")


@dataclass(frozen=True)
class Comparison:
    """fast on one case, and how many times faster it is than each peer measured."""

    fast: StepFigures
    speedup: dict  # peer key -> peer step time / fast step time
    loss_scaling_overhead: float | None  # (with - without) / without


def compare(figures: list[StepFigures]) -> list[Comparison]:
    def case(f: StepFigures):
        return (f.optimizer, f.mode, f.param_set)

    # A peer that failed its one-step check (torch_peers.check_one_step) is no peer.
    plain = {(f.peer_key, case(f)): f for f in figures
             if not f.loss_scaling and f.peer_check in ("", "ok")}
    scaled = {case(f): f for f in figures if f.impl == "fast" and f.loss_scaling}
    comparisons = []
    for f in figures:
        if f.impl != "fast" or f.loss_scaling:
            continue
        speedup = {peer: plain[(peer, case(f))].step_s / f.step_s
                   for peer in PEERS if (peer, case(f)) in plain}
        with_scaling = scaled.get(case(f))
        overhead = with_scaling.step_s / f.step_s - 1 if with_scaling else None
        comparisons.append(Comparison(f, speedup, overhead))
    return comparisons


def comparison_dict(comparison: Comparison) -> dict:
    return {**asdict(comparison.fast), "speedup": comparison.speedup,
            "loss_scaling_overhead": comparison.loss_scaling_overhead}
