"""ChainerMN's dataset, iterator and evaluator helpers called with fast.distributed's
communicator, under ``mpiexec -n 2``: one launch of communicator_ranks.py, whose files the
tests compare with what the same helper gives with ChainerMN's own communicator, bit for
bit, and check for what the helper promises across the ranks."""
from pathlib import Path

import numpy as np
import pytest

from tests.chainer.chainer_kit import assert_bitwise, blobs
from tests.chainer.communicator_ranks import HELPERS
from tests.chainer.rank_kit import N_RANKS, launched

SCRIPT = Path(__file__).resolve().parent / "communicator_ranks.py"

@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return launched(SCRIPT, tmp_path_factory.mktemp("communicator"))


def sorted_rows(x):
    return x[np.lexsort(x.T[::-1])]


def assert_what_the_helper_promises(helper, by_rank):
    """The helper's own guarantee across the ranks, on one communicator's results."""
    if helper == "scatter-dataset":  # the shards partition the data set
        x, _ = blobs(n=16)
        assert_bitwise(sorted_rows(np.concatenate([r["x"] for r in by_rank])), sorted_rows(x), "the shards")
    elif helper == "scatter-index":
        assert [tuple(r["range"]) for r in by_rank] == [(0, 5), (5, 10)]
    else:  # the iterators and the evaluator: the same on every rank
        for r in range(1, N_RANKS):
            assert sorted(by_rank[r]) == sorted(by_rank[0])
            for key in by_rank[0]:
                assert_bitwise(by_rank[r][key], by_rank[0][key], "rank {} {}".format(r, key))


@pytest.mark.parametrize("helper", list(HELPERS))
def test_a_helper_gives_with_fasts_communicator_what_it_gives_with_chainermns(ranks, helper):
    theirs = ranks.arrays(helper + "-chainermn", "chainermn")
    assert_what_the_helper_promises(helper, theirs)
    ours = ranks.arrays(helper + "-fast", "fast")
    for r in range(N_RANKS):
        assert sorted(ours[r]) == sorted(theirs[r])
        for key in theirs[r]:
            assert_bitwise(ours[r][key], theirs[r][key], "rank {} {}".format(r, key))
