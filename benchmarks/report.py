"""Writes reports/benchmarks/<machine>.json and .md at the end of a benchmark session.

The JSON is pytest-benchmark's own format (so it can serve as the baseline of
`--benchmark-compare`), plus `machine`, `derived` (throughput, ratios, target outcomes)
and `measurements` (memory and host-synchronisation evidence). The Markdown is the same
content as tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from .derive import (Comparison, Limits, compare, comparison_dict, copy_bandwidth_gbps,
                     mix_limits_gbps, step_figures, triad_gbps)
from .targets import evaluate, f16c_floor_fraction, interleaved_limit_fractions
from .timing import LIMIT_PASSES_PER_ROUND

PEERS_NOTE = ("Separate benchmarks, one implementation at a time; the targets use the"
              " interleaved timing further down where it exists. A peer counts only when its"
              " one-step check passed (\"Peer checks\" below).")
SCALING_NOTE = "Separate benchmarks; the interleaved comparison is further down."
PEER_COLUMNS = (("torch-fused", "x torch fused"), ("torch-foreach", "x torch foreach"),
                ("per-array", "x per-array"), ("reference", "x reference"))
OVER_LIMIT = "MEASUREMENT ERROR: above the limit"


def write_report(directory: Path, name: str, config, benchmark_session, machine: dict,
                 measurements: list[dict]) -> None:
    output = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=benchmark_session.benchmarks, include_data=False,
        machine_info=benchmark_session.get_machine_info(),
        commit_info=config.hook.pytest_benchmark_generate_commit_info(config=config))
    copy = copy_bandwidth_gbps(output["benchmarks"])
    mixes = mix_limits_gbps(output["benchmarks"])
    limits = Limits(mixes, max(copy.values()) if copy else None)
    figures = step_figures(output["benchmarks"], limits)
    comparisons = compare(figures)
    outcomes = evaluate(machine["device"], comparisons, figures, measurements, limits)
    output["machine"] = machine
    output["measurements"] = measurements
    output["derived"] = {
        "copy_bandwidth_gbps": copy,
        "limit_gbps": [{"mode": k[0], "n_state": k[1], "n_params": k[2], "gbps": v}
                       for k, v in mixes.items()],
        "triad_gbps": triad_gbps(output["benchmarks"]),
        "fast": [comparison_dict(c) for c in comparisons],
        "steps_over_limit": [f"{f.peer_key} {f.optimizer} {f.mode} {f.param_set}"
                             for f in figures if f.over_limit],
        "targets": [{"target": o.target.text, "measured": o.measured,
                     "threshold": o.target.threshold, "at_least": o.target.at_least,
                     "bandwidth_bound": o.bandwidth_bound, "status": o.status}
                    for o in outcomes],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(
        json.dumps(output, indent=1, default=str, sort_keys=False) + "\n")
    (directory / f"{name}.md").write_text(
        render(name, machine, output["benchmarks"], limits, figures, comparisons, outcomes,
               measurements))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _limit_pct(value: float | None) -> str:
    """A fraction of the limit; above 1 it is flagged, not hidden."""
    if value is not None and value > 1.0:
        return f"**{100 * value:.1f}% {OVER_LIMIT}**"
    return _pct(value)


def _fast_row(c: Comparison, with_peers: bool) -> list[str]:
    f = c.fast
    row = [f.optimizer, f.mode, f.param_set, str(f.n_arrays), f"{1e3 * f.step_s:.2f}",
           f"{f.params_per_s / 1e6:.0f}", f"{f.gb_per_s:.1f}", _limit_pct(f.limit_fraction)]
    if with_peers:
        row += [_x(c.speedup.get(key)) for key, _ in PEER_COLUMNS]
    return row


def _measured(outcome) -> str:
    value = outcome.measured
    if value is None:
        return "—"
    metric = outcome.target.metric
    if metric.startswith(("speedup", "distributed_over_floor", "float16_exchange")) or metric == "host_sync":
        return f"{value:.2f}x"
    if metric == "loss_scaling_over_floor":
        return f"{100 * value:+.1f} points"
    return _pct(value)


def _bound(outcome) -> str:
    if outcome.f16c_floor is not None:
        return f"F16C floor {_pct(outcome.f16c_floor)}"
    return _x(outcome.bandwidth_bound)


def _points_over(overhead: float, floor: float | None) -> str:
    return "—" if floor is None else f"{100 * (overhead - floor):+.1f} points"


def _load_line(machine: dict) -> str:
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    if not end:
        return "- Load average: unknown"
    return (f"- Load average (1, 5, 15 min): {start} at start, {end} at end, on "
            f"{machine['cpu_cores']} cores; the run itself adds up to {machine['threads']}")


def _header(name: str, machine: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    return [
        f"# Optimizer benchmarks: {name}", "",
        f"- Device: {machine['device']}" + (f" ({machine['gpu']})" if machine["gpu"] else ""),
        f"- CPU: {machine['cpu']}, {machine['cpu_cores']} usable cores; every implementation "
        f"ran with {machine['threads']} threads (torch.set_num_threads, OMP_NUM_THREADS); "
        f"OMP_WAIT_POLICY={machine.get('omp_env', {}).get('OMP_WAIT_POLICY')}",
        f"- Memory: {machine['memory_bytes'] / 2**30:.0f} GiB" if machine["memory_bytes"]
        else "- Memory: unknown",
        f"- Versions: {versions}",
        f"- Date: {machine['date_utc']}; commit {machine['commit']}; {machine['platform']}",
        _load_line(machine),
        "- Command: `make bench` (`pytest -q benchmarks`)"
        + (f"; PARTIAL RUN: {machine['tests_deselected']} tests deselected"
           if machine.get("tests_deselected") else ""), "",
        "Step time is the fastest of the timed rounds (one step per round on the CPU; on "
        "the GPU enough steps per round to last 20 ms, then a synchronisation). GB/s counts "
        "the bytes of benchmarks/bytes_per_param.py's table; \"% limit\" sets "
        "them against the limit measured in this run for the same stream mix and size "
        "(below). A figure above 100% is a measurement error and is flagged. \"x peer\" is "
        "the peer's step time over fast's: above 1 means fast is faster. The machine is "
        "shared, so figures can be disturbed by other work; ratios come from one run, side "
        "by side.", "",
    ]


def _limit_lines(benchmarks: list[dict], limits: Limits) -> list[str]:
    lines = ["## The limit", ""]
    if limits.mixes:
        triad = triad_gbps(benchmarks)
        lines += [
            "Measured in this run by `benchmarks/kernels/stream_limit.cpp`, compiled with "
            "fast's own toolchain and flags (g++ -O3 -fopenmp -march=native "
            "-ffp-contract=off, fast.backends.cpu.FLAGS), on every thread of the run: one "
            "pass reads the gradient stream, reads and writes the parameter (or fp32 master) "
            "and each state stream and, with a master, writes the fp16 parameter; integer "
            "arithmetic, arrays of the step's own size, placed in their pages as fast's "
            "buffers are. Best of the rounds, best of a sample at the start and one at the "
            "end of the session (the table), of passes beside each step benchmark's own rounds "
            f"(steps of 64 MiB or more: {LIMIT_PASSES_PER_ROUND} passes before every timed "
            f"round and after the last; smaller steps, which stay in the caches between "
            f"rounds: as many passes right after the rounds, on warm caches) and of "
            f"{LIMIT_PASSES_PER_ROUND} passes in every round of the interleaved comparisons, "
            "so that a step's limit also saw the load and the caches its own rounds saw; a "
            "row's limit is the best of all of these.",
            "",
            f"Cross-check: STREAM triad (a = b + s c, float32, 3 x 256 MiB, 12 bytes per "
            f"element counted as STREAM counts them, same toolchain and threads): "
            f"**{triad:.1f} GB/s**." if triad else "Cross-check: STREAM triad not measured.",
            ""]
        rows = [[mode, str(n_state), f"{n_params / 1e6:.2f}M", f"{gbps:.1f}"]
                for (mode, n_state, n_params), gbps in sorted(limits.mixes.items())]
        lines += _table(["mode", "state arrays", "params", "limit GB/s"], rows)
    elif limits.copy_gbps:
        lines += [f"Device-to-device copy bandwidth (2 x bytes / time): "
                  f"**{limits.copy_gbps:.1f} GB/s**, the limit of every row.", ""]
    else:
        lines += ["No limit was measured in this run.", ""]
    return lines


def _peer_rows(figures) -> list[list[str]]:
    return [[f.peer_key, f.optimizer, f.mode, f.param_set, f"{1e3 * f.step_s:.2f}",
             f"{f.gb_per_s:.1f}", _limit_pct(f.limit_fraction), f.peer_check or "—"]
            for f in figures if f.impl != "fast"]


def _interleaved_lines(interleaved: list[dict], limits: Limits) -> list[str]:
    lines = ["## Interleaved timing (the targets' speed-ups)", "",
             "fast, torch fused and (fp32) the per-array baseline step in turn, in rotating "
             f"order, for {interleaved[0]['rounds']} rounds; best and median step per "
             "implementation, and the best step's share of the limit. \"x\" is the median "
             "over rounds of the peer's step time over fast's in the same round (the targets "
             "use it); the ratio of the best steps is in brackets. In fp16, the F16C floor "
             f"(best of {LIMIT_PASSES_PER_ROUND} passes per round, benchmarks/limit.py, ConvertPass): the step's "
             "streams with only the conversions such a step must make (each element loaded "
             "to float, each state rounded to fp16 and read back, each store converted) and "
             "additions in place of its arithmetic.", ""]
    rows = []
    for m in interleaved:
        share = interleaved_limit_fractions(m, limits)
        cells = [f"{1e3 * m['best_s'][k]:.1f} (median {1e3 * m['median_s'][k]:.1f}; "
                 f"{_limit_pct(share.get(k))})" if k in m["best_s"] else "—"
                 for k in ("fast", "torch-fused", "per-array")]
        floor_s = m.get("f16c_floor_s")
        cells.append("—" if floor_s is None else
                     f"{1e3 * floor_s:.1f} ({_limit_pct(f16c_floor_fraction(m, limits))})")
        ratios = [f"{_x(m['speedup'].get(k))} ({_x(m.get('best_speedup', {}).get(k))})"
                  for k in ("torch-fused", "per-array")]
        rows.append([m["optimizer"], m["mode"], m["param_set"]] + cells + ratios)
    return lines + _table(["optimizer", "mode", "params", "fast ms (% limit)",
                           "torch fused ms (% limit)", "per-array ms (% limit)",
                           "F16C floor ms (% limit)", "x torch fused", "x per-array"], rows)


def _memory_rows(measurements: list[dict]) -> list[list[str]]:
    rows = []
    for m in measurements:
        if m["kind"] != "memory":
            continue
        parts = [f"{key.split('_peak')[0]} {m[key] / 2**20:.2f}"
                 for key in ("traced_peak_extra", "rss_peak_extra", "gpu_pool_peak_extra")
                 if m.get(key) is not None]
        rows.append([m["impl"], m["optimizer"], m["mode"], m["param_set"],
                     "on" if m["loss_scaling"] else "off", f"{m['held_bytes'] / 2**20:.0f}",
                     ", ".join(parts), _pct(m["extra_fraction"])])
    return rows


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f}"


def _load(values) -> str:
    return "unknown" if not values else ", ".join(f"{v:.2f}" for v in values)


def _distributed_lines(measurements: list[dict]) -> list[str]:
    """fast.distributed over MPI (benchmarks/test_distributed.py): each step against its
    floor, the float16 exchange against the float32 one, per-rank master + state bytes and
    the memory of a ZeRO save, from this run."""
    memory = [m for m in measurements if m["kind"] == "distributed-state-bytes"]
    floors = [m for m in measurements if m["kind"] == "distributed-floor"]
    exchanges = [m for m in measurements if m["kind"] == "distributed-float16-exchange"]
    saves = [m for m in measurements if m["kind"] == "distributed-save-memory"]
    if not (memory or floors or exchanges or saves):
        return []
    lines = ["## Distributed: fast.distributed over MPI (this CPU)", ""]
    if floors:
        first = floors[0]
        wall = ", ".join(f"{m['mode']} {m['ranks']}: {m['wall_s']:.0f} s" for m in floors)
        lines += [
            f"Each step against its floor, {first['optimizer']} on {first['param_set']} "
            f"({first['n_params']:,} parameters), gradients exchanged in their own dtype; one "
            f"`mpiexec` launch per dtype mode and rank count, each rank's CPU passes on its share "
            f"of the cores. The floor: the step's MPI collectives on the same bytes "
            f"(reduce-scatter + all-gather) plus `fast`'s one-process step on the whole model "
            f"(replicated) or a flat 1/N shard (ZeRO). {first['rounds']} rounds after "
            f"{first['warmup']} warm-up round(s); in a round every item runs once after a barrier "
            f"(order rotated), timed as the slowest rank. 'Over floor': the median over rounds "
            f"of step / floor (min-max). Beside it, medians in ms: the pack of the gradients into "
            f"the exchange buffer and the agreement a step begins with, timed alone in the same "
            f"rounds, and what remains (step - floor - pack - agreement: the ranks waiting for one "
            f"another between the step's parts, which the floor's parts, each after a barrier, do "
            f"not). Load average (1, 5, 15 min) before the launches {_load(first['load_average'][0])}, "
            f"after {_load(first['load_average'][1])}; launches: {wall}.", ""]
        rows = []
        for m in floors:
            md = m["medians_ms"]
            for step, row in m["steps"].items():
                over = row["over_floor"]
                rest = row["step_ms"] - row["floor_ms"] - md["pack"] - md["agreement"]
                rows.append([m["mode"], str(m["ranks"]), step, f"{row['step_ms']:.1f}", f"{row['floor_ms']:.1f}",
                             f"{over['median']:.2f}x ({over['min']:.2f}-{over['max']:.2f})",
                             f"{md['collectives']:.1f}",
                             f"{md['whole_step' if step == 'replicated' else 'shard_step']:.1f}",
                             f"{md['pack']:.1f}", f"{md['agreement']:.1f}", f"{rest:+.1f}"])
        lines += _table(["mode", "ranks", "step", "step ms", "floor ms", "over floor (min-max)",
                         "collectives ms", "one-process step ms", "pack ms", "agreement ms", "rest ms"], rows)
    if exchanges:
        lines += ["The float16 exchange of the fp16 + master launches: the float16 collectives "
                  "(the communicator's float16 reduction, fast's F16C sum given to MPI) over the "
                  "same collectives on float32 buffers of the same gradients, per round (median, "
                  "min-max); MPICH's own float16 MPI.SUM reduce-scatter over the communicator's.", ""]
        lines += _table(["ranks", "float16 / float32 exchange", "float16 ms", "float32 ms",
                         "reduce-scatter: ours ms", "MPICH's float16 sum ms"],
                        [[str(m["ranks"]), f"{m['f16_over_f32']['median']:.2f}x ({m['f16_over_f32']['min']:.2f}-"
                          f"{m['f16_over_f32']['max']:.2f})", f"{m['medians_ms']['collectives']:.1f}",
                          f"{m['medians_ms']['exchange_f32']:.1f}", f"{m['medians_ms']['f16_sum']:.1f}",
                          f"{m['medians_ms']['mpich_f16_sum']:.1f}"] for m in exchanges])
    for m in memory:
        lines += [
            f"fp32 master + optimizer state bytes each rank holds (`opt.state_nbytes()`), "
            f"{m['optimizer']} {m['mode']} on {m['param_set']} ({m['n_params']:,} parameters; "
            f"one process: {m['one_process_bytes']:,} B = {_mib(m['one_process_bytes'])} MiB, "
            f"{m['bytes_per_param']} B per parameter). ZeRO's bound is one block, ceil(parameters "
            f"/ N) x {m['bytes_per_param']} B; the ZeRO ranks' bytes add up to one process's.", ""]
        rows = []
        for row in m["rows"]:
            zero = row["zero"]
            rows.append([str(row["ranks"]), _mib(max(row["replicated"])),
                         " / ".join(_mib(b) for b in zero), _mib(row["block_bytes"]),
                         f"{max(zero) / m['one_process_bytes']:.4f}"])
        lines += _table(["ranks", "replicated MiB per rank", "ZeRO MiB, rank 0 / 1 / ...",
                         "ZeRO bound MiB", "ZeRO largest / one process"], rows)
    if saves:
        lines += ["A ZeRO save (`fast.serializers.save_npz`, uncompressed) of the fp16 + master "
                  "optimizer: each rank's peak allocation during it (tracemalloc), against its "
                  "shard (master + state) and the largest whole array (float32).", ""]
        lines += _table(["ranks", "peak MiB, rank 0 / 1 / ...", "shard MiB per rank", "largest array MiB",
                         "file MiB", "save s"],
                        [[str(m["ranks"]), " / ".join(f"{b / 2**20:.2f}" for b in m["peak_bytes"]),
                          " / ".join(_mib(b) for b in m["shard_bytes"]), f"{m['largest_array_bytes'] / 2**20:.2f}",
                          _mib(m["file_bytes"]), f"{max(m['save_s']):.2f}"] for m in saves])
    return lines


def render(name, machine, benchmarks, limits, figures, comparisons, outcomes,
           measurements) -> str:
    lines = _header(name, machine) + _limit_lines(benchmarks, limits)
    over = [f for f in figures if f.over_limit]
    if over:
        lines += [f"**{len(over)} step(s) above their limit: {OVER_LIMIT}** (" + "; ".join(
            f"{f.peer_key} {f.optimizer} {f.mode} {f.param_set} {_pct(f.limit_fraction)}"
            for f in over) + ").", ""]
    lines += ["## Targets", "",
              "\"bound\", for a speed-up: the speed-up fast would show if its step ran at the "
              "limit, the most any implementation moving bytes_per_param's bytes can reach "
              "against that peer. For fp16's share of the limit: the share the F16C floor "
              "reached in the same rounds (benchmarks/limit.py, ConvertPass: only the "
              "conversions an fp16 step with Chainer's fp16 state must make, F16C's 8 "
              "lanes, with the step's streams), the most a step that converts with F16C "
              "reached here. Loss-scaling targets: the overhead minus its floor, one "
              "more read of the gradients (4 of 28 bytes for AdamW fp32, 2 of 28 with an fp32 "
              "master, 2 of 14 in fp16); the loss-scaling section below also sets the "
              "overhead against that read measured in the same rounds.", ""]
    lines += _table(["target", "measured", "bound", "status"],
                    [[o.target.text, _measured(o), _bound(o), o.status] for o in outcomes])
    with_peers = [c for c in comparisons if c.speedup]
    alone = [c for c in comparisons if not c.speedup]
    base = ["optimizer", "mode", "params", "arrays", "fast ms", "M params/s", "GB/s", "% limit"]
    if with_peers:
        lines += ["## fast against its peers", "", PEERS_NOTE, ""]
        lines += _table(base + [title for _, title in PEER_COLUMNS],
                        [_fast_row(c, True) for c in with_peers])
    if alone:
        lines += ["## Every optimizer family and dtype mode (fast)", ""]
        lines += _table(base, [_fast_row(c, False) for c in alone])
    peers = _peer_rows(figures)
    if peers:
        lines += ["## The peers against the limit", ""]
        lines += _table(["impl", "optimizer", "mode", "params", "ms", "GB/s", "% limit",
                         "one-step check"], peers)
    checks = [m for m in measurements if m["kind"] == "peer-check"]
    if checks:
        lines += ["## Peer checks", "",
                  "Each torch peer's first step against torch's own for-loop implementation "
                  "stepping float64 copies (benchmarks/torch_peers.py, check_one_step; bound "
                  "per element: half an ulp of the dtype per rounding of the parameter plus "
                  "the step's rounding error). \"no work\": dropped, not timed. \"outside "
                  "bound\": timed and listed, not used as a peer.", ""]
        lines += _table(["peer", "optimizer", "mode", "params", "outcome"],
                        [[f"torch {m['variant']}", m["optimizer"], m["mode"], m["param_set"],
                          m["description"]] for m in checks])
    scaled = [c for c in comparisons if c.loss_scaling_overhead is not None]
    if scaled:
        lines += ["## Dynamic loss scaling", "", SCALING_NOTE, ""]
        lines += _table(
            ["optimizer", "mode", "params", "without, ms", "overhead"],
            [[c.fast.optimizer, c.fast.mode, c.fast.param_set, f"{1e3 * c.fast.step_s:.2f}",
              _pct(c.loss_scaling_overhead)] for c in scaled])
    memory = _memory_rows(measurements)
    if memory:
        lines += ["## Peak extra memory of one step", "",
                  "traced: tracemalloc peak (every NumPy allocation); rss: growth of the "
                  "resident-set high-water mark; gpu_pool: CuPy pool high-water mark. "
                  "The fraction uses the largest of them.", ""]
        lines += _table(["impl", "optimizer", "mode", "params", "loss scaling",
                         "param + state MiB", "extra MiB", "fraction"], memory)
    interleaved = [m for m in measurements if m["kind"] == "interleaved"]
    if interleaved:
        lines += _interleaved_lines(interleaved, limits)
    scaling = [m for m in measurements if m["kind"] == "interleaved-loss-scaling"]
    if scaling:
        lines += ["### Interleaved: fast with and without dynamic loss scaling", "",
                  "Best step of each; the overhead is the median over rounds of the ratio "
                  "within the round, minus 1. The floor (the targets') is one more read of the "
                  "gradients in bytes: their share of the step's bytes. The read pass is that "
                  "read measured: a pass of the limit kernel that only reads as many gradient "
                  "bytes (benchmarks/limit.py, ReadPass), timed in the same rounds, as the "
                  "median over rounds of its time over the step's without loss scaling. Where "
                  "reads, not reads and writes together, bound the machine, a read costs more "
                  "than its share of the bytes, and the read pass is the floor a check can reach.",
                  ""]
        lines += _table(
            ["optimizer", "mode", "params", "without, ms (best)", "with, ms (best)",
             "overhead", "floor", "over the floor", "read pass", "over the read pass"],
            [[m["optimizer"], m["mode"], m["param_set"], f"{1e3 * m['without_s']:.2f}",
              f"{1e3 * m['with_s']:.2f}", _pct(m["overhead"]), _pct(m.get("floor")),
              _points_over(m["overhead"], m.get("floor")), _pct(m.get("read_floor")),
              _points_over(m["overhead"], m.get("read_floor"))]
             for m in scaling])
    lines += _distributed_lines(measurements)
    syncs = [m for m in measurements if m["kind"] == "host-sync"]
    if syncs:
        lines += ["## Host synchronisation (GPU)", ""]
        lines += _table(
            ["optimizer", "mode", "params", "GPU busy for", "steps issued in",
             "host us/step", "GPU still busy after"],
            [[m["optimizer"], m["mode"], m["param_set"], f"{m['spin_s']:.2f} s",
              f"{m['issue_s']:.3f} s", f"{1e6 * m['host_s_per_step']:.0f}",
              str(m["device_busy_after_issue"])] for m in syncs])
    return "\n".join(lines)
