"""ChainerMN and fast.distributed on Chainer links under ``mpiexec -n 2``: one launch of
chainermn_ranks.py (every scenario on both ranks; see its docstring), whose files the tests
compare: fast against ChainerMN with chainer.optimizers on each rank, bit for bit, and the
ranks against each other. With 2 ranks the mean of two gradients, (a + b) * 0.5, is the same
bits in ChainerMN's 'naive' allreduce and in fast.distributed's exchange."""
from pathlib import Path

import numpy as np
import pytest

from tests.chainer.chainer_kit import assert_bitwise, assert_same_state
from tests.chainer.chainermn_ranks import STEPS, TRAINER_EPOCHS
from tests.chainer.rank_kit import N_RANKS, launched

SCRIPT = Path(__file__).resolve().parent / "chainermn_ranks.py"
#: Trainer-snapshot keys that hold wall-clock times
TIMED_KEYS = ("_snapshot_elapsed_time", "extensions/LogReport/_log")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return launched(SCRIPT, tmp_path_factory.mktemp("chainermn"))


def snapshot(ranks, kind, rank):
    """The Trainer snapshot that `rank` wrote in the run of `kind`, its timed keys left out."""
    with np.load(ranks.outdir / "trainer-{}-rank{}".format(kind, rank) / "snapshot") as f:
        return {k: f[k] for k in f.files if k not in TIMED_KEYS}


def assert_replicas(states):
    for r in range(1, N_RANKS):
        assert_same_state(states[r], states[0])


def step_counts(state):
    return {int(v) for k, v in state.items() if k.endswith("/t")}


@pytest.mark.parametrize("config", ["float32", "mixed16"])
def test_chainermn_wraps_a_fast_optimizer_as_a_chainer_one(ranks, config):
    """(a) chainermn.create_multi_node_optimizer(fast.optimizers.Adam(), comm): ChainerMN
    reads the optimizer's _loss_scale and drives update(); its first update broadcasts."""
    scenario = "chainermn-wraps-fast-" + config
    ours, theirs = ranks.arrays(scenario, "fast"), ranks.arrays(scenario, "chainer")
    for r in range(N_RANKS):
        assert_same_state(ours[r], theirs[r])
    assert_replicas(ours)
    assert step_counts(ours[0]) == {STEPS}


@pytest.mark.parametrize("style", ["lossfun", "explicit"])
@pytest.mark.parametrize("config", ["float32", "mixed16"])
@pytest.mark.parametrize("model", ["eager", "lazy"])
@pytest.mark.parametrize("mode", ["replicated", "zero"])
def test_fast_distributed_steps_on_the_mean_as_chainermn(ranks, mode, model, config, style):
    """(b) Each rank's gradient is its own shard's; both ranks step on their mean, as with
    ChainerMN, from rank 0's initial values. ChainerMN's first update only broadcasts;
    fast.distributed's setup broadcasts (and so does an update that finds a lazy link's new
    arrays), so the runs are aligned on the updates that step."""
    scenario = "fast-distributed-{}-{}-{}-{}".format(mode, model, config, style)
    ours, theirs = ranks.arrays(scenario, "fast"), ranks.arrays(scenario, "chainer")
    for r in range(N_RANKS):
        assert_same_state(ours[r], theirs[r])
    assert_replicas(ours)
    assert step_counts(ours[0]) == {STEPS}


def assert_same_log(log, reference):
    assert_bitwise(log, reference, "log (epoch, iteration, main/loss, lr)")
    assert len(log) == TRAINER_EPOCHS


def assert_same_runs(runs, reference_runs):
    """The same logs and training states, rank by rank; the reference trained to finite
    values (two runs that both went to NaN would compare equal)."""
    for r in range(N_RANKS):
        assert_same_log(runs[r].pop("log"), reference_runs[r].pop("log"))
        for key, value in reference_runs[r].items():
            assert np.isfinite(value).all(), "rank {} {} is not finite".format(r, key)
        assert_same_state(runs[r], reference_runs[r])


def test_a_trainer_under_fast_distributed_trains_as_under_chainermn(ranks):
    """(c) Trainer + StandardUpdater with fast.distributed (replicated, a lazy link whose
    first update only broadcasts) against ChainerMN with chainer.optimizers."""
    ours = ranks.arrays("trainer-replicated", "run")
    assert_same_runs(ours, ranks.arrays("trainer-chainermn", "run"))
    assert_replicas(ours)


def test_a_trainer_under_fast_distributed_resumes_as_under_chainermn(ranks):
    """(c) Rank 0 writes the snapshot (the snapshot extension on rank 0 only, as with
    ChainerMN); every rank resumes from it with chainer.serializers.load_npz(file, trainer).
    A fresh lazy link's first update after the resume only broadcasts, under ChainerMN
    too, so the resumed run is one step short of the uninterrupted one, in both."""
    assert_same_runs(ranks.arrays("trainer-replicated-resumed", "resumed"),
                     ranks.arrays("trainer-chainermn-resumed", "resumed"))


@pytest.mark.parametrize("kind", ["replicated-initialized", "zero"])
def test_a_trainer_under_fast_distributed_resumes_where_it_left_off(ranks, kind):
    """(c) The link initialized before setup (so every update steps), every rank writing
    its snapshot (replicated: serialize is local; ZeRO: collective) and resuming from its
    own with chainer.serializers.load_npz(file, trainer): the run ends where the
    uninterrupted run ends."""
    assert_same_runs(ranks.arrays("trainer-{}-resumed".format(kind), "resumed"),
                     ranks.arrays("trainer-" + kind, "run"))


def test_a_zero_trainer_trains_as_a_replicated_one(ranks):
    """(c) Under zero=True the Trainer's run equals the replicated one from the same start
    (the link initialized by one forward before setup), the state gathered whole."""
    assert_same_runs(ranks.arrays("trainer-zero", "run"),
                     ranks.arrays("trainer-replicated-initialized", "run"))


def test_every_zero_rank_writes_the_snapshot_a_replicated_rank_writes(ranks):
    """(c) Under zero=True every rank runs the snapshot extension (serialize is collective)
    and writes the whole state: each rank's file equals, key by key, the one the same rank
    writes in the replicated run."""
    ranks.arrays("trainer-zero", "run")  # the run itself got that far on every rank
    for r in range(N_RANKS):
        ours, theirs = snapshot(ranks, "zero", r), snapshot(ranks, "replicated-initialized", r)
        assert sorted(ours) == sorted(theirs)
        for key in theirs:
            assert_bitwise(ours[key], theirs[key], "rank {} {}".format(r, key))
