"""Run under ``mpiexec -n 2``: ChainerMN and fast.distributed driving Chainer links, each
rank writing what it saw.

    python tests/chainer/chainermn_ranks.py OUTDIR

Every rank runs every scenario of SCENARIOS in order (tests/chainer/rank_kit.py says what
it writes); test_chainermn.py compares fast against ChainerMN with chainer.optimizers on the
same rank, and rank against rank.

Rank r trains on its own shard of the data (every size-th example from r); the links start
from each rank's own random values, which the multi-node optimizers replace by rank 0's.
"""
import functools
import itertools
import os
import sys

import chainer
import chainer.links as L
import chainermn
import numpy as np
from chainer import training
from chainer.training import extensions

import fast
import fast.distributed
from tests.chainer.chainer_kit import (
    MLP, blobs, classification_loss, finish_setup, input_dtype, make_optimizer, seeded,
    training_state)
from tests.chainer.rank_kit import run_scenarios, with_prefix

STEPS = 3
TRAINER_EPOCHS = 3
SNAPSHOT_EPOCH = 2
BATCH = 4
#: the optimizers a Trainer runs with (see trainer_run)
TRAINER_KINDS = ("chainermn", "replicated", "replicated-initialized", "zero")
#: the Trainer kinds whose snapshot extension runs on every rank
SNAPSHOT_ON_EVERY_RANK = ("replicated-initialized", "zero")


class Ranks(object):
    """The two communicators over MPI_COMM_WORLD: ChainerMN's 'naive' and fast's 'mpi'."""

    def __init__(self):
        self.chainermn = chainermn.create_communicator("naive")
        self.fast = fast.distributed.create_communicator("mpi")
        self.rank, self.size = self.fast.rank, self.fast.size

    def shard(self, config, n=32):
        """This rank's (x, t): every size-th example of one data set, from example rank."""
        x, t = blobs(n=n, dtype=input_dtype(config))
        return x[self.rank::self.size], t[self.rank::self.size]


def train_step(opt, model, x, t, style):
    """One update, through update(lossfun, x, t) or cleargrads / backward / update(). The
    backward takes the optimizer's _loss_scale, the attribute Chainer's update(lossfun) and
    ChainerMN's read (every Chainer optimizer and fast's have it)."""
    lossfun = classification_loss(model)
    if style == "lossfun":
        opt.update(lossfun, x, t)
    else:
        model.cleargrads()
        lossfun(x, t).backward(loss_scale=opt._loss_scale)
        opt.update()


def chainermn_run(ranks, impl, config, lazy, steps, style="lossfun"):
    """ChainerMN's multi-node optimizer over the 'naive' communicator wrapping Adam of
    `impl`: `steps` updates after the first, which only broadcasts rank 0's parameters."""
    x, t = ranks.shard(config)
    with seeded(config, seed=ranks.rank):
        model = MLP(in_size=None if lazy else x.shape[1])
        opt = chainermn.create_multi_node_optimizer(make_optimizer(impl, "Adam"),
                                                    ranks.chainermn)
        opt.setup(model)
        finish_setup(opt, config)
        if config == "mixed16":
            opt.loss_scaling(interval=1)
        for _ in range(steps + 1):
            train_step(opt, model, x, t, style)
    return training_state(model)


def fast_distributed_run(ranks, config, lazy, zero, steps, style):
    """fast.distributed's multi-node optimizer (Adam) on the same data: its setup broadcasts
    the parameters that have arrays and every update then steps, except one that finds
    parameters that got their arrays since (a lazy link's first), which broadcasts them.
    ZeRO lays its shards out at setup and refuses a link without arrays: a lazy link runs
    one forward before it, as its error message asks (the same draws as ChainerMN's first
    forward)."""
    x, t = ranks.shard(config)
    with seeded(config, seed=ranks.rank):
        model = MLP(in_size=None if lazy else x.shape[1])
        if lazy and zero:
            model(x)
        opt = fast.distributed.create_multi_node_optimizer(
            fast.optimizers.Adam(), ranks.fast, zero=zero)
        opt.setup(model)
        finish_setup(opt, config)
        if config == "mixed16":
            opt.loss_scaling(interval=1)
        broadcast_first = lazy and not zero
        for _ in range(steps + 1 if broadcast_first else steps):
            train_step(opt, model, x, t, style)
    return whole_training_state(opt, model)


def whole_training_state(opt, model):
    """training_state of a link trained by a fast.distributed optimizer, its rules' state and
    masters gathered whole (collective; under ZeRO a rank's rules hold its pieces only)."""
    state = {key: value for key, value in training_state(model).items()
             if "/state/" not in key and not key.endswith("/fp32_param")}
    for name, whole in opt.gather_state().items():
        for key, value in sorted((whole["state"] or {}).items()):
            state["{}/state/{}".format(name, key)] = value
        if whole["fp32_param"] is not None:
            state[name + "/fp32_param"] = whole["fp32_param"]
    return state


def scenario_chainermn_wraps_fast(ranks, config):
    """(a) chainermn.create_multi_node_optimizer(fast.optimizers.Adam(), comm) and the same
    with chainer.optimizers.Adam."""
    return {**with_prefix("fast", chainermn_run(ranks, "fast", config, True, STEPS)),
            **with_prefix("chainer", chainermn_run(ranks, "chainer", config, True, STEPS))}


def scenario_fast_distributed(ranks, config, lazy, zero, style):
    """(b) fast.distributed (replicated or ZeRO) against ChainerMN with chainer.optimizers,
    both starting from rank 0's values and taking STEPS steps on the mean gradient."""
    return {**with_prefix("fast", fast_distributed_run(ranks, config, lazy, zero, STEPS, style)),
            **with_prefix("chainer", chainermn_run(ranks, "chainer", config, lazy, STEPS, style))}


def trainer_run(ranks, kind, out, resume=None):
    """A Trainer over this rank's shard (Adam, ExponentialShift, observe_lr, LogReport, the
    lazy MLP) with the optimizer of `kind`: 'chainermn' (ChainerMN with chainer.optimizers),
    'replicated' (fast.distributed, zero=False; the first update only broadcasts, as
    ChainerMN's) or 'zero' and 'replicated-initialized' (fast.distributed after one forward
    initialized the link: ZeRO refuses a link without arrays; the first update steps).
    Snapshots at epoch SNAPSHOT_EPOCH, into OUTDIR/trainer-<kind>-rank<r>/snapshot: by rank
    0 only for 'chainermn' and 'replicated' (as ChainerMN's examples do; every rank resumes
    from it, rank 0's iterator state included), by every rank for 'replicated-initialized'
    (serialize is local: each rank keeps its own iterator state) and 'zero' (serialize is
    collective). With `resume`, a fresh trainer loads a snapshot with
    chainer.serializers.load_npz first. Returns the model's training_state and the log
    (epoch, iteration, main/loss, lr)."""
    x, t = ranks.shard("float32")
    with seeded("float32", seed=ranks.rank):
        model = L.Classifier(MLP())
        if kind in ("zero", "replicated-initialized"):
            model.predictor(x[:BATCH])
        if kind == "chainermn":
            opt = chainermn.create_multi_node_optimizer(chainer.optimizers.Adam(alpha=0.01),
                                                        ranks.chainermn)
        else:
            opt = fast.distributed.create_multi_node_optimizer(
                fast.optimizers.Adam(alpha=0.01), ranks.fast, zero=(kind == "zero"))
        opt.setup(model)
        iterator = chainer.iterators.SerialIterator(chainer.datasets.TupleDataset(x, t), BATCH)
        updater = training.updaters.StandardUpdater(iterator, opt)
        trainer = training.Trainer(updater, (TRAINER_EPOCHS, "epoch"), out=out)
        trainer.extend(extensions.ExponentialShift("alpha", 0.5), trigger=(1, "epoch"))
        trainer.extend(extensions.observe_lr())
        trainer.extend(extensions.LogReport())
        if kind in SNAPSHOT_ON_EVERY_RANK or ranks.rank == 0:
            trainer.extend(extensions.snapshot(filename="snapshot"), trigger=(SNAPSHOT_EPOCH, "epoch"))
        if resume is not None:
            chainer.serializers.load_npz(resume, trainer)
        trainer.run()
    log = trainer.get_extension("LogReport").log
    state = training_state(model) if kind == "chainermn" else whole_training_state(opt, model)
    return state, [[entry[k] for k in ("epoch", "iteration", "main/loss", "lr")] for entry in log]


def scenario_trainer(ranks, kind, outdir):
    """(c) The uninterrupted Trainer run of `kind`, in OUTDIR/trainer-<kind>-rank<r>."""
    out = os.path.join(outdir, "trainer-{}-rank{}".format(kind, ranks.rank))
    state, log = trainer_run(ranks, kind, out)
    return {**with_prefix("run", state), "run/log": np.array(log)}


def scenario_trainer_resumed(ranks, kind, outdir):
    """(c) A fresh trainer of `kind` resumed from the snapshot of its uninterrupted run
    (each rank's own where every rank writes one, else rank 0's)."""
    writer = ranks.rank if kind in SNAPSHOT_ON_EVERY_RANK else 0
    snapshot = os.path.join(outdir, "trainer-{}-rank{}".format(kind, writer), "snapshot")
    out = os.path.join(outdir, "trainer-{}-resumed-rank{}".format(kind, ranks.rank))
    state, log = trainer_run(ranks, kind, out, resume=snapshot)
    return {**with_prefix("resumed", state), "resumed/log": np.array(log)}


def scenarios(ranks, outdir):
    """Scenario name -> the function of nothing that runs it, in the order they run."""
    run = functools.partial
    out = {}
    for config in ("float32", "mixed16"):
        out["chainermn-wraps-fast-" + config] = run(scenario_chainermn_wraps_fast, ranks, config)
    for mode, model, config, style in itertools.product(
            ("replicated", "zero"), ("eager", "lazy"), ("float32", "mixed16"), ("lossfun", "explicit")):
        out["fast-distributed-{}-{}-{}-{}".format(mode, model, config, style)] = run(
            scenario_fast_distributed, ranks, config, model == "lazy", mode == "zero", style)
    for kind in TRAINER_KINDS:
        out["trainer-" + kind] = run(scenario_trainer, ranks, kind, outdir)
    for kind in TRAINER_KINDS:
        out["trainer-{}-resumed".format(kind)] = run(scenario_trainer_resumed, ranks, kind, outdir)
    return out


def main(outdir):
    ranks = Ranks()
    run_scenarios(scenarios(ranks, outdir), ranks.rank, outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
