"""fast.distributed over MPI on this CPU: per-rank master + state bytes at 1, 2 and 3 ranks,
and the step time on 2 ranks against 1 rank, replicated (`zero=False`) and ZeRO (`zero=True`).

AdamW, fp16 parameters and gradients with fp32 masters (`use_fp32_update()`), on ResNet-50's
161 arrays (25,557,032 parameters), gradients summed in float32 (`allreduce_grad_dtype=
numpy.float32`, ChainerMN's default for fp16 gradients and examples/train_distributed.py's
choice). Each launch runs benchmarks/distributed_rank.py on every rank under the mpich
wheel's `mpiexec`, with OMP_NUM_THREADS=1 on every rank: 2 ranks on the 2 cores against 1
rank with 1 thread is the fair comparison (the same core count per rank; fast's step
would use both cores if one process were given both). Every launch has a time limit after
which its process group is killed and the benchmark fails.

- Bytes: `opt.state_nbytes()` on every rank, at 1, 2 and 3 ranks, both modes (and the
  plain single-process optimizer's master + state bytes at 1 rank). ZeRO must hold at most
  one block (ceil(total / N) elements) of master and state per rank, and its ranks' bytes
  must add up to one process's; replicated holds one process's on every rank.
- Step time: ROUNDS rounds, each one 1-rank launch and one 2-rank launch (alternating which
  goes first). Inside a launch the modes step in turn; every step starts at a barrier and
  each rank times `opt.update()` with time.perf_counter (the launch, the set-up and WARMUP
  steps are not timed); a step's time is the slowest rank's. Per round and mode: the median
  of the 2-rank launch's STEPS steps over the median of the 1-rank launch's. The report gives
  the median of these ratios over the rounds and their spread (min-max), and the load average
  before and after.
- The check (once, at every rank count, in the first launches): the first step of each mode
  runs on gradients whose mean is exact in float16, and every rank's parameters, fp32 master
  and AdamW state (its piece of them under ZeRO) must equal, bit for bit, those of one
  process stepped on that mean; the ranks' parameters must be equal, and every element must
  have changed (or the count is reported). After the timed steps the ranks' parameters must
  still be equal.

Size: measured once with `--bench-size quick` (3 rounds) while other jobs ran (load
average 21.9 -> 5.8 on 2 cores): the whole module took 136 s (2-rank ResNet-50 steps of
0.5-0.7 s, launches of 10-20 s). With ROUNDS = 5 (`make bench`) that is about 3-3.5 minutes
(two more rounds of about 30 s each); memory about 1.5 GiB per rank at most.
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
EXCHANGE = "float32"
ROUNDS, QUICK_ROUNDS = 5, 3
STEPS, WARMUP = 3, 1
MODES = ("replicated", "zero")
LAUNCH_TIMEOUT_S = 300
# fp32 master (4 B) and AdamW's two fp32 state arrays (4 B each) per parameter
STATE_BYTES_PER_PARAM = 12
# what one rank holds, roughly: host fp32 copies, gradients, and per mode parameters,
# master, state, exchange buffers; the check's one-process optimizer on top
BYTES_PER_PARAM_PER_RANK = 64
MEMORY_SHARE = 0.6  # as conftest.require_memory


def build_kernels_once():
    """Build (or find) fast's CPU kernels in this process, so the ranks do not all compile."""
    import fast
    p = fast.Parameter(np.zeros(4, np.float16))
    opt = fast.optimizers.AdamW()
    opt.setup([p])
    opt.use_fp32_update()
    p.grad = np.zeros(4, np.float16)
    opt.update()


def launch(n_ranks: int, out: Path, *args) -> dict:
    """Run benchmarks.distributed_rank on `n_ranks` ranks; rank 0's JSON. A launch that does
    not finish within LAUNCH_TIMEOUT_S has its process group killed and fails the test."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    cmd = [str(MPIEXEC), "-n", str(n_ranks), sys.executable, "-m", "benchmarks.distributed_rank",
           str(out), "--param-set", PARAM_SET, "--exchange", EXCHANGE, *map(str, args)]
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
    """Every launch's results: {"check": {n: result}, "rounds": [{1: result, 2: result}]}."""
    if device.is_gpu:
        pytest.skip("the MPI communicator exchanges NumPy arrays; pure_nccl is unverified")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (the mpich wheel of the test extra)")
    pytest.importorskip("mpi4py", reason="mpi4py (the test extra) is not installed")
    needed, free = 3 * BYTES_PER_PARAM_PER_RANK * PARAM_SETS[PARAM_SET].n_params, memory_available_bytes()
    if free is not None and needed > MEMORY_SHARE * free:
        pytest.skip(f"3 ranks on {PARAM_SET} need {needed / 2**30:.1f} GiB; {free / 2**30:.1f} GiB free")
    build_kernels_once()
    rounds = QUICK_ROUNDS if pytestconfig.getoption("--bench-size") == "quick" else ROUNDS
    tmp = tmp_path_factory.mktemp("distributed")
    load_before, start = load_average(), time.perf_counter()
    modes = ",".join(MODES)
    results = {"check": {}, "rounds": []}
    results["check"][3] = launch(3, tmp / "check3.json", "--check", "--modes", modes,
                                 "--steps", 0, "--warmup", 0)
    for index in range(rounds):
        this_round = {}
        for n in ((1, 2) if index % 2 == 0 else (2, 1)):
            extra = ["--plain"] if n == 1 else []
            if index == 0:
                extra.append("--check")
            this_round[n] = launch(n, tmp / f"round{index}-{n}.json", "--modes", modes,
                                   "--steps", STEPS, "--warmup", WARMUP, *extra)
            if index == 0:
                results["check"][n] = this_round[n]
        results["rounds"].append(this_round)
    results["load_average"] = [load_before, load_average()]
    results["wall_s"] = time.perf_counter() - start
    return results


def test_the_distributed_step_did_the_work(launches):
    """Every rank count, both modes: equal to one process on the mean, bit for bit."""
    for n, result in sorted(launches["check"].items()):
        for mode in MODES:
            check = result["modes"][mode]["check"]
            assert check["n_mismatches"] == 0, (n, mode, check["mismatches"])
            assert check["ranks_agree"], (n, mode)
            # AdamW's first step moves every element by about alpha; an fp16 parameter can
            # round back to itself, so not every element must change, but nearly all do.
            assert min(check["changed_elements"]) > 0.99 * result["n_params"], (n, mode, check)
    for this_round in launches["rounds"]:
        for result in this_round.values():
            assert all(result["modes"][mode]["ranks_agree_after_steps"] for mode in MODES)


def test_state_bytes_per_rank(launches, record_measurement):
    """Replicated: one process's bytes on every rank. ZeRO: at most one block per rank, the
    ranks adding up to one process's."""
    n_params = PARAM_SETS[PARAM_SET].n_params
    one_process = launches["check"][1]["modes"]["plain"]["state_nbytes"][0]
    assert one_process == STATE_BYTES_PER_PARAM * n_params
    rows = []
    for n, result in sorted(launches["check"].items()):
        replicated = result["modes"]["replicated"]["state_nbytes"]
        zero = result["modes"]["zero"]["state_nbytes"]
        assert replicated == [one_process] * n
        assert sum(zero) == one_process
        block_bytes = -(-n_params // n) * STATE_BYTES_PER_PARAM
        assert max(zero) <= block_bytes
        rows.append({"ranks": n, "replicated": replicated, "zero": zero,
                     "block_bytes": block_bytes})
    record_measurement(kind="distributed-state-bytes", optimizer="AdamW", mode="fp16+master",
                       param_set=PARAM_SET, n_params=n_params, one_process_bytes=one_process,
                       rows=rows)


def _median(values) -> float:
    return float(statistics.median(values))


def test_step_time_two_ranks_against_one(launches, record_measurement):
    per_round = []
    for this_round in launches["rounds"]:
        one, two = this_round[1]["modes"], this_round[2]["modes"]
        entry = {"one_rank_plain_s": _median(one["plain"]["step_s"]), "modes": {}}
        for mode in MODES:
            t1, t2 = _median(one[mode]["step_s"]), _median(two[mode]["step_s"])
            entry["modes"][mode] = {"one_rank_s": t1, "two_ranks_s": t2, "ratio": t2 / t1,
                                    "two_ranks_over_plain": t2 / entry["one_rank_plain_s"]}
        per_round.append(entry)
    summary = {}
    for mode in MODES:
        ratios = [r["modes"][mode]["ratio"] for r in per_round]
        over_plain = [r["modes"][mode]["two_ranks_over_plain"] for r in per_round]
        summary[mode] = {
            "ratio_median": _median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "over_plain_median": _median(over_plain),
            "one_rank_s_median": _median([r["modes"][mode]["one_rank_s"] for r in per_round]),
            "two_ranks_s_median": _median([r["modes"][mode]["two_ranks_s"] for r in per_round]),
        }
    summary["plain_s_median"] = _median([r["one_rank_plain_s"] for r in per_round])
    record_measurement(kind="distributed-steps", optimizer="AdamW", mode="fp16+master",
                       param_set=PARAM_SET, n_params=PARAM_SETS[PARAM_SET].n_params,
                       exchange_dtype=EXCHANGE, rounds=len(per_round), steps=STEPS,
                       warmup=WARMUP, threads_per_rank=1, summary=summary, per_round=per_round,
                       load_average=launches["load_average"], wall_s=launches["wall_s"])
    for mode in MODES:
        assert all(np.isfinite(r["modes"][mode]["ratio"]) and r["modes"][mode]["ratio"] > 0
                   for r in per_round)
