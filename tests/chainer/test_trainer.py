"""Chainer's training machinery driving a fast optimizer: Trainer + StandardUpdater +
SerialIterator on a synthetic classification set, an MLP with BatchNormalization, a
learning-rate shift, ``extensions.observe_lr()``, LogReport, ``extensions.snapshot()`` and
resume with ``chainer.serializers.load_npz(snapshot, trainer)``. Each case runs with
chainer.optimizers and with fast.optimizers from the same seeds and data: the logs, the
snapshot files and the final parameters are the same, bit for bit."""
import chainer
import chainer.links as L
import numpy as np
import pytest
from chainer import training
from chainer.training import extensions

from tests.chainer.chainer_kit import (
    MLP, assert_bitwise, assert_same_training, blobs,
    finish_setup, input_dtype, make_optimizer, seeded)

N_EXAMPLES = 32
BATCH = 8
EPOCHS = 3
ITERATIONS = EPOCHS * N_EXAMPLES // BATCH
SNAPSHOT_EPOCH = 2
SNAPSHOT = "snapshot"


class Case(object):
    """A configuration: the dtype configuration, the optimizer and its arguments, the shift
    extension, its trigger, and the loss scaling (None; 'dynamic': optimizer.loss_scaling();
    a number: StandardUpdater(loss_scale=...))."""

    def __init__(self, config, name, kwargs, shift, shift_trigger, loss_scale=None):
        self.config, self.name, self.kwargs = config, name, kwargs
        self.shift, self.shift_trigger, self.loss_scale = shift, shift_trigger, loss_scale


CASES = {
    "float32-MomentumSGD-ExponentialShift": Case(
        "float32", "MomentumSGD", {"lr": 0.1}, lambda: extensions.ExponentialShift("lr", 0.5),
        (1, "epoch")),
    "float32-Adam-ExponentialShift": Case(
        "float32", "Adam", {"alpha": 0.01}, lambda: extensions.ExponentialShift("alpha", 0.5),
        (1, "epoch")),
    "float64-SGD-LinearShift": Case(
        "float64", "SGD", {"lr": 0.1}, lambda: extensions.LinearShift("lr", (0.1, 0.01), (0, ITERATIONS)),
        (1, "iteration")),
    "float64-AdamW-InverseShift": Case(
        "float64", "AdamW", {"alpha": 0.01, "weight_decay_rate": 0.01},
        lambda: extensions.InverseShift("alpha", 0.5, 0.75), (1, "iteration")),
    "mixed16-Adam-dynamic-ExponentialShift": Case(
        "mixed16", "Adam", {"alpha": 0.01}, lambda: extensions.ExponentialShift("alpha", 0.5),
        (1, "epoch"), loss_scale="dynamic"),
    "mixed16-MomentumSGD-static-InverseShift": Case(
        "mixed16", "MomentumSGD", {"lr": 0.05}, lambda: extensions.InverseShift("lr", 0.5, 0.75),
        (1, "iteration"), loss_scale=128.0),
}


def train(impl, case, out, resume=None):
    """A Trainer run of `case` to epoch EPOCHS writing a snapshot at epoch SNAPSHOT_EPOCH,
    or, with `resume` (a snapshot file), a fresh trainer that loads it first. Returns
    (model, LogReport's log)."""
    x, t = blobs(n=N_EXAMPLES, dtype=input_dtype(case.config))
    with seeded(case.config):
        model = L.Classifier(MLP(batchnorm=True))
        opt = make_optimizer(impl, case.name, **case.kwargs).setup(model)
        finish_setup(opt, case.config)
        if case.loss_scale == "dynamic":
            opt.loss_scaling(interval=2)
        static_scale = None if case.loss_scale == "dynamic" else case.loss_scale
        iterator = chainer.iterators.SerialIterator(chainer.datasets.TupleDataset(x, t), BATCH)
        updater = training.updaters.StandardUpdater(iterator, opt, loss_scale=static_scale)
        trainer = training.Trainer(updater, (EPOCHS, "epoch"), out=str(out))
        trainer.extend(case.shift(), trigger=case.shift_trigger)
        trainer.extend(extensions.observe_lr())
        trainer.extend(extensions.LogReport())
        trainer.extend(extensions.snapshot(filename=SNAPSHOT), trigger=(SNAPSHOT_EPOCH, "epoch"))
        if resume is not None:
            chainer.serializers.load_npz(str(resume), trainer)
        trainer.run()
    return model, trainer.get_extension("LogReport").log


def without_times(log):
    return [{k: v for k, v in entry.items() if k != "elapsed_time"} for entry in log]


#: Trainer-snapshot keys that hold wall-clock times (the log holds elapsed_time)
TIMED_KEYS = ("_snapshot_elapsed_time", "extensions/LogReport/_log")


@pytest.fixture(scope="module", params=list(CASES))
def runs(request, tmp_path_factory):
    """For each implementation: the uninterrupted run, the snapshot it wrote, and the run
    resumed from that snapshot."""
    case = CASES[request.param]
    out = {}
    for impl in ("chainer", "fast"):
        directory = tmp_path_factory.mktemp(impl)
        model, log = train(impl, case, directory)
        snapshot = directory / SNAPSHOT
        resumed_model, resumed_log = train(impl, case, tmp_path_factory.mktemp(impl + "-resumed"),
                                           resume=snapshot)
        out[impl] = {"model": model, "log": log, "snapshot": snapshot,
                     "resumed_model": resumed_model, "resumed_log": resumed_log}
    out["case"] = case
    return out


def test_the_run_logs_and_ends_as_chainer(runs):
    ours, theirs = runs["fast"], runs["chainer"]
    assert len(theirs["log"]) == EPOCHS
    assert all("lr" in entry for entry in theirs["log"])
    assert without_times(ours["log"]) == without_times(theirs["log"])
    assert_same_training(ours["model"], theirs["model"])


def test_the_snapshot_holds_what_chainers_holds(runs):
    with np.load(runs["fast"]["snapshot"]) as ours, np.load(runs["chainer"]["snapshot"]) as theirs:
        assert sorted(ours.files) == sorted(theirs.files)
        for key in theirs.files:
            if key not in TIMED_KEYS:
                assert_bitwise(ours[key], theirs[key], key)


def test_the_resumed_run_logs_and_ends_as_chainers(runs):
    """Chainer's own resume is exact in float64 and float32 (in mixed16 its snapshot holds
    neither the fp32 masters nor the loss scale); fast's resumes as Chainer's does."""
    ours, theirs = runs["fast"], runs["chainer"]
    if runs["case"].config != "mixed16":
        assert without_times(ours["resumed_log"]) == without_times(ours["log"])
        for (name, p), (_, q) in zip(sorted(ours["resumed_model"].namedparams()),
                                     sorted(ours["model"].namedparams())):
            assert_bitwise(p.array, q.array, name)
    assert without_times(ours["resumed_log"]) == without_times(theirs["resumed_log"])
    assert_same_training(ours["resumed_model"], theirs["resumed_model"])
