"""``fast`` past one process: data-parallel training, replicated (ChainerMN's semantics)
or ZeRO-sharded (each rank keeps the master and state of its shard).

    comm = fast.distributed.create_communicator("mpi")      # or "pure_nccl" (CuPy, unverified)
    opt = fast.distributed.create_multi_node_optimizer(fast.optimizers.Adam(), comm, zero=True)
    opt.setup(params)            # collective: checks the ranks agree, broadcasts rank 0's values
    opt.update()                 # collective: averages the gradients, then the step

Importing this package does not import mpi4py; ``create_communicator`` does
(docs/distributed.md).
"""
from fast.distributed.communicators import (MpiCommunicator, PureNcclCommunicator,  # NOQA
                                            create_communicator)
from fast.distributed.multi_node_optimizer import (MultiNodeOptimizer, ZeroOptimizer,  # NOQA
                                                   create_multi_node_optimizer)
