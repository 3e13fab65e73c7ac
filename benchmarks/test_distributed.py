"""fast.distributed over MPI on this CPU: each distributed step against its floor, the
float16 exchange against the float32 one, per-rank master + state bytes, and the memory a
ZeRO save takes.

AdamW on ResNet-50's 161 arrays (25,557,032 parameters), in float32 and in float16 with fp32
masters (`use_fp32_update()`), each gradient dtype exchanged in itself
(`allreduce_grad_dtype=None`), at 1, 2 and 3 ranks: one `mpiexec` launch of
benchmarks/distributed_rank.py per dtype mode and rank count, under the mpich wheel's
`mpiexec`, every rank's CPU passes on its share of the node's cores (no OMP_NUM_THREADS).
Every launch has a time limit after which its process group is killed and the benchmark
fails.

- The floor (issue #24): the MPI collectives a step makes, on the same bytes (a
  reduce-scatter of the padded gradient buffer, an all-gather of a padded buffer of the
  same size), plus `fast`'s one-process step on the whole model (replicated) or on a flat
  1/N shard (ZeRO). In each launch every round times the replicated step, the ZeRO step,
  the collectives, both one-process steps, and what a step does beyond its floor (the pack
  of the gradients into the exchange buffer, the agreement every step begins with), each
  after a barrier, each the slowest rank's time, in an order that rotates from round to
  round. Per round: step / (collectives + one-process step); reported: the median over the
  rounds and its spread (min-max). The target: within 1.10x.
- The float16 exchange (fp16 + master launches at 2 and 3 ranks): per round the float16
  collectives over the same collectives on float32 buffers of the same gradients; the
  target: at most 1.0. Beside them MPICH's own float16 sum (`MPI.SUM`), which the
  communicator's float16 reduction replaces.
- The check (every launch): the first step of each mode runs on gradients whose sum over
  the ranks is exact, and every rank's parameters, fp32 master and AdamW state (its piece
  of them under ZeRO) equal those of one process stepped on the mean, bit for bit.
- Bytes: `opt.state_nbytes()` on every rank, both modes: ZeRO at most one block
  (ceil(P / N) elements) of master and state per rank, the ranks adding up to one process's.
- Memory of a save (fp16 + master, 2 and 3 ranks): each rank's tracemalloc peak while the
  ZeRO optimizer is saved (uncompressed), against its shard and the largest array.

Size: with ROUNDS = 7, the six launches took about 2.5 minutes here (3-rank ResNet-50 steps
of 0.1-0.2 s, launches of 15-35 s, most of it set-up); memory about 2 GiB per rank at most.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .machine import load_average, memory_available_bytes
from .plan import PARAM_SETS

REPO_ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = Path(sys.executable).with_name("mpiexec")
PARAM_SET = "resnet50"
DTYPE_MODES = ("fp32", "fp16+master")
RANKS = (1, 2, 3)
ROUNDS, QUICK_ROUNDS, WARMUP = 7, 3, 1
STEP_MODES = ("replicated", "zero")
FLOORS = {"replicated": "whole_step", "zero": "shard_step"}
LAUNCH_TIMEOUT_S = 420
# fp32 master (fp16 + master only) and AdamW's two state arrays per parameter
STATE_BYTES_PER_PARAM = {"fp32": 8, "fp16+master": 12}
# what one rank holds, roughly (fp32): two multi-node optimizers, two one-process ones,
# gradients and the floors' buffers
BYTES_PER_PARAM_PER_RANK = 80
MEMORY_SHARE = 0.6  # as conftest.require_memory
#: slack of a save's peak beyond one array: zlib's compressor state and a chunk (the save
#: here is uncompressed) and the pickled bookkeeping
SAVE_SLACK_BYTES = 1 << 20


def build_kernels_once():
    """Build (or find) fast's CPU kernels in this process, so the ranks do not all compile."""
    import fast
    from fast.backends import cpu
    p = fast.Parameter(np.zeros(4, np.float16))
    opt = fast.optimizers.AdamW()
    opt.setup([p])
    opt.use_fp32_update()
    p.grad = np.zeros(4, np.float16)
    opt.update()
    cpu.exchange_library()


def launch(n_ranks: int, out: Path, *args) -> dict:
    """Run benchmarks.distributed_rank on `n_ranks` ranks; rank 0's JSON. A launch that does
    not finish within LAUNCH_TIMEOUT_S has its process group killed and fails the test."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    cmd = [str(MPIEXEC), "-n", str(n_ranks), sys.executable, "-m", "benchmarks.distributed_rank",
           str(out), "--param-set", PARAM_SET, *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO_ROOT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{n_ranks} ranks did not finish within {LAUNCH_TIMEOUT_S} s:\n{output[-4000:]}")
    assert proc.returncode == 0, f"{n_ranks} ranks failed ({proc.returncode}):\n{output[-4000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def launches(pytestconfig, device, tmp_path_factory):
    """Every launch's result, by (dtype mode, ranks), with the load average around them."""
    if device.is_gpu:
        pytest.skip("the MPI communicator exchanges NumPy arrays; pure_nccl is unverified")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (the mpich wheel of the test extra)")
    pytest.importorskip("mpi4py", reason="mpi4py (the test extra) is not installed")
    needed, free = max(RANKS) * BYTES_PER_PARAM_PER_RANK * PARAM_SETS[PARAM_SET].n_params, memory_available_bytes()
    if free is not None and needed > MEMORY_SHARE * free:
        pytest.skip(f"3 ranks on {PARAM_SET} need {needed / 2**30:.1f} GiB; {free / 2**30:.1f} GiB free")
    build_kernels_once()
    rounds = QUICK_ROUNDS if pytestconfig.getoption("--bench-size") == "quick" else ROUNDS
    tmp = tmp_path_factory.mktemp("distributed")
    results = {"load_average": [load_average()], "wall_s": {}}
    for mode in DTYPE_MODES:
        for n in RANKS:
            extra = ["--save-memory"] if mode == "fp16+master" and n > 1 else []
            start = time.perf_counter()
            results[mode, n] = launch(n, tmp / f"{mode}-{n}.json", "--mode", mode, "--rounds", rounds,
                                      "--warmup", WARMUP, "--check", *extra)
            results["wall_s"][f"{mode}, {n} ranks"] = time.perf_counter() - start
    results["load_average"].append(load_average())
    return results


def _runs(launches):
    return [(key, value) for key, value in launches.items() if isinstance(key, tuple)]


def _median(values) -> float:
    return float(statistics.median(values))


def _spread(values) -> dict:
    return {"median": _median(values), "min": min(values), "max": max(values)}


def test_the_distributed_step_did_the_work(launches):
    """Every launch, both modes: equal to one process on the mean, bit for bit; the ranks'
    parameters equal after the timed steps."""
    for (mode, n), result in _runs(launches):
        for step_mode in STEP_MODES:
            check = result["check"][step_mode]
            assert check["n_mismatches"] == 0, (mode, n, step_mode, check["mismatches"])
            assert check["ranks_agree"], (mode, n, step_mode)
            # AdamW's first step moves every element by about alpha; an fp16 parameter can
            # round back to itself, so not every element must change, but nearly all do.
            assert min(check["changed_elements"]) > 0.99 * result["n_params"], (mode, n, step_mode, check)
            assert result["ranks_agree_after_steps"][step_mode], (mode, n, step_mode)


def test_state_bytes_per_rank(launches, record_measurement):
    """Replicated: one process's bytes on every rank. ZeRO: at most one block per rank, the
    ranks adding up to one process's."""
    n_params = PARAM_SETS[PARAM_SET].n_params
    for mode in DTYPE_MODES:
        one_process = launches[mode, 1]["state_nbytes"]["plain"][0]
        assert one_process == STATE_BYTES_PER_PARAM[mode] * n_params
        rows = []
        for n in RANKS:
            result = launches[mode, n]
            replicated, zero = result["state_nbytes"]["replicated"], result["state_nbytes"]["zero"]
            assert replicated == [one_process] * n
            assert sum(zero) == one_process
            block_bytes = -(-n_params // n) * STATE_BYTES_PER_PARAM[mode]
            assert max(zero) <= block_bytes
            rows.append({"ranks": n, "replicated": replicated, "zero": zero, "block_bytes": block_bytes})
        record_measurement(kind="distributed-state-bytes", optimizer="AdamW", mode=mode, param_set=PARAM_SET,
                           n_params=n_params, one_process_bytes=one_process,
                           bytes_per_param=STATE_BYTES_PER_PARAM[mode], rows=rows)


def test_each_step_against_its_floor(launches, record_measurement):
    """Per launch and mode: step / floor in every round (floor: the collectives plus the
    one-process step on the whole model or a 1/N shard), and what the step spends beyond
    the floor (pack, agreement), medians over the rounds, in ms."""
    for (mode, n), result in _runs(launches):
        times = result["times"]
        medians = {item: 1e3 * _median([t[item] for t in times]) for item in times[0]}
        rows = {}
        for step_mode in STEP_MODES:
            floor = [t["collectives"] + t[FLOORS[step_mode]] for t in times]
            ratios = [t[step_mode] / f for t, f in zip(times, floor)]
            assert all(np.isfinite(r) and r > 0 for r in ratios)
            rows[step_mode] = {"over_floor": _spread(ratios), "step_ms": medians[step_mode],
                               "floor_ms": 1e3 * _median(floor)}
        record_measurement(kind="distributed-floor", optimizer="AdamW", mode=mode, param_set=PARAM_SET,
                           ranks=n, n_params=result["n_params"], rounds=result["rounds"],
                           warmup=result["warmup"], threads=result["threads"], medians_ms=medians,
                           steps=rows, load_average=launches["load_average"],
                           wall_s=launches["wall_s"][f"{mode}, {n} ranks"])


def test_the_float16_exchange_against_float32(launches, record_measurement):
    """fp16 + master at 2 and 3 ranks: the float16 collectives over the same collectives on
    float32 buffers of the same gradients, per round; MPICH's own float16 sum beside it."""
    for n in RANKS[1:]:
        times = launches["fp16+master", n]["times"]
        ratios = [t["collectives"] / t["exchange_f32"] for t in times]
        mpich = [t["mpich_f16_sum"] / t["f16_sum"] for t in times]
        assert all(np.isfinite(r) and r > 0 for r in ratios + mpich)
        record_measurement(kind="distributed-float16-exchange", optimizer="AdamW", mode="fp16+master",
                           param_set=PARAM_SET, ranks=n, f16_over_f32=_spread(ratios),
                           mpich_sum_over_ours=_spread(mpich),
                           medians_ms={k: 1e3 * _median([t[k] for t in times])
                                       for k in ("collectives", "exchange_f32", "f16_sum", "mpich_f16_sum")})


def test_a_zero_save_holds_the_shard_and_one_array(launches, record_measurement):
    """fp16 + master at 2 and 3 ranks: each rank's peak traced allocation while the ZeRO
    optimizer is saved stays within the largest whole array plus SAVE_SLACK_BYTES, far below
    its shard (which it does not copy)."""
    largest = 4 * max(int(np.prod(s)) for s in PARAM_SETS[PARAM_SET].shapes)
    for n in RANKS[1:]:
        result = launches["fp16+master", n]
        peaks = [m["peak_bytes"] for m in result["save_memory"]]
        shards = result["state_nbytes"]["zero"]
        assert max(peaks) <= largest + SAVE_SLACK_BYTES, (n, peaks, largest)
        record_measurement(kind="distributed-save-memory", optimizer="AdamW", mode="fp16+master",
                           param_set=PARAM_SET, ranks=n, peak_bytes=peaks, shard_bytes=shards,
                           largest_array_bytes=largest,
                           file_bytes=result["save_memory"][0]["file_bytes"],
                           save_s=[m["save_s"] for m in result["save_memory"]])
