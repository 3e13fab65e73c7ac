"""One rank of the distributed benchmark (benchmarks/test_distributed.py launches it).

    mpiexec -n N python -m benchmarks.distributed_rank OUT.json --param-set resnet50
        [--steps K] [--warmup W] [--modes replicated,zero] [--plain] [--check]
        [--exchange float32|float16]

Every rank builds the same fp16 parameters (benchmarks.workloads.host_arrays) and, per
mode, an AdamW (the benchmarks' hyperparameters) with fp32 masters (`use_fp32_update()`)
wrapped by `fast.distributed.create_multi_node_optimizer(..., zero=mode == "zero",
allreduce_grad_dtype=EXCHANGE)`, EXCHANGE float32 by default (`--exchange`). With
`--plain` (one rank only) the unwrapped `fast` AdamW steps alongside, the single process
without `fast.distributed`.

`--check`: the first step of every mode runs on gradients whose sum over the ranks is
exact in the exchange dtype (small integers times 2^-10, rank r's scaled by r + 1), and every rank
compares its parameters, its fp32 master and its AdamW state (its piece of them, under
ZeRO) with a one-process AdamW stepped on that mean, bit for bit; the ranks also compare
their parameters' digests.

Then the steps: rank r's gradients are the benchmarks' gradients times (r + 1), in
float16, assigned to `p.grad` before each step (outside the timed region). Each step the
modes take turns (rotating order); before each `update()` the ranks meet at a barrier,
and each rank times `opt.update()` alone with `time.perf_counter`; a step's time is the
largest over the ranks. The first `--warmup` steps of each mode are not counted. Rank 0
writes OUT.json: per mode the step times, every rank's master + state bytes
(`opt.state_nbytes()`), the check's outcome.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import fast
import fast.distributed

from .plan import PARAM_SETS
from .workloads import CHAINER_HYPERPARAMS, host_arrays

OPTIMIZER = "AdamW"
CHECK_SCALE = 2.0 ** -10
CHECK_INT = 200  # |k| <= 200: every rank's k (r + 1) and their sum over 3 ranks exact in fp16


def make_optimizer(mode: str, params: dict, comm, exchange=None):
    actual = getattr(fast.optimizers, OPTIMIZER)(**CHAINER_HYPERPARAMS[OPTIMIZER])
    if mode == "plain":
        opt = actual
    else:
        opt = fast.distributed.create_multi_node_optimizer(actual, comm, zero=mode == "zero",
                                                           allreduce_grad_dtype=exchange)
    opt.setup(params)
    opt.use_fp32_update()
    return opt


def fresh_parameters(host) -> dict:
    return {f"/p{i}": fast.Parameter(p.astype(np.float16)) for i, p in enumerate(host.params)}


def check_integers(shapes) -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    return [rng.integers(-CHECK_INT, CHECK_INT + 1, size=shape).astype(np.float64) for shape in shapes]


def piece(array, opt, name):
    """This rank's piece of a whole array of parameter `name`, flattened."""
    if getattr(opt, "zero", False):
        b, e = opt.piece_range(name)
        return np.asarray(array).reshape(-1)[b:e]
    return np.asarray(array).reshape(-1)


def check_step(mode, opt, params, comm, integers, host, exchange) -> dict:
    """One step on gradients with an exact float16 mean, against one process on that mean."""
    n, r = comm.size, comm.rank
    for (name, p), k in zip(params.items(), integers):
        p.grad = (k * (r + 1) * CHECK_SCALE).astype(np.float16)
    # The mean as fast.distributed.exchange forms it: the sum in the exchange dtype (exact
    # here), times float64 1/N rounded to the exchange dtype, then cast to float16.
    mean = [((k * (n * (n + 1) // 2) * CHECK_SCALE) * (1.0 / n)).astype(exchange).astype(np.float16)
            for k in integers]
    before = [p.data.copy() for p in params.values()]
    opt.update()
    reference = fresh_parameters(host)
    one = make_optimizer("plain", reference, None)
    for p, g in zip(reference.values(), mean):
        p.grad = g
    one.update()
    changed = sum(int(np.count_nonzero(p.data != b)) for p, b in zip(params.values(), before))
    mismatches = []
    for name, p in params.items():
        ref = reference[name]
        pairs = [("parameter", p.data, ref.data),
                 ("fp32 master", p.update_rule.fp32_param, piece(ref.update_rule.fp32_param, opt, name))]
        pairs += [(f"state {key}", p.update_rule.state[key], piece(ref.update_rule.state[key], opt, name))
                  for key in ref.update_rule.state]
        for what, mine, theirs in pairs:
            mine = np.asarray(mine).reshape(-1)
            theirs = np.asarray(theirs).reshape(-1)
            if mine.shape != theirs.shape or mine.tobytes() != theirs.tobytes():
                mismatches.append(f"rank {r}: {name} {what}")
    digest = hashlib.sha256(b"".join(p.data.tobytes() for p in params.values())).hexdigest()
    return {"changed_elements": changed, "mismatches": mismatches[:5], "n_mismatches": len(mismatches),
            "parameter_digest": digest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--param-set", default="resnet50")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="replicated,zero")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--exchange", choices=("float16", "float32"), default="float32")
    args = parser.parse_args(argv)

    comm = fast.distributed.create_communicator("mpi")
    mpi = comm.mpi_comm
    modes = args.modes.split(",") + (["plain"] if args.plain else [])
    if "plain" in modes and comm.size != 1:
        raise SystemExit("--plain runs on one rank only")
    param_set = PARAM_SETS[args.param_set]
    host = host_arrays(param_set)
    grads = [(g * (comm.rank + 1)).astype(np.float16) for g in host.grads]
    integers = check_integers(param_set.shapes) if args.check else None

    optimizers, checks = {}, {}
    for mode in modes:
        params = fresh_parameters(host)
        opt = make_optimizer(mode, params, comm, np.dtype(args.exchange))
        optimizers[mode] = (opt, list(params.values()))
        if args.check and mode != "plain":
            checks[mode] = check_step(mode, opt, params, comm, integers, host, np.dtype(args.exchange))

    times = {mode: [] for mode in modes}
    for step in range(args.warmup + args.steps):
        first = step % len(modes)
        for mode in modes[first:] + modes[:first]:
            opt, params = optimizers[mode]
            for p, g in zip(params, grads):
                p.grad = g
            mpi.Barrier()
            start = time.perf_counter()
            opt.update()
            elapsed = time.perf_counter() - start
            if step >= args.warmup:
                times[mode].append(elapsed)
    after = {mode: hashlib.sha256(b"".join(p.data.tobytes() for p in optimizers[mode][1])).hexdigest()
             for mode in modes}

    local = {"times": times, "after_digest": after, "checks": checks,
             "state_nbytes": {mode: opt.state_nbytes() for mode, (opt, _) in optimizers.items()}}
    gathered = comm.allgather_obj(local)
    if comm.rank == 0:
        out = {"ranks": comm.size, "param_set": param_set.name, "n_params": param_set.n_params,
               "n_arrays": param_set.n_arrays, "optimizer": OPTIMIZER, "steps": args.steps,
               "warmup": args.warmup, "exchange_dtype": args.exchange, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "modes": {}}
        for mode in modes:
            per_rank = np.array([g["times"][mode] for g in gathered])
            out["modes"][mode] = {
                "step_s": per_rank.max(axis=0).tolist(),  # per step, the slowest rank
                "state_nbytes": [g["state_nbytes"][mode] for g in gathered],
                "ranks_agree_after_steps": len({g["after_digest"][mode] for g in gathered}) == 1,
            }
            if mode in checks:
                rank_checks = [g["checks"][mode] for g in gathered]
                out["modes"][mode]["check"] = {
                    "changed_elements": [c["changed_elements"] for c in rank_checks],
                    "mismatches": [m for c in rank_checks for m in c["mismatches"]],
                    "n_mismatches": sum(c["n_mismatches"] for c in rank_checks),
                    "ranks_agree": len({c["parameter_digest"] for c in rank_checks}) == 1,
                }
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
