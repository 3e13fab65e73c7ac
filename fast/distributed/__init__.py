"""``fast`` past one process: replicated data-parallel training (ChainerMN's semantics).

    comm = fast.distributed.create_communicator("mpi")      # or "pure_nccl" (CuPy, unverified)
    opt = fast.distributed.create_multi_node_optimizer(fast.optimizers.Adam(), comm)
    opt.setup(params)            # collective: checks the ranks agree, broadcasts rank 0's values
    opt.update()                 # collective: averages the gradients, then the ordinary step

Importing this package does not import mpi4py; ``create_communicator`` does. ZeRO sharding
is not built yet (docs/distributed.md).
"""
from fast.distributed.communicators import (MpiCommunicator, PureNcclCommunicator,  # NOQA
                                            create_communicator)
from fast.distributed.multi_node_optimizer import MultiNodeOptimizer, create_multi_node_optimizer  # NOQA
