"""Figures derived from one run's pytest-benchmark results: throughput, ratios, overheads.

Step time is the fastest round divided by the steps in a round (`min` is the figure least
disturbed by other work on a shared machine; the median is kept alongside). Ratios compare
entries of the same run: "x torch fused" is torch's step time over fast's, so a value
above 1 means fast is faster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    copy_fraction: float | None

    @property
    def peer_key(self) -> str:
        return "-".join(part for part in (self.impl, self.variant) if part)


def copy_bandwidth_gbps(benchmarks: list[dict]) -> dict[str, float]:
    """Copy bandwidth (GB/s, bytes read + written) of every copy variant measured."""
    return {
        bench["extra_info"]["variant"]:
            bench["extra_info"]["bytes_moved"] / bench["stats"]["min"] / 1e9
        for bench in benchmarks if bench["extra_info"].get("kind") == "copy"
    }


def step_figures(benchmarks: list[dict], copy_gbps: float | None) -> list[StepFigures]:
    figures = []
    for bench in benchmarks:
        info, stats = bench["extra_info"], bench["stats"]
        if info.get("kind") != "step":
            continue
        step_s = stats["min"] / info["steps_per_round"]
        gb_per_s = info["n_params"] * info["bytes_per_param"] / step_s / 1e9
        figures.append(StepFigures(
            impl=info["impl"], variant=info.get("variant", ""), optimizer=info["optimizer"],
            mode=info["mode"], param_set=info["param_set"],
            loss_scaling=bool(info.get("loss_scaling", False)),
            n_params=info["n_params"], n_arrays=info["n_arrays"],
            bytes_per_param=info["bytes_per_param"], rounds=stats["rounds"],
            step_s=step_s, median_step_s=stats["median"] / info["steps_per_round"],
            params_per_s=info["n_params"] / step_s, gb_per_s=gb_per_s,
            copy_fraction=gb_per_s / copy_gbps if copy_gbps else None,
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

    plain = {(f.peer_key, case(f)): f for f in figures if not f.loss_scaling}
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
