"""One rank of the distributed benchmark (benchmarks/test_distributed.py launches it).

    mpiexec -n N python -m benchmarks.distributed_rank OUT.json --param-set resnet50
        --mode fp32|fp16+master [--rounds R] [--warmup W] [--check] [--save-memory]

Every rank builds the same parameters (benchmarks.workloads.host_arrays) in the dtype mode
(`fp32`, or `fp16+master`: float16 parameters and gradients, `use_fp32_update()`) and sets
up, each on its own copy of them:

- `replicated` and `zero`: AdamW (the benchmarks' hyperparameters) wrapped by
  `fast.distributed.create_multi_node_optimizer(..., zero=...)`, the gradients exchanged in
  their own dtype (`allreduce_grad_dtype=None`);
- the floors' parts: `collectives`, the MPI collectives those steps make, on the same
  bytes (the communicator's reduce-scatter of the padded gradient buffer into one block,
  then its in-place all-gather of a padded buffer of the parameters' dtype, the same size);
  `whole_step`, `fast`'s one-process AdamW on the whole model (replicated's floor is
  collectives + whole_step); `shard_step`, the same on one flat parameter of ceil(P / N)
  elements, a 1/N shard (ZeRO's floor is collectives + shard_step);
- what a step does beyond its floor, timed alone: `pack`, the copy of the gradients into the
  padded exchange buffer (fast.backends.cpu.pack_into, as the step packs them), and
  `agreement`, the exchange of verdicts and step fingerprints every step begins with
  (fast.distributed.agreement.agree over the replicated optimizer's local checks);
- in fp16+master, the float16 exchange against others of the same gradients: `exchange_f32`,
  the same collectives on float32 buffers (what a float32 exchange of these gradients
  costs), `f16_sum`, the communicator's float16 reduce-scatter alone, and `mpich_f16_sum`,
  the same reduce-scatter with MPICH's own float16 `MPI.SUM` (what the communicator's
  reduction replaces).

No OMP_NUM_THREADS is set: each rank's CPU passes run on its share of the node's cores
(`create_communicator`), the same for a step and its floor.

Each round runs every item once, in an order rotated from round to round; before each the
ranks meet at a barrier, and each rank times the item alone with `time.perf_counter`; an
item's time is the largest over the ranks. Rank r's gradients are the benchmarks' gradients
times (r + 1), assigned to `p.grad` before each step, outside the timed region. The first
`--warmup` rounds are not kept.

`--check`: before the rounds, the first step of each mode runs on gradients whose sum over
the ranks is exact in the exchange dtype (small integers times 2^-10, rank r's scaled by
r + 1), and every rank compares its parameters, its fp32 master and its AdamW state (its
piece of them, under ZeRO) with a one-process AdamW stepped on that mean, bit for bit.

`--save-memory`: after the rounds, the ZeRO optimizer is saved (`fast.serializers.save_npz`,
uncompressed) while tracemalloc records each rank's peak allocation.

Rank 0 writes OUT.json: the rounds' times, every rank's master + state bytes, the check's
and the save's outcome.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import fast
import fast.distributed
from fast.backends import cpu
from fast.distributed import agreement
from fast.distributed.exchange import local_gradients
from fast.distributed.multi_node_optimizer import step_fingerprint
from fast.distributed.sharding import block_size

from .plan import PARAM_SETS
from .workloads import CHAINER_HYPERPARAMS, STORAGE_DTYPE, host_arrays

OPTIMIZER = "AdamW"
CHECK_SCALE = 2.0 ** -10
CHECK_INT = 200  # |k| <= 200: every rank's k (r + 1) and their sum over 3 ranks exact in fp16
MODES = ("replicated", "zero")


def make_optimizer(mode: str, params, comm, master: bool):
    actual = getattr(fast.optimizers, OPTIMIZER)(**CHAINER_HYPERPARAMS[OPTIMIZER])
    if mode == "plain":
        opt = actual
    else:
        opt = fast.distributed.create_multi_node_optimizer(actual, comm, zero=mode == "zero")
    opt.setup(params)
    if master:
        opt.use_fp32_update()
    return opt


def fresh_parameters(host, dtype) -> dict:
    return {f"/p{i}": fast.Parameter(p.astype(dtype)) for i, p in enumerate(host.params)}


def check_integers(shapes) -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    return [rng.integers(-CHECK_INT, CHECK_INT + 1, size=shape).astype(np.float64) for shape in shapes]


def piece(array, opt, name):
    """This rank's piece of a whole array of parameter `name`, flattened."""
    if getattr(opt, "zero", False):
        b, e = opt.piece_range(name)
        return np.asarray(array).reshape(-1)[b:e]
    return np.asarray(array).reshape(-1)


def check_step(opt, params, comm, integers, host, dtype, master) -> dict:
    """One step on gradients with an exact mean, against one process on that mean."""
    n, r = comm.size, comm.rank
    for (name, p), k in zip(params.items(), integers):
        p.grad = (k * (r + 1) * CHECK_SCALE).astype(dtype)
    # The mean as fast.distributed.exchange forms it: the sum (exact here), times float64
    # 1/N, rounded to the exchange dtype (the gradients' own).
    mean = [((k * (n * (n + 1) // 2) * CHECK_SCALE) * (1.0 / n)).astype(dtype) for k in integers]
    before = [p.data.copy() for p in params.values()]
    opt.update()
    reference = fresh_parameters(host, dtype)
    one = make_optimizer("plain", reference, None, master)
    for p, g in zip(reference.values(), mean):
        p.grad = g
    one.update()
    changed = sum(int(np.count_nonzero(p.data != b)) for p, b in zip(params.values(), before))
    mismatches = []
    for name, p in params.items():
        ref = reference[name]
        pairs = [("parameter", p.data, ref.data)]
        if master:
            pairs.append(("fp32 master", p.update_rule.fp32_param, piece(ref.update_rule.fp32_param, opt, name)))
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


class Collectives(object):
    """The collectives of one distributed step, on buffers of the same sizes: a reduce-scatter
    of a padded gradient buffer (dtype `exchange`) into one block, and an in-place all-gather
    of a padded buffer of dtype `gathered`. With `mpich_sum`, the reduce-scatter uses MPI's
    own MPI.SUM whatever the dtype."""

    def __init__(self, comm, total, exchange, gathered, mpich_sum=False, with_gather=True):
        self.comm = comm
        block = block_size(total, comm.size)
        rng = np.random.default_rng(comm.rank)
        self.padded = (rng.standard_normal(block * comm.size) * 1e-2).astype(exchange)
        self.block = np.zeros(block, exchange)
        self.gathered = np.zeros(block * comm.size, gathered) if with_gather else None
        self.mpich_sum = mpich_sum

    def __call__(self):
        if self.mpich_sum:
            MPI = sys.modules["mpi4py.MPI"]
            self.comm.mpi_comm.Reduce_scatter_block(self.padded, self.block, op=MPI.SUM)
        else:
            self.comm.reduce_scatter_sum(self.padded, self.block)
        if self.gathered is not None:
            self.comm.allgather_blocks(self.gathered)


def stepper(opt, params, grads):
    """A timed step: the gradients are assigned before (untimed), `update` is timed."""
    def prepare():
        for p, g in zip(params, grads):
            p.grad = g
    return prepare, opt.update


def save_memory(opt, comm) -> dict:
    """Each rank's peak traced allocation while `opt` (ZeRO) is saved, uncompressed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "zero.npz") if comm.rank == 0 else None
        path = comm.bcast_obj(path)
        comm.mpi_comm.Barrier()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            start = time.perf_counter()
            fast.serializers.save_npz(path, opt, compression=False)
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        size = os.path.getsize(path) if comm.rank == 0 else None
        comm.mpi_comm.Barrier()
    return {"peak_bytes": peak, "save_s": elapsed, "file_bytes": size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--param-set", default="resnet50")
    parser.add_argument("--mode", choices=("fp32", "fp16+master"), default="fp32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--save-memory", action="store_true")
    args = parser.parse_args(argv)

    comm = fast.distributed.create_communicator("mpi")
    dtype, master = np.dtype(STORAGE_DTYPE[args.mode]), args.mode == "fp16+master"
    param_set = PARAM_SETS[args.param_set]
    host = host_arrays(param_set)
    grads = [(g * (comm.rank + 1)).astype(dtype) for g in host.grads]
    total = param_set.n_params
    block = block_size(total, comm.size)

    items, checks, optimizers = {}, {}, {}
    for mode in MODES:
        params = fresh_parameters(host, dtype)
        opt = make_optimizer(mode, params, comm, master)
        if args.check:
            checks[mode] = check_step(opt, params, comm, check_integers(param_set.shapes), host, dtype, master)
        optimizers[mode] = (opt, list(params.values()))
        items[mode] = stepper(opt, list(params.values()), grads)
    whole = fresh_parameters(host, dtype)
    plain = make_optimizer("plain", whole, None, master)
    items["whole_step"] = stepper(plain, list(whole.values()), grads)
    shard = fast.Parameter((np.random.default_rng(1).standard_normal(block) * 0.02).astype(dtype))
    shard_grad = [(np.random.default_rng(2).standard_normal(block) * 1e-2).astype(dtype)]
    items["shard_step"] = stepper(make_optimizer("plain", [shard], None, master), [shard], shard_grad)
    nothing = lambda: None  # NOQA: E731
    items["collectives"] = (nothing, Collectives(comm, total, dtype, dtype))
    exchange_buffer = np.zeros(block * comm.size, dtype)
    sizes = [g.size for g in grads]
    items["pack"] = (nothing, lambda: cpu.pack_into(exchange_buffer, grads, sizes))
    replicated, replicated_params = optimizers["replicated"]
    named = list(zip([f"/p{i}" for i in range(len(grads))], replicated_params))
    items["agreement"] = (items["replicated"][0], lambda: agreement.agree(
        comm, lambda: local_gradients(named), fingerprint=lambda _: step_fingerprint(replicated.actual_optimizer)))
    if args.mode == "fp16+master":
        items["exchange_f32"] = (nothing, Collectives(comm, total, np.float32, np.float32))
        items["mpich_f16_sum"] = (nothing, Collectives(comm, total, np.float16, np.float16, mpich_sum=True,
                                                       with_gather=False))
        items["f16_sum"] = (nothing, Collectives(comm, total, np.float16, np.float16, with_gather=False))

    names = list(items)
    rounds = []
    for index in range(args.warmup + args.rounds):
        times = {}
        first = index % len(names)
        for name in names[first:] + names[:first]:
            prepare, run = items[name]
            prepare()
            comm.mpi_comm.Barrier()
            start = time.perf_counter()
            run()
            times[name] = time.perf_counter() - start
        if index >= args.warmup:
            rounds.append(times)
    after = {mode: hashlib.sha256(b"".join(p.data.tobytes() for p in optimizers[mode][1])).hexdigest()
             for mode in MODES}
    memory = save_memory(optimizers["zero"][0], comm) if args.save_memory else None

    local = {"rounds": rounds, "after_digest": after, "checks": checks, "memory": memory,
             "threads": fast.cpu_threads(), "core_share": comm.core_share,
             "state_nbytes": {mode: opt.state_nbytes() for mode, (opt, _) in optimizers.items()}}
    local["state_nbytes"]["plain"] = plain.state_nbytes()
    gathered = comm.allgather_obj(local)
    if comm.rank == 0:
        out = {"ranks": comm.size, "param_set": param_set.name, "n_params": total, "mode": args.mode,
               "n_arrays": param_set.n_arrays, "optimizer": OPTIMIZER, "rounds": args.rounds,
               "warmup": args.warmup, "threads": [g["threads"] for g in gathered],
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "times": [{name: max(g["rounds"][k][name] for g in gathered) for name in names}
                         for k in range(args.rounds)],
               "state_nbytes": {mode: [g["state_nbytes"][mode] for g in gathered] for mode in MODES + ("plain",)},
               "ranks_agree_after_steps": {mode: len({g["after_digest"][mode] for g in gathered}) == 1
                                           for mode in MODES},
               "save_memory": None if memory is None else [g["memory"] for g in gathered]}
        if args.check:
            out["check"] = {}
            for mode in MODES:
                rank_checks = [g["checks"][mode] for g in gathered]
                out["check"][mode] = {
                    "changed_elements": [c["changed_elements"] for c in rank_checks],
                    "mismatches": [m for c in rank_checks for m in c["mismatches"]],
                    "n_mismatches": sum(c["n_mismatches"] for c in rank_checks),
                    "ranks_agree": len({c["parameter_digest"] for c in rank_checks}) == 1,
                }
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
