"""fast.distributed's logic in this process, over a one-rank test double of a communicator
(no MPI): argument checks, the pass-through API, and one rank equal to one process.

The collectives themselves are tested on 2 and 3 MPI ranks in test_distributed_mpi.py.
"""
import warnings

import numpy as np
import pytest

import fast
import fast.distributed as fd
from fast.distributed.exchange import MeanPlan


class OneRank(object):
    """The communicator interface for a world of one rank: every collective is the identity."""
    name, xp, rank, size, intra_rank = "mpi", np, 0, 1, 0

    def array_device_kind(self):
        return "cpu"

    def reduce_scatter_sum(self, padded, shard):
        shard[...] = padded

    def allgather_blocks(self, padded):
        pass

    def bcast_array(self, array, root=0):
        pass

    def allgather_host(self, array):
        return np.asarray(array)[None]

    def allgather_obj(self, obj):
        return [obj]

    def gather_obj(self, obj, root=0):
        return [obj]

    def bcast_obj(self, obj, root=0):
        return obj

    def gather_pieces(self, piece, counts, root=0):
        return np.array(piece).reshape(-1)

    def allgather_pieces(self, piece, counts):
        return np.array(piece).reshape(-1)


def params(dtype=np.float16, seed=0):
    rng = np.random.default_rng(seed)
    return {"w": fast.Parameter((rng.standard_normal((4, 3)) * 0.1).astype(dtype), name="w"),
            "b": fast.Parameter(np.zeros(3, dtype), name="b")}


def state(opt, ps):
    out = [np.array(opt.t), np.array(np.nan if opt.loss_scale is None else opt.loss_scale)]
    for p in ps.values():
        out += [p.data.copy(), np.array(p.update_rule.t)]
        out += [np.array(v) for _, v in sorted((p.update_rule.state or {}).items())]
        if p.update_rule.fp32_param is not None:
            out.append(np.array(p.update_rule.fp32_param))
    return [a.tobytes() for a in out]


def mixed_precision(opt):
    opt.use_fp32_update()
    opt.loss_scaling()
    opt.add_hook(fast.optimizer_hooks.GradientClipping(0.5))
    return opt


def test_unknown_communicator_is_refused():
    with pytest.raises(ValueError, match="unknown communicator 'gloo': use 'mpi' or 'pure_nccl'"):
        fd.create_communicator("gloo")


@pytest.mark.parametrize("dtype", [np.int32, "float8", np.complex64])
def test_allreduce_grad_dtype_must_be_a_float_dtype(dtype):
    with pytest.raises(ValueError, match="allreduce_grad_dtype must be numpy.float16, numpy.float32, numpy.float64"):
        fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), allreduce_grad_dtype=dtype)


def test_only_fast_optimizers_not_yet_set_up_are_wrapped():
    with pytest.raises(TypeError, match="actual_optimizer must be a fast optimizer"):
        fd.create_multi_node_optimizer(object(), OneRank())
    with pytest.raises(ValueError, match="actual_optimizer is already set up"):
        fd.create_multi_node_optimizer(fast.optimizers.Adam().setup(params()), OneRank())
    with pytest.raises(TypeError, match="communicator must come from fast.distributed.create_communicator"):
        fd.create_multi_node_optimizer(fast.optimizers.Adam(), object())


def test_zero_must_be_a_bool():
    with pytest.raises(TypeError, match="zero must be True or False, got 'yes'"):
        fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero="yes")


@pytest.mark.parametrize("zero", [False, True])
def test_update_before_setup_says_so(zero):
    opt = fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero=zero)
    with pytest.raises(RuntimeError, match="rank 0 of 1: Optimizer is not set up"):
        opt.update()


@pytest.mark.parametrize("zero", [False, True])
def test_the_actual_optimizers_api_passes_through(zero):
    opt = fd.create_multi_node_optimizer(fast.optimizers.Adam(alpha=0.1), OneRank(), zero=zero)
    ps = params()
    assert opt.setup(ps) is opt and opt.target is ps
    opt.alpha = 0.25
    assert opt.actual_optimizer.alpha == 0.25 and opt.alpha == 0.25
    mixed_precision(opt)
    assert opt.loss_scale == 1.0 and ps["w"].update_rule.fp32_param is None
    with pytest.raises(KeyError, match="already exists"):
        opt.add_hook(fast.optimizer_hooks.GradientClipping(0.5))


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("exchange", [None, np.float32])
def test_one_rank_equals_one_process_bitwise(exchange, zero):
    """On one rank the mean is the gradient itself (float16 -> float32 -> float16 is exact)."""
    mine, ref_ps = params(), params()
    opt = mixed_precision(fd.create_multi_node_optimizer(fast.optimizers.AdamW(alpha=0.01), OneRank(), zero=zero,
                                                         allreduce_grad_dtype=exchange).setup(mine))
    ref = mixed_precision(fast.optimizers.AdamW(alpha=0.01).setup(ref_ps))
    rng = np.random.default_rng(1)
    for step in range(5):
        grads = {k: rng.standard_normal(p.shape).astype(np.float16) for k, p in mine.items()}
        if step == 2:
            grads["w"][0, 0] = np.inf
        for ps, o in ((mine, opt), (ref_ps, ref)):
            for k, p in ps.items():
                p.grad = (grads[k] * o.loss_scale).astype(np.float16)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                o.update()
        assert state(opt, mine) == state(ref, ref_ps), step


class Loss(object):
    def __init__(self, ps, value):
        self.ps, self.value = ps, value

    def backward(self, loss_scale=None):
        for p in self.ps.values():
            p.grad = np.full(p.shape, self.value * (loss_scale or 1.0), p.dtype)


@pytest.mark.parametrize("zero", [False, True])
def test_update_with_a_lossfun_backpropagates_with_the_loss_scale(zero):
    mine, ref_ps = params(), params()
    opt = mixed_precision(fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero=zero).setup(mine))
    ref = mixed_precision(fast.optimizers.Adam().setup(ref_ps))
    for step in range(3):
        opt.update(lambda v: Loss(mine, v), 0.125 * (step + 1))
        ref.update(lambda v: Loss(ref_ps, v), 0.125 * (step + 1))
    assert state(opt, mine) == state(ref, ref_ps)
    assert opt.loss_scale == 8.0


@pytest.mark.parametrize("zero", [False, True])
def test_a_step_that_raises_after_the_exchange_puts_the_gradients_back(zero):
    """RMSprop's eps (1e-8) rounds to 0 in float16 without a master: Chainer's check raises
    after the mean was taken, midway through the step, as one process raises it (opt.t and
    the rejected rule's t advanced, its state created, the rule after it untouched); the
    gradient objects are as before."""
    ps, ref_ps = params(), params()
    opt = fd.create_multi_node_optimizer(fast.optimizers.RMSprop(), OneRank(), zero=zero).setup(ps)
    ref = fast.optimizers.RMSprop().setup(ref_ps)
    grads = {k: np.ones(p.shape, np.float16) for k, p in ps.items()}
    for k in ps:
        ps[k].grad = grads[k]
        ref_ps[k].grad = grads[k].copy()
    for o in (opt, ref):
        with pytest.raises(ValueError, match="eps"):
            o.update()
    assert state(opt, ps) == state(ref, ref_ps)
    assert (opt.t, ps["w"].update_rule.t, ps["b"].update_rule.t) == (1, 1, 0)
    assert all(ps[k].grad is grads[k] for k in ps)


class Custom(object):
    name = "custom"

    def __call__(self, opt):
        pass


def test_zero_refuses_hooks_that_would_see_a_shard_as_the_whole():
    ps = params()
    opt = fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero=True).setup(ps)
    for p in ps.values():
        p.grad = np.ones(p.shape, np.float16)
    before = state(opt, ps)
    opt.add_hook(Custom())
    with pytest.raises(TypeError, match="rank 0 of 1: optimizer hook 'custom' is not one of fast's built-in "
                                        "hooks: under zero=True"):
        opt.update()
    opt.remove_hook("custom")
    ps["b"].update_rule.add_hook(fast.optimizer_hooks.GradientLARS(), name="lars")
    with pytest.raises(TypeError, match="the update rule of parameter '/b' has hooks of its own"):
        opt.update()
    assert state(opt, ps) == before
    ps["b"].update_rule.remove_hook("lars")
    opt.update()
    assert opt.t == 1


def test_zero_on_one_rank_holds_the_whole_state_and_saves_the_single_process_file(tmp_path):
    mine, ref_ps = params(np.float32), params(np.float32)
    opt = fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero=True).setup(mine)
    ref = fast.optimizers.Adam().setup(ref_ps)
    for o, ps in ((opt, mine), (ref, ref_ps)):
        for p in ps.values():
            p.grad = np.full(p.shape, 0.5, np.float32)
        o.update()
    assert opt.piece_range("/w") == (0, 12) and opt.state_nbytes() == 2 * 4 * 15
    with pytest.raises(KeyError, match="no parameter named '/v'; the parameters are \\['/b', '/w'\\]"):
        opt.piece_range("/v")
    whole = opt.gather_state()
    assert whole["/w"]["state"]["m"].shape == (4, 3) and whole["/w"]["t"] == 1
    fast.serializers.save_npz(tmp_path / "zero.npz", opt)
    fast.serializers.save_npz(tmp_path / "one.npz", ref)
    with np.load(tmp_path / "zero.npz") as a, np.load(tmp_path / "one.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(a[k].tobytes() == b[k].tobytes() for k in a.files)
    # Chainer's protocol (a Trainer's resume): a deserializer over the npz archive loads
    # each rank's pieces of the whole arrays
    resumed = fd.create_multi_node_optimizer(fast.optimizers.Adam(), OneRank(), zero=True).setup(params(np.float32))
    with np.load(tmp_path / "one.npz") as npz:
        resumed.serialize(fast.serializers.NpzDeserializer(npz))
    again = resumed.gather_state()
    assert again["/w"]["t"] == 1 and resumed.t == 1
    for name in whole:
        for key in whole[name]["state"]:
            assert again[name]["state"][key].tobytes() == whole[name]["state"][key].tobytes()

    class NotAnArchive(fast.serializers.Deserializer):
        def __call__(self, key, value):
            return value

    with pytest.raises(TypeError, match="under zero=True a snapshot loads from an npz archive"):
        opt.serialize(NotAnArchive())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("exchange", ["float16", "float32", "float64"])
@pytest.mark.parametrize("grad", ["float16", "float32", "float64"])
def test_where_the_mean_is_formed(n, exchange, grad):
    """One rank with E at least as wide as D: nothing to do. E = D with N a power of two
    (any N in float64): folded into the step's load. Otherwise a compiled pass, whose bits
    are ChainerMN's formula (tests/fast/test_fast_exchange_passes.py proves them)."""
    plan = MeanPlan(n, exchange, grad)
    e, d = np.dtype(exchange), np.dtype(grad)
    assert plan.skip == (n == 1 and e.itemsize >= d.itemsize)
    assert plan.foldable == (e == d and (n & (n - 1) == 0 or e == np.float64))
    assert plan.factor == 1.0 / n
    sums = (np.random.default_rng(n).standard_normal(1001) * 100).astype(e)
    out = np.empty(sums.size, d)
    plan.form(sums, out)
    with np.errstate(over="ignore"):
        want = (sums.astype(np.float64) * (1.0 / n)).astype(e).astype(d)
    assert out.tobytes() == want.tobytes()


def test_an_error_is_rebuilt_as_its_nearest_agreed_type():
    """Every rank raises the failing rank's error as the nearest type it can rebuild."""
    from fast.distributed.agreement import RankError
    err = RankError(np.linalg.LinAlgError("singular")).exception(2, 3)
    assert type(err) is ValueError and str(err) == "rank 2 of 3: LinAlgError: singular"
    err = RankError(fast.serializers.MissingKeyError("missing key 'w/m'")).exception(0, 2)
    assert type(err) is fast.serializers.MissingKeyError and str(err) == "rank 0 of 2: missing key 'w/m'"

    class Odd(Exception):
        pass

    err = RankError(Odd("strange")).exception(1, 2)
    assert type(err) is RuntimeError and str(err) == "rank 1 of 2: Odd: strange"


class FakeWorld(object):
    aborted = None

    def Get_rank(self):
        return 1

    def Get_size(self):
        return 3

    def Abort(self, code):
        self.aborted = code


def test_the_abort_hook_prints_the_traceback_then_aborts_and_can_be_removed(capsys, monkeypatch):
    """fast.distributed.abort: an uncaught exception reaches the except hook the program had
    installed before, then the communicator's Abort(1); restore_except_hook puts the old hook
    back, and installing twice installs once."""
    import sys
    from fast.distributed import abort
    from fast.distributed.abort import abort_on_uncaught_exception, restore_except_hook
    monkeypatch.setattr(abort, "FORWARD_WAIT_S", 0)

    seen = []
    original = sys.excepthook
    sys.excepthook = lambda *exc: seen.append(exc[1])
    try:
        world = FakeWorld()
        abort_on_uncaught_exception(world)
        installed = sys.excepthook
        abort_on_uncaught_exception(world)
        assert sys.excepthook is installed
        error = RuntimeError("boom")
        sys.excepthook(RuntimeError, error, None)
        assert seen == [error] and world.aborted == 1
        assert "uncaught exception on rank 1 of 3; aborting" in capsys.readouterr().err
        restore_except_hook()
        assert sys.excepthook is not installed
        sys.excepthook(RuntimeError, error, None)
        assert seen == [error, error]
    finally:
        sys.excepthook = original


def test_the_standard_traceback_goes_out_in_one_write_before_the_abort(tmp_path, monkeypatch):
    """With Python's own except hook underneath, the header and the whole traceback reach the
    rank's standard error descriptor in one write (the launcher, ended by the abort, forwards
    what it has read), and only then does the job abort."""
    import os
    import sys
    from fast.distributed import abort
    from fast.distributed.abort import abort_on_uncaught_exception, restore_except_hook
    monkeypatch.setattr(abort, "FORWARD_WAIT_S", 0)
    writes = []
    monkeypatch.setattr(abort.os, "write", lambda fd, data: writes.append((fd, data)) or len(data))
    target = open(tmp_path / "stderr", "w")
    fd = target.fileno()
    monkeypatch.setattr(sys, "stderr", target)
    original = sys.excepthook
    sys.excepthook = sys.__excepthook__
    try:
        world = FakeWorld()
        abort_on_uncaught_exception(world)
        try:
            raise RuntimeError("rank 1 gives up")
        except RuntimeError as error:
            sys.excepthook(RuntimeError, error, error.__traceback__)
        restore_except_hook()
    finally:
        sys.excepthook = original
        target.close()
    assert world.aborted == 1 and len(writes) == 1 and writes[0][0] == fd
    text = writes[0][1].decode()
    assert text.startswith("\nfast.distributed: uncaught exception on rank 1 of 3; aborting")
    assert "Traceback (most recent call last)" in text and text.endswith("RuntimeError: rank 1 gives up\n")
