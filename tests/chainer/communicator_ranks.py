"""Run under ``mpiexec -n 2``: ChainerMN's dataset, iterator and evaluator helpers called
with fast.distributed's communicator and with ChainerMN's own ('naive'), each rank writing
what it got from both.

    python tests/chainer/communicator_ranks.py OUTDIR

Every rank runs every scenario of SCENARIOS in order (tests/chainer/rank_kit.py says what
it writes); test_chainermn_communicator.py compares the two communicators' results.
"""
import functools
import sys

import chainer
import chainermn
import numpy as np
from chainer.training import extensions

import fast.distributed
from tests.chainer.chainer_kit import MLP, blobs, seeded
from tests.chainer.rank_kit import run_scenarios, with_prefix

BATCH = 4
BATCHES = 6


def dataset():
    x, t = blobs(n=16)
    return chainer.datasets.TupleDataset(x, t)


def as_arrays(examples):
    """A list of (x, t) examples as two stacked arrays."""
    return {"x": np.stack([x for x, _ in examples]), "t": np.array([t for _, t in examples])}


def scatter(comm, rank):
    """This rank's shard from chainermn.scatter_dataset (root 0 shuffles with a seed and
    broadcasts the order with bcast_obj(..., max_buf_len=...), then sends each rank its range
    with send_obj / recv_obj)."""
    return as_arrays(list(chainermn.scatter_dataset(dataset(), comm, shuffle=True, seed=3)))


def scatter_index(comm, rank):
    """This rank's (begin, end) from chainermn.scatter_index (send_obj / recv_obj)."""
    return {"range": np.array(chainermn.scatter_index(10, comm))}


def batches(iterator):
    return as_arrays([example for _ in range(BATCHES) for example in iterator.next()])


def synchronized_iterator(comm, rank):
    """The first batches of chainermn.iterators.create_synchronized_iterator over a
    SerialIterator (rank 0 draws the shuffling seed and sends it with bcast_obj); NumPy's
    global RNG seeded by rank, so only the synchronization makes the orders agree."""
    with seeded("float32", seed=rank):
        iterator = chainer.iterators.SerialIterator(dataset(), BATCH)
        return batches(chainermn.iterators.create_synchronized_iterator(iterator, comm))


def multi_node_iterator(comm, rank):
    """The first batches of chainermn.iterators.create_multi_node_iterator: rank 0 reads and
    broadcasts every batch (with the communicator's bcast of arrays and bcast_obj)."""
    iterator = chainer.iterators.SerialIterator(dataset(), BATCH, shuffle=False)
    return batches(chainermn.iterators.create_multi_node_iterator(iterator, comm))


def multi_node_evaluator(comm, rank):
    """chainermn.create_multi_node_evaluator(extensions.Evaluator(...), comm), called as the
    Trainer calls it: each rank evaluates its half, the means are averaged with
    allreduce_obj."""
    x, t = blobs(n=16)
    with seeded("float32"):
        model = chainer.links.Classifier(MLP(in_size=x.shape[1]))
    half = chainer.datasets.TupleDataset(x[rank::2], t[rank::2])
    iterator = chainer.iterators.SerialIterator(half, BATCH, repeat=False, shuffle=False)
    evaluator = chainermn.create_multi_node_evaluator(extensions.Evaluator(iterator, model), comm)
    return {key: np.array(value) for key, value in evaluator().items()}


HELPERS = {"scatter-dataset": scatter, "scatter-index": scatter_index,
           "synchronized-iterator": synchronized_iterator, "multi-node-iterator": multi_node_iterator,
           "multi-node-evaluator": multi_node_evaluator}


def call(helper, comm_name, comm, rank):
    """What `helper` gives with `comm`, under comm_name/."""
    return with_prefix(comm_name, helper(comm, rank))


def main(outdir):
    comms = {"chainermn": chainermn.create_communicator("naive"),
             "fast": fast.distributed.create_communicator("mpi")}
    rank = comms["fast"].rank
    scenarios = {"{}-{}".format(name, comm_name): functools.partial(call, helper, comm_name, comm, rank)
                 for name, helper in HELPERS.items() for comm_name, comm in comms.items()}
    run_scenarios(scenarios, rank, outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
