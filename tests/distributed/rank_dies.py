"""One rank raises between two collective updates (argv[1]: which rank): with the
communicator's default abort_on_error the whole job must end at once, non-zero, with that
rank's traceback (without it, the other ranks would wait in the second update for ever)."""
import sys

import numpy as np

import fast
import fast.distributed as fd

comm = fd.create_communicator("mpi")
params = {"w": fast.Parameter(np.zeros(4, np.float32))}
opt = fd.create_multi_node_optimizer(fast.optimizers.SGD(), comm).setup(params)
params["w"].grad = np.ones(4, np.float32)
opt.update()
if comm.rank == int(sys.argv[1]):
    raise RuntimeError("rank {} gives up between two updates".format(comm.rank))
params["w"].grad = np.ones(4, np.float32)
opt.update()
print("rank {} finished".format(comm.rank))
