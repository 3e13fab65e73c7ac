"""fast.distributed over MPI: 2 and 3 ranks launched with the mpich wheel's mpiexec.

Each launch runs tests/distributed/rank_scenarios.py on every rank (the ranks check
themselves bitwise against a single-process optimizer and write what they saw); the tests
here compare the ranks with one another. Every launch has a time limit, after which its
whole process group is killed and the test fails: a hang is a failure, never a stall.
MPICH runs more ranks than this 2-core machine has cores without any flag; each rank is
given one OpenMP thread (results do not depend on the thread count, docs/fast.md).
"""
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fast
from conformance.mutants.runner import launch_python
from tests.distributed import rank_scenarios as rs

HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).with_name("mpiexec")
LAUNCH_TIMEOUT_S = 240


def build_kernels_once():
    """Build (or find) fast's CPU kernels here, so that the ranks do not all compile them."""
    p = fast.Parameter(np.zeros(1, np.float32))
    fast.optimizers.SGD().setup([p]).update()


def launch(n_ranks, *args, script=HERE / "rank_scenarios.py", timeout=LAUNCH_TIMEOUT_S):
    """Run `script` on `n_ranks` ranks; (exit status, output). Fails the test on a hang."""
    assert MPIEXEC.exists(), "mpiexec of the mpich wheel is missing: install the project's test extra"
    build_kernels_once()
    status, out = launch_python(n_ranks, [script, *args], {"PYTHONPATH": str(HERE.parents[1])}, timeout)
    if status is None:
        pytest.fail("{} ranks did not finish within {} s (a hang):\n{}".format(n_ranks, timeout, out[-4000:]))
    return status, out


def rank_results(outdir, n_ranks):
    return [json.loads((outdir / "rank{}.json".format(r)).read_text()) for r in range(n_ranks)]


@pytest.fixture(scope="module", params=[(2, False), (3, False), (2, True), (3, True)],
                ids=["2ranks", "3ranks", "2ranks-zero", "3ranks-zero"])
def ranks(request, tmp_path_factory):
    """Every rank's results of the `all` scenarios, by rank (replicated or ZeRO)."""
    n_ranks, zero = request.param
    outdir = tmp_path_factory.mktemp("ranks{}{}".format(n_ranks, "-zero" if zero else ""))
    status, out = launch(n_ranks, "all-zero" if zero else "all", outdir)
    assert status == 0, out[-4000:]
    results = rank_results(outdir, n_ranks)
    for r in results:
        assert "crash" not in r, r["crash"]
    return results


def same_on_every_rank(results, *path):
    values = []
    for r in results:
        v = r
        for key in path:
            v = v[key]
        values.append(v)
    assert all(v == values[0] for v in values), "{} differs between ranks: {}".format("/".join(path), values)
    return values[0]


def test_every_rank_ran_and_knows_its_place(ranks):
    assert [r["rank"] for r in ranks] == list(range(len(ranks)))
    assert all(r["size"] == len(ranks) for r in ranks)
    assert [r["intra_rank"] for r in ranks] == list(range(len(ranks)))  # one node


@pytest.mark.parametrize("kind", ["identical", "mean"])
def test_ranks_equal_one_process_fed_the_mean_bitwise(ranks, kind):
    """`identical`: every rank fed the same gradients and the single process fed them too;
    `mean`: each rank fed its own, the single process their exact mean. After every step,
    in every dtype mode, on every rank: the same bytes.

    One exception, under ZeRO: GradientLARS's norms of a parameter that straddles a shard
    edge are sums of the ranks' float64 partial sums, added in another order than one
    process adds its chunks; in float64 mode the rate then differs in its last bits (in the
    narrower modes the rate is rounded to the gradient's dtype first and the bits agree)."""
    for config in ranks[0][kind]:
        for r in ranks:
            result = r[kind][config]
            if "zero" in r and config == "fp64-lars":
                assert result["worst_relative_parameter_difference"] < 1e-13, (kind, r["rank"], result)
                continue
            assert all(result["bitwise_equal_to_single_process"]), (kind, config, r["rank"])
            assert all(result["own_gradients_back"]), (kind, config, r["rank"])
            assert result["hook_saw"] == result["hook_saw_in_one_process"], (kind, config, r["rank"])
        same_on_every_rank(ranks, kind, config, "state")
        same_on_every_rank(ranks, kind, config, "events")
    if "zero" not in ranks[0]:  # a custom hook sees the mean in p.grad during the step
        assert len(ranks[0][kind]["fp32-custom-hook"]["hook_saw"][0]) == 4


def test_one_ranks_nan_skips_the_step_on_every_rank(ranks):
    events = same_on_every_rank(ranks, "nan_skip", "events")
    t, scale, rule_t = zip(*events)
    assert t == (1, 2, 3, 4, 5)                      # opt.t advances on the skipped step
    assert scale == (2.0, 4.0, 2.0, 4.0, 8.0)        # halved by the skip at step 3 (index 2)
    assert [rt[0] for rt in rule_t] == [1, 2, 2, 3, 4]  # rule.t does not advance
    for r in ranks:
        assert all(r["nan_skip"]["bitwise_equal_to_single_process"])
    same_on_every_rank(ranks, "nan_skip", "state")
    assert same_on_every_rank(ranks, "nan_skip", "check_nan_in_grads_safe") is False


BAD_INPUT = {
    "wrong_shape": ("ValueError", "gradient of parameter '/w' has shape (5, 3), expected (3, 5)"),
    "wrong_dtype": ("TypeError", "gradient of parameter '/b' has dtype float64, expected float32"),
    "not_an_array": ("TypeError", "gradient of parameter '/s' must be an array, got list"),
    "failing_lossfun": ("ZeroDivisionError", "loss of an empty batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_on_one_rank_raises_the_same_error_everywhere(ranks, case):
    last = len(ranks) - 1
    kind, message = BAD_INPUT[case]
    error = same_on_every_rank(ranks, "bad_input", case, "error")
    assert error == [kind, "rank {} of {}: {}".format(last, len(ranks), message)]
    assert all(r["bad_input"][case]["unchanged"] for r in ranks)
    if "after" in ranks[0]["bad_input"][case]:  # the next good step ran everywhere, alike
        same_on_every_rank(ranks, "bad_input", case, "after")


def test_drifted_hyperparameter_is_refused_everywhere(ranks):
    error = same_on_every_rank(ranks, "bad_input", "drifted_hyperparameter", "error")
    last = len(ranks) - 1
    assert error == ["ValueError", "ranks disagree on the optimizer's hyperparameters (rank 0: alpha=0.01; "
                     "rank {}: alpha=0.5); every rank must set up and drive the optimizer identically".format(last)]
    assert all(r["bad_input"]["drifted_hyperparameter"]["unchanged"] for r in ranks)
    same_on_every_rank(ranks, "bad_input", "drifted_hyperparameter", "after")


def test_a_none_gradient_counts_as_zeros_in_the_mean(ranks):
    for r in ranks:
        assert r["bad_input"]["none_counts_as_zeros"] == {"equal_to_one_process_fed_the_mean_with_zeros": True,
                                                          "none_again_after_the_step": True}


def test_setups_that_differ_across_ranks_are_refused_everywhere(ranks):
    last, n = len(ranks) - 1, len(ranks)
    tail = "; every rank must set up and drive the optimizer identically"
    assert same_on_every_rank(ranks, "bad_input", "setup_mismatch", "error") == [
        "ValueError", "ranks disagree on parameter #0 (rank 0: /w shape=(3, 5) dtype=float32 device=cpu; "
        "rank {}: /w shape=(5, 3) dtype=float32 device=cpu){}".format(last, tail)]
    assert all(r["bad_input"]["setup_mismatch"]["not_set_up"] for r in ranks)
    assert same_on_every_rank(ranks, "bad_input", "setup_names_differ", "error") == [
        "ValueError", "ranks disagree on parameter #1 (rank 0: /b shape=(7,) dtype=float32 device=cpu; "
        "rank {}: /v shape=(7,) dtype=float32 device=cpu){}".format(last, tail)]
    assert same_on_every_rank(ranks, "bad_input", "wrapper_mismatch", "error") == [
        "ValueError", "ranks disagree on the optimizer (rank 0: Adam profile=chainer; "
        "rank {}: SGD profile=chainer){}".format(last, tail)]
    assert same_on_every_rank(ranks, "bad_input", "zero_mismatch", "error") == [
        "ValueError", "ranks disagree on zero (rank 0: False; rank {}: True){}".format(last, tail)]
    assert n in (2, 3)


def zero_only(ranks):
    if "zero" not in ranks[0]:
        pytest.skip("a ZeRO scenario")


def test_zero_equals_replicated_bitwise_for_elementwise_rules(ranks):
    """Unquantized gradients, so the sums over 3 ranks round: both modes sum each element
    with the same reduce-scatter, so they agree bit for bit (noise drawn whole included)."""
    zero_only(ranks)
    for config in rs.ELEMENTWISE:
        for r in ranks:
            assert r["zero"][config]["zero_equals_replicated"], (config, r["rank"])


def test_zero_updates_each_piece_where_its_parameter_lives(ranks):
    """Every rank's piece of every parameter is a view of the parameter's own memory (the
    padded buffer the blocks are all-gathered in): the engine's group holds its pieces there,
    so no step copies them in or out. Where a group's pieces do not lie in a row (scalars,
    grouped apart, between them) the group keeps them apart, copied in and out, and the bits
    are the same."""
    zero_only(ranks)
    for r in ranks:
        for config in rs.ELEMENTWISE:
            assert all(r["zero"][config]["pieces_at_home"].values()), (config, r["rank"], r["zero"][config])
        assert r["zero"]["scalars_between"]["zero_equals_replicated"], r["rank"]
    assert not all(all(r["zero"]["scalars_between"]["pieces_at_home"].values()) for r in ranks)


def test_zero_saves_holding_its_shard_and_one_parameter(ranks):
    """Besides its shard, no rank allocates more than one parameter's whole arrays while it
    saves (save_npz: one array at a time, gathered on rank 0 and written from its memory in
    chunks of 256 KiB, beside zlib's compressor, about 0.5 MiB), serializes (each array
    gathered whole on every rank, handed to the serializer, dropped) or gathers the state a
    parameter at a time (its master and both AdamW states), plus a few KiB of bookkeeping.
    (Before, each rank held every rank's pieces, the whole state, while saving.)"""
    zero_only(ranks)
    for r in ranks:
        memory = r["zero"]["save_memory"]
        assert memory["file_matches_gathered_state"]
        peaks, array = memory["peaks"], memory["largest_array_bytes"]
        assert peaks["save_npz"] <= array + 1024 * 1024, (r["rank"], memory)
        assert peaks["serialize"] <= array + 64 * 1024, (r["rank"], memory)
        assert peaks["gather_state_by_parameter"] <= memory["largest_parameter_bytes"] + 64 * 1024, (r["rank"], memory)


def test_zero_keeps_one_shard_of_master_and_state_per_rank(ranks):
    """Per-rank master + state bytes: the ranks' shards add up to one process's (the pieces
    tile every parameter), and none holds more than one block (ceil(total / N) elements)."""
    zero_only(ranks)
    n = len(ranks)
    total = sum(int(np.prod(s)) for s in rs.SHAPES.values())
    for config in rs.ELEMENTWISE:
        replicated = ranks[0]["zero"][config]["state_nbytes"][0]
        shards = [r["zero"][config]["state_nbytes"][1] for r in ranks]
        assert all(r["zero"][config]["state_nbytes"][0] == replicated for r in ranks)
        assert sum(shards) == replicated, (config, shards, replicated)
        per_element = replicated // total
        assert max(shards) <= -(-total // n) * per_element
    pieces = [r["zero"]["pieces"] for r in ranks]
    # w (15) then b (7) then s (1) in one float32 buffer of 23 elements: blocks of 12 (2 ranks)
    # or 8 (3 ranks); b straddles an edge in both.
    if n == 2:
        assert pieces == [{"w": [0, 12], "b": [0, 0], "s": [0, 0]}, {"w": [12, 15], "b": [0, 7], "s": [0, 1]}]
    else:
        assert pieces == [{"w": [0, 8], "b": [0, 0], "s": [0, 0]}, {"w": [8, 15], "b": [0, 1], "s": [0, 0]},
                          {"w": [0, 0], "b": [1, 7], "s": [0, 1]}]


def test_zero_refuses_custom_hooks_everywhere(ranks):
    zero_only(ranks)
    error = same_on_every_rank(ranks, "zero", "custom_hook_error")
    assert error[0] == "TypeError" and error[1].startswith(
        "rank 0 of {}: optimizer hook 'custom' is not one of fast's built-in hooks".format(len(ranks)))


def test_checkpoint_errors_are_agreed_and_change_nothing(ranks):
    n = len(ranks)
    corrupt = same_on_every_rank(ranks, "checkpoint", "corrupt_error")
    assert corrupt[0] == "ValueError" and corrupt[1].startswith("rank 0 of {}: cannot read optimizer snapshot".format(n))
    missing = same_on_every_rank(ranks, "checkpoint", "missing_error")
    assert missing[0] == "ValueError" and "No such file or directory" in missing[1]
    for r in ranks:
        c = r["checkpoint"]
        assert c["exists_after_save"] and c["unchanged_after_bad_loads"] and c["reloaded_unchanged"]
        assert c["file_kept"]
    same_on_every_rank(ranks, "checkpoint", "state")
    unwritable = same_on_every_rank(ranks, "checkpoint", "unwritable_error")
    assert unwritable[0] == "FileNotFoundError" and unwritable[1].startswith("rank 0 of {}: ".format(n))
    diverged = same_on_every_rank(ranks, "checkpoint", "diverged_save_error")
    assert diverged[0] == "ValueError"
    assert diverged[1].startswith("ranks disagree on the optimizer's keys, counters and scalars to save (rank 0: "
                                  if "zero" in ranks[0] else "ranks disagree on the optimizer state to save (rank 0: ")


def single_process_resume_run(steps, checkpoint_at=None, checkpoint=None):
    opt, params = rs.build(rs.RESUME)
    rs.resume_steps(opt, params, 0, checkpoint_at or steps, 0, 1)
    if checkpoint is not None:
        fast.serializers.save_npz(checkpoint, opt)
    rs.resume_steps(opt, params, checkpoint_at or steps, steps, 0, 1)
    return rs.state_of(opt, params)


@pytest.mark.parametrize("save_mode,load_mode", [("", ""), ("-zero", "-zero"), ("-zero", "")],
                         ids=["replicated", "zero", "zero-then-replicated"])
def test_a_run_saved_on_3_ranks_resumes_on_2_and_on_1_exactly(tmp_path, save_mode, load_mode):
    """3 ranks run 4 steps and save; 2 ranks, and one plain process, load and run 4 more:
    both equal an uninterrupted single-process run bit for bit. Each step's per-rank
    gradients average to the same global gradient for any number of ranks. The file is the
    single-process file whether the 3 ranks were ZeRO-sharded or not."""
    ckdir, out3, out2 = tmp_path / "ck", tmp_path / "out3", tmp_path / "out2"
    for d in (ckdir, out3, out2):
        d.mkdir()
    status, out = launch(3, "resume-save" + save_mode, out3, ckdir)
    assert status == 0, out[-4000:]
    status, out = launch(2, "resume-load" + load_mode, out2, ckdir)
    assert status == 0, out[-4000:]
    same_on_every_rank(rank_results(out3, 3), "resume", "state")
    same_on_every_rank(rank_results(out2, 2), "resume", "state")

    single_ckpt = tmp_path / "single.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uninterrupted = single_process_resume_run(8, checkpoint_at=4, checkpoint=single_ckpt)

    with np.load(single_ckpt) as one, np.load(ckdir / "optimizer.npz") as three:
        assert sorted(one.files) == sorted(three.files)
        for key in one.files:
            assert one[key].dtype == three[key].dtype and one[key].tobytes() == three[key].tobytes(), key

    with np.load(out2 / "final.npz") as two:
        assert rs.bitwise_equal({k: two[k] for k in two.files}, uninterrupted)

    with np.load(ckdir / "params.npz") as saved:
        params = {k: fast.Parameter(saved[k].copy(), name=k) for k in rs.SHAPES}
    opt = rs.configure(fast.optimizers.Adam(profile="fixed", alpha=0.01).setup(params), rs.RESUME)
    fast.serializers.load_npz(ckdir / "optimizer.npz", opt)
    rs.resume_steps(opt, params, 4, 8, 0, 1)
    assert rs.bitwise_equal(rs.state_of(opt, params), uninterrupted)


EXAMPLE = HERE.parents[1] / "examples" / "train_distributed.py"


def test_distributed_example_is_one_process_averaging_the_shares(tmp_path):
    """`mpiexec -n 2 python examples/train_distributed.py`: its loss curve and parameters are
    bit for bit those of one process computing both halves' gradients and averaging them as
    the ranks do, so it departs from one process on the whole batch by exactly the rounding
    of the gradient average; and it learns."""
    out = tmp_path / "curves.json"
    status, log = launch(2, "--steps", 40, "--json", out, script=EXAMPLE)
    assert status == 0, log[-4000:]
    curves = json.loads(out.read_text())
    assert curves["ranks"] == 2
    assert curves["distributed"] == curves["one_process_averaging_shares"]
    assert curves["same_parameters"]
    distributed, whole = np.array(curves["distributed"]), np.array(curves["one_process_whole_batch"])
    assert distributed[0] == whole[0]  # the same start: parameters broadcast from rank 0
    assert distributed[-1] < 0.75 * distributed[0] and whole[-1] < 0.75 * whole[0]
    assert "equal to one process averaging the 2 shares' gradients: True" in log


@pytest.mark.parametrize("n_ranks,dying", [(2, 1), (3, 2), (3, 0)])
def test_a_rank_that_dies_ends_the_job_with_its_traceback(n_ranks, dying):
    """An uncaught exception on one rank between two collectives aborts every rank (the
    communicator's except hook calls MPI's Abort): the launch ends well within its limit,
    non-zero, with that rank's traceback, and no rank finishes."""
    status, out = launch(n_ranks, str(dying), script=HERE / "rank_dies.py", timeout=60)
    assert status != 0
    assert "RuntimeError: rank {} gives up between two updates".format(dying) in out
    assert "uncaught exception on rank {} of {}; aborting".format(dying, n_ranks) in out
    assert "finished" not in out


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_each_rank_runs_on_its_share_of_the_cores(n_ranks, tmp_path):
    """By default a rank's CPU passes run on its share of its node's cores (the ranks split
    the cores they may all use; at least one each), not on every core; a count given to
    create_communicator wins; a choice the user made before (fast.set_cpu_threads,
    OMP_NUM_THREADS) is left alone."""
    status, out = launch(n_ranks, tmp_path, script=HERE / "rank_threads.py", timeout=60)
    assert status == 0, out[-4000:]
    ranks = rank_results(tmp_path, n_ranks)
    cores = ranks[0]["cores"]
    shares = [max(1, cores // n_ranks + (1 if r < cores % n_ranks else 0)) for r in range(n_ranks)]
    assert [r["core_share"] for r in ranks] == [r["default"] for r in ranks] == shares
    assert all(r["given"] == 3 and r["user_chose_before"] == 2 and r["omp_num_threads_set"] == 0 for r in ranks)


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_the_float16_reduction_gives_mpichs_float16_sums(n_ranks, tmp_path):
    """The communicator sums float16 with its own MPI reduction (fast's F16C sum); every
    rank's block of a reduce-scatter equals MPICH's float16 MPI.SUM of the same buffers, bit
    for bit (in the order MPI adds three ranks, too), at a small and a large size."""
    status, out = launch(n_ranks, tmp_path, script=HERE / "rank_float16_sum.py", timeout=120)
    assert status == 0, out[-4000:]
    for r in rank_results(tmp_path, n_ranks):
        assert r["matched"] == [True, True], r
