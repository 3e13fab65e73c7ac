"""The 'pure_nccl' communicator on GPUs (skipped without them: UNVERIFIED until it runs).

One rank per GPU: 1 rank needs one GPU (NCCL's unique id, communicator, sum and broadcast
on a single rank), 2 ranks need two (NCCL refuses two ranks on one GPU).
"""
import warnings

import pytest

from tests.distributed.test_distributed_mpi import HERE, launch, rank_results, same_on_every_rank


def gpu_count():
    """GPUs CuPy can use with NCCL, 0 when there are none (or no CuPy or NCCL)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CuPy warns when it cannot preload NCCL
            import cupy
            from cupy.cuda import nccl
        return cupy.cuda.runtime.getDeviceCount() if nccl.available else 0
    except Exception:
        return 0


@pytest.mark.gpu
@pytest.mark.parametrize("n_ranks", [1, 2])
def test_pure_nccl_ranks_equal_one_process_fed_the_mean(n_ranks, tmp_path):
    if gpu_count() < n_ranks:
        pytest.skip("needs {} GPU(s) with NCCL; the 'pure_nccl' communicator is unverified".format(n_ranks))
    status, out = launch(n_ranks, tmp_path, script=HERE / "rank_nccl.py")
    assert status == 0, out[-4000:]
    results = rank_results(tmp_path, n_ranks)
    for r in results:
        assert "crash" not in r, r["crash"]
        assert r["collectives"] == {"sum": True, "allgather": True, "bcast": True}
        for name, run in r["configs"].items():
            if name == "fp64-lars-zero":  # norms over shards: a few float64 ulps (docs/distributed.md)
                continue
            assert all(run["bitwise_equal_to_single_process"]), (name, r["rank"])
    for name in results[0]["configs"]:
        same_on_every_rank(results, "configs", name, "state")
