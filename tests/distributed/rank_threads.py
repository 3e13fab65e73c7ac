"""How many threads each rank's CPU passes get (written to OUTDIR/rank<r>.json): its
share of the node's cores by default, the count the user gives create_communicator, a count
the user chose before (fast.set_cpu_threads, OMP_NUM_THREADS) left alone.

The launcher sets OMP_NUM_THREADS=1; it is removed here, before anything loads OpenMP, so
that the default is what a plain `mpiexec -n N python train.py` gets."""
import json
import os
import sys

os.environ.pop("OMP_NUM_THREADS", None)

import fast  # NOQA: E402
import fast.distributed as fd  # NOQA: E402
from fast.backends import cpu  # NOQA: E402

seen = {}
comm = fd.create_communicator("mpi")
seen["core_share"], seen["default"] = comm.core_share, fast.cpu_threads()
seen["cores"] = len(os.sched_getaffinity(0))
fd.create_communicator("mpi", cpu_threads=3)
seen["given"] = fast.cpu_threads()
fast.set_cpu_threads(2)
fd.create_communicator("mpi")
seen["user_chose_before"] = fast.cpu_threads()
fast.set_cpu_threads(None)
os.environ["OMP_NUM_THREADS"] = "1"
fd.create_communicator("mpi")
seen["omp_num_threads_set"] = cpu.threads()  # 0: left to OpenMP
with open(os.path.join(sys.argv[1], "rank{}.json".format(comm.rank)), "w") as f:
    json.dump({"rank": comm.rank, "size": comm.size, **seen}, f)
