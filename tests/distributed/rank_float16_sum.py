"""The "mpi" communicator's float16 reduce-scatter (its own MPI reduction, fast's F16C sum)
against MPICH's float16 MPI.SUM on the same buffers: rank 0 holds every float16 value, the
other ranks partners (random values, and values sharing rank 0's exponent with random low
bits, which make many exact ties), at a small and a large size (MPI picks its algorithm by
size). Each rank writes OUTDIR/rank<r>.json: whether its block matched, bit for bit."""
import json
import os
import sys

import numpy as np

import fast.distributed as fd

comm = fd.create_communicator("mpi")
MPI = sys.modules["mpi4py.MPI"]
rng = np.random.default_rng(comm.rank)
every = np.arange(1 << 16, dtype=np.uint16)
results = {"rank": comm.rank, "matched": []}
for copies in (1, 16):
    if comm.rank == 0:
        bits = np.tile(every, copies)
    else:
        near = np.tile(every, copies) ^ rng.integers(0, 1 << 12, every.size * copies, dtype=np.uint16)
        bits = np.where(rng.random(near.size) < 0.7, near, rng.integers(0, 1 << 16, near.size, dtype=np.uint16))
    block = bits.size // comm.size
    padded = bits[:block * comm.size].astype(np.uint16).view(np.float16)
    ours, theirs = np.empty(block, np.float16), np.empty(block, np.float16)
    comm.reduce_scatter_sum(padded, ours)
    comm.mpi_comm.Reduce_scatter_block(padded, theirs, op=MPI.SUM)
    nan = np.isnan(theirs)
    results["matched"].append(bool(np.array_equal(np.isnan(ours), nan)
                                   and ours[~nan].tobytes() == theirs[~nan].tobytes()))
    results.setdefault("elements", []).append(int(block))
with open(os.path.join(sys.argv[1], "rank{}.json".format(comm.rank)), "w") as f:
    json.dump(results, f)
