"""Run under `mpiexec -n N` on a machine with N GPUs: the 'pure_nccl' communicator.

    python tests/distributed/rank_nccl.py OUTDIR

Each rank uses GPU `intra_rank`, checks the raw collectives (reduce-scatter, all-gather,
broadcast) and then steps a multi-node optimizer on CuPy parameters, replicated and ZeRO,
each rank fed its own gradients, against a single-process CuPy optimizer fed their exact
mean (rank_scenarios.expected_mean), bitwise; it writes OUTDIR/rank<r>.json.
"""
import json
import os
import sys
import traceback

import numpy as np

import fast
import fast.distributed as fd
from tests.distributed import rank_scenarios as rs


def to_gpu(params, cupy):
    return {k: fast.Parameter(cupy.asarray(p.data), name=k) for k, p in params.items()}


def check_collectives(comm, cupy):
    padded = cupy.arange(4 * comm.size, dtype=cupy.float32) + comm.rank
    block = cupy.zeros(4, dtype=cupy.float32)
    comm.reduce_scatter_sum(padded, block)
    want = sum(np.arange(4 * comm.size, dtype=np.float32)[4 * comm.rank:4 * comm.rank + 4] + r
               for r in range(comm.size))
    gathered = cupy.zeros(4 * comm.size, dtype=cupy.float64)
    gathered[4 * comm.rank:4 * comm.rank + 4] = comm.rank
    comm.allgather_blocks(gathered)
    b = cupy.full(3, comm.rank, dtype=cupy.float16)
    comm.bcast_array(b, root=0)
    return {"sum": bool((block.get() == want).all()),
            "allgather": bool((gathered.get() == np.repeat(np.arange(comm.size), 4)).all()),
            "bcast": bool((b.get() == 0).all())}


def run(comm, cupy, config, zero, steps=4):
    params = to_gpu(rs.make_params(config["dtype"], comm.rank), cupy)
    actual = getattr(fast.optimizers, config["optimizer"])(profile=config.get("profile", "chainer"),
                                                           **config.get("kwargs", {}))
    opt = rs.configure(fd.create_multi_node_optimizer(actual, comm, zero=zero, allreduce_grad_dtype=config.get(
        "exchange")).setup(params), config)
    ref_params = to_gpu(rs.make_params(config["dtype"], 0), cupy)
    ref = rs.configure(getattr(fast.optimizers, config["optimizer"])(
        profile=config.get("profile", "chainer"), **config.get("kwargs", {})).setup(ref_params), config)
    equal = []
    for step in range(steps):
        scale = opt.loss_scale
        grads = [rs.rank_gradients(config, step, r, comm.size, False) for r in range(comm.size)]
        factor = 1.0 if scale is None else scale
        for k, p in params.items():
            p.grad = cupy.asarray(np.asarray(grads[comm.rank][k] * factor, config["dtype"]))
        for k, p in ref_params.items():
            p.grad = cupy.asarray(rs.expected_mean([np.asarray(g[k] * factor, config["dtype"]) for g in grads],
                                                   config["dtype"], config.get("exchange")))
        opt.update()
        ref.update()
        equal.append(rs.bitwise_equal(rs.state_of(opt, params), rs.state_of(ref, ref_params)))
    return {"bitwise_equal_to_single_process": equal, "state": rs.state_digest(opt, params)}


def main(outdir):
    import cupy
    from mpi4py import MPI
    cupy.cuda.Device(fd.create_communicator("mpi").intra_rank).use()
    comm = fd.create_communicator("pure_nccl")
    out = {"rank": comm.rank}
    try:
        out["collectives"] = check_collectives(comm, cupy)
        out["configs"] = {name + ("-zero" if zero else ""): run(comm, cupy, c, zero)
                          for name, c in rs.CONFIGS.items() for zero in (False, True)}
    except Exception:
        out["crash"] = traceback.format_exc()
        print(out["crash"], file=sys.stderr, flush=True)
    with open(os.path.join(outdir, "rank{}.json".format(comm.rank)), "w") as f:
        json.dump(out, f)
    MPI.COMM_WORLD.Barrier()
    return 1 if "crash" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
