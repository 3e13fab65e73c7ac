"""Run under `mpiexec -n N`: the distributed scenarios, each rank writing what it saw.

    python tests/distributed/rank_scenarios.py SCENARIO OUTDIR [CHECKPOINT_DIR]

SCENARIO is `all` (every scenario below but the resume ones), `resume-save` or
`resume-load`, each with the replicated optimizer, or with `-zero` appended (`all-zero`,
...) with the ZeRO-sharded one. Each rank writes OUTDIR/rank<r>.json: per scenario, the bitwise verdicts it
checked itself against a single-process optimizer run in the same process, the digests of
its whole state (the test compares them across ranks), and the errors it caught (type and
message, compared across ranks). Nothing here tolerates a difference: comparisons are of
bytes.

Gradients are quantized (small integers times 2**-10) so that every sum over ranks is exact
in every exchange dtype, whatever order the transport adds in: the single-process
optimizer's input, the mean, can then be written down exactly (see `expected_mean`).
"""
import hashlib
import json
import os
import sys
import traceback
import warnings

import numpy as np

import fast
import fast.distributed as fd
from fast.distributed.agreement import digest

SHAPES = {"w": (3, 5), "b": (7,), "s": ()}
#: zero=True for the multi-node optimizers of this run (a scenario name ending in -zero)
ZERO = False


def quantized(rng, shape, dtype, limit=64):
    """Integers in [-limit, limit] times 2**-10, as `dtype` (exact in float16 and up)."""
    return np.asarray(rng.integers(-limit, limit + 1, size=shape) * 2.0 ** -10, dtype=dtype)


def make_params(dtype, seed, shapes=None):
    rng = np.random.default_rng(seed)
    return {k: fast.Parameter(quantized(rng, s, dtype, 512), name=k) for k, s in (shapes or SHAPES).items()}


def host(array):
    """A NumPy copy of a NumPy or CuPy array (or number)."""
    return np.array(array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else array)


def state_of(opt, params):
    """Every array and counter that a step may change, as name -> NumPy array (whole: a
    multi-node optimizer's masters and state are gathered, which is collective)."""
    inner = getattr(opt, "actual_optimizer", opt)
    out = {"opt.t": np.array(inner.t), "loss_scale": np.array(np.nan if inner.loss_scale is None
                                                             else inner.loss_scale)}
    gathered = opt.gather_state() if hasattr(opt, "gather_state") else None
    for name, p in sorted(params.items()):
        rule = p.update_rule
        whole = gathered["/" + name] if gathered is not None else {
            "t": rule.t, "state": rule.state, "fp32_param": rule.fp32_param}
        out[name + "/data"] = host(p.data)
        out[name + "/t"] = np.array(whole["t"])
        for key, value in sorted((whole["state"] or {}).items()):
            out["{}/{}".format(name, key)] = host(value)
        if whole["fp32_param"] is not None:
            out[name + "/fp32_param"] = host(whole["fp32_param"])
    return out


def state_digest(opt, params):
    state = state_of(opt, params)
    return digest(*[state[k] for k in sorted(state)])


def bitwise_equal(a, b):
    """Same keys, and every array equal byte for byte."""
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def configure(opt, config):
    if config.get("master"):
        opt.use_fp32_update()
    if config.get("loss_scaling"):
        opt.loss_scaling(interval=config.get("interval", 1000))
    for hook in config.get("hooks", ()):
        opt.add_hook(hook())
    return opt


def build(config, comm=None, seed=0):
    """(optimizer, params): multi-node when `comm` is given, else single-process.
    Every rank builds its parameters from its own seed; setup makes them rank 0's."""
    params = make_params(config["dtype"], seed)
    actual = getattr(fast.optimizers, config["optimizer"])(profile=config.get("profile", "chainer"),
                                                           **config.get("kwargs", {}))
    if comm is None:
        return configure(actual.setup(params), config), params
    opt = fd.create_multi_node_optimizer(actual, comm, zero=ZERO, allreduce_grad_dtype=config.get("exchange"))
    return configure(opt.setup(params), config), params


def expected_mean(grads_by_rank, grad_dtype, exchange_dtype):
    """ChainerMN's pure_nccl mean: the sum over ranks in the exchange dtype E (exact here,
    so computed in float64 and rounded to E without loss), times float64(1/N) rounded once
    to E, cast to the gradient dtype."""
    E = np.dtype(grad_dtype if exchange_dtype is None else exchange_dtype)
    total = sum(np.asarray(g, E).astype(np.float64) for g in grads_by_rank)
    assert np.array_equal(total.astype(E).astype(np.float64), total) or not np.all(np.isfinite(total))
    mean = np.asarray(total.astype(E).astype(np.float64) * (1.0 / len(grads_by_rank)), dtype=E)
    return np.asarray(mean, dtype=grad_dtype)


def rank_gradients(config, step, rank, size, identical):
    """Each rank's gradients at `step` (unscaled); the same on every rank if `identical`."""
    seed = 1000 * step + (0 if identical else 17 * (rank + 1))
    rng = np.random.default_rng(seed)
    return {k: quantized(rng, s, np.float64) for k, s in SHAPES.items()}


def feed(params, grads, scale, dtype):
    for k, p in params.items():
        p.grad = np.asarray(grads[k] * (1.0 if scale is None else scale), dtype=dtype)


def run_against_single_process(comm, config, steps, identical, poison=None):
    """Step a multi-node optimizer and a single-process one (fed the gradient itself when
    every rank gets the same one, else the expected mean); report whether they stayed
    bitwise equal after every step, the loss-scale sequence and the t's."""
    opt, params = build(config, comm, seed=comm.rank)
    ref, ref_params = build(config, seed=0)
    dtype = config["dtype"]
    equal_after_each_step = []
    worst_relative = 0.0
    events = []
    own_gradients_back = []
    for step in range(steps):
        scale = opt.loss_scale
        mine = rank_gradients(config, step, comm.rank, comm.size, identical)
        all_ranks = [rank_gradients(config, step, r, comm.size, identical) for r in range(comm.size)]
        if poison is not None and poison[0] == step:
            for r in ([poison[1]] if poison[1] >= 0 else range(comm.size)):
                all_ranks[r]["w"][1, 2] = np.nan
            mine = all_ranks[comm.rank]
        feed(params, mine, scale, dtype)
        if identical:  # the single process gets the very gradient every rank got
            feed(ref_params, mine, scale, dtype)
        else:
            for k, p in ref_params.items():
                p.grad = expected_mean([np.asarray(g[k] * (1.0 if scale is None else scale), dtype)
                                        for g in all_ranks], dtype, config.get("exchange"))
        fed = {k: p.grad for k, p in params.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update()
            ref.update()
        own_gradients_back.append(all(params[k].grad is g for k, g in fed.items()))
        mine_state, ref_state = state_of(opt, params), state_of(ref, ref_params)
        equal_after_each_step.append(bitwise_equal(mine_state, ref_state))
        worst_relative = max([worst_relative] + [float(np.max(np.abs(mine_state[k] - ref_state[k]) / np.maximum(
            np.abs(ref_state[k]), 1e-300), initial=0.0)) for k in ref_state if k.endswith("/data")])
        events.append([opt.t, opt.loss_scale, [params[k].update_rule.t for k in sorted(params)]])
    return {"bitwise_equal_to_single_process": equal_after_each_step, "events": events,
            "worst_relative_parameter_difference": worst_relative,
            "state": state_digest(opt, params), "own_gradients_back": own_gradients_back,
            "hook_saw": recorded(opt), "hook_saw_in_one_process": recorded(ref)}


class GradientRecorder(object):
    """A custom optimizer hook (run as Chainer runs one, on ``p.grad`` itself): records a
    digest of the gradients it sees, which in a multi-node step must be the mean."""

    name = "gradient_recorder"

    def __init__(self):
        self.seen = []

    def __call__(self, optimizer):
        self.seen.append(digest(*[p.grad for _, p in sorted(optimizer.named_parameters())]))


def recorded(opt):
    """What the GradientRecorder hooks of ``opt`` saw (a list per hook)."""
    inner = getattr(opt, "actual_optimizer", opt)
    return [h.seen for _, _, h in inner.named_hooks() if isinstance(h, GradientRecorder)]


CONFIGS = {
    "fp32-adam-clipping": {"optimizer": "Adam", "dtype": np.float32, "kwargs": {"alpha": 0.01},
                           "hooks": [lambda: fast.optimizer_hooks.GradientClipping(0.05)]},
    "fp16-master-dynamic-fixed": {"optimizer": "AdamW", "dtype": np.float16, "master": True,
                                  "loss_scaling": True, "profile": "fixed",
                                  "kwargs": {"alpha": 0.01, "weight_decay_rate": 0.01},
                                  "hooks": [lambda: fast.optimizer_hooks.GradientClipping(0.05)]},
    "fp16-master-dynamic-exchange-fp32": {"optimizer": "Adam", "dtype": np.float16, "master": True,
                                          "loss_scaling": True, "exchange": np.float32,
                                          "hooks": [lambda: fast.optimizer_hooks.WeightDecay(1e-3)]},
    "fp16-no-master": {"optimizer": "MomentumSGD", "dtype": np.float16, "kwargs": {"lr": 0.05}},
    "fp64-lars": {"optimizer": "MomentumSGD", "dtype": np.float64,
                  "hooks": [lambda: fast.optimizer_hooks.GradientLARS(threshold=1e-3)]},
    # replicated only (ZeRO refuses custom hooks): the hook sees p.grad during the step
    "fp32-custom-hook": {"optimizer": "Adam", "dtype": np.float32, "kwargs": {"alpha": 0.01},
                         "hooks": [GradientRecorder], "replicated_only": True},
}


def configs():
    """The configurations this run's mode takes."""
    return {name: c for name, c in CONFIGS.items() if not (ZERO and c.get("replicated_only"))}


def scenario_identical(comm):
    """N ranks fed the same gradients equal one process fed them, bitwise."""
    return {name: run_against_single_process(comm, c, 4, identical=True) for name, c in configs().items()}


def scenario_mean(comm):
    """N ranks fed different gradients equal one process fed their mean, bitwise."""
    return {name: run_against_single_process(comm, c, 4, identical=False) for name, c in configs().items()}


def scenario_nan_skip(comm):
    """The last rank's NaN at step 2 skips that step on every rank (dynamic loss scaling)."""
    # interval=1: after the skip the scale grows by 2 per step, so it stays a power of two and
    # every loss-scaled gradient (and so the sum over ranks) stays exact in float16.
    config = dict(CONFIGS["fp16-master-dynamic-fixed"], interval=1)
    out = run_against_single_process(comm, config, 5, identical=False, poison=(2, comm.size - 1))
    # check_nan_in_grads on its own: the last rank's inf makes every rank unsafe to update.
    opt, params = build(config, comm, seed=comm.rank)
    feed(params, rank_gradients(config, 0, comm.rank, comm.size, False), opt.loss_scale, np.float16)
    if comm.rank == comm.size - 1:
        params["b"].grad[3] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.check_nan_in_grads()
    out["check_nan_in_grads_safe"] = opt.is_safe_to_update()
    return out


def caught(action):
    """(type name, message) of what `action` raised, or None."""
    try:
        action()
    except Exception as err:
        return [type(err).__name__, str(err)]
    return None


def bad_input_case(comm, opt, params, spoil, repair=None, dtype=np.float32):
    """Spoil the last rank's input, update, and report the error and whether anything
    changed; then (after `repair` on the last rank) a good update must go through on every
    rank: no rank was left behind in a collective."""
    before = state_digest(opt, params)
    feed(params, rank_gradients(None, 9, comm.rank, comm.size, False), opt.loss_scale, dtype)
    if comm.rank == comm.size - 1:
        spoil(params)
    error = caught(opt.update)
    unchanged = state_digest(opt, params) == before
    if repair is not None and comm.rank == comm.size - 1:
        repair()
    feed(params, rank_gradients(None, 10, comm.rank, comm.size, False), opt.loss_scale, dtype)
    opt.update()
    return {"error": error, "unchanged": unchanged, "after": state_digest(opt, params)}


class _Loss(object):
    def __init__(self, params, fail):
        self.params, self.fail = params, fail

    def backward(self, loss_scale=None):
        for k, p in self.params.items():
            p.grad = np.ones(p.shape, np.float32)


def scenario_bad_input(comm):
    """Bad input on the last rank: every rank raises the same error, nothing changes."""
    config = CONFIGS["fp32-adam-clipping"]
    opt, params = build(config, comm, seed=comm.rank)
    last = comm.size - 1
    out = {}

    def wrong_shape(ps):
        ps["w"]._grad = np.zeros((5, 3), np.float32)

    def wrong_dtype(ps):
        ps["b"]._grad = np.zeros(7, np.float64)

    def not_an_array(ps):
        ps["s"]._grad = [0.0]

    def drifted_lr(ps):
        opt.alpha = 0.5

    def restore_lr():
        opt.alpha = 0.01

    out["wrong_shape"] = bad_input_case(comm, opt, params, wrong_shape)
    out["wrong_dtype"] = bad_input_case(comm, opt, params, wrong_dtype)
    out["not_an_array"] = bad_input_case(comm, opt, params, not_an_array)
    out["drifted_hyperparameter"] = bad_input_case(comm, opt, params, drifted_lr, restore_lr)

    def failing_lossfun():
        if comm.rank == last:
            raise ZeroDivisionError("loss of an empty batch")
        return _Loss(params, False)

    before = state_digest(opt, params)
    out["failing_lossfun"] = {"error": caught(lambda: opt.update(failing_lossfun)),
                              "unchanged": state_digest(opt, params) == before}

    # None counts as zeros, as in one process: the mean then includes the zeros, and the
    # rank's p.grad is None again after the step.
    mine, mine_params = build(config, comm, seed=0)
    ref, ref_params = build(config, seed=0)
    feed(mine_params, rank_gradients(None, 11, comm.rank, comm.size, False), None, np.float32)
    if comm.rank == last:
        mine_params["b"].grad = None
    all_ranks = [rank_gradients(None, 11, r, comm.size, False) for r in range(comm.size)]
    for k, p in ref_params.items():
        grads = [np.asarray(g[k], np.float32) for g in all_ranks]
        if k == "b":
            grads[last] = np.zeros(7, np.float32)
        p.grad = expected_mean(grads, np.float32, None)
    mine.update()
    ref.update()
    out["none_counts_as_zeros"] = {
        "equal_to_one_process_fed_the_mean_with_zeros": bitwise_equal(state_of(mine, mine_params),
                                                                      state_of(ref, ref_params)),
        "none_again_after_the_step": comm.rank != last or mine_params["b"].grad is None}

    # Setups that differ across ranks.
    shapes = dict(SHAPES)
    if comm.rank == last:
        shapes["w"] = (5, 3)
    bad = {k: fast.Parameter(np.zeros(s, np.float32), name=k) for k, s in shapes.items()}
    fresh = fd.create_multi_node_optimizer(fast.optimizers.Adam(), comm, zero=ZERO)
    out["setup_mismatch"] = {"error": caught(lambda: fresh.setup(bad)),
                             "not_set_up": fresh.actual_optimizer.target is None}
    names = {("v" if comm.rank == last and k == "b" else k): np.zeros(s, np.float32) for k, s in SHAPES.items()}
    fresh2 = fd.create_multi_node_optimizer(fast.optimizers.Adam(), comm, zero=ZERO)
    out["setup_names_differ"] = {"error": caught(lambda: fresh2.setup(
        {k: fast.Parameter(v, name=k) for k, v in names.items()}))}
    out["wrapper_mismatch"] = {"error": caught(lambda: fd.create_multi_node_optimizer(
        fast.optimizers.Adam() if comm.rank != last else fast.optimizers.SGD(), comm, zero=ZERO))}
    out["zero_mismatch"] = {"error": caught(lambda: fd.create_multi_node_optimizer(
        fast.optimizers.Adam(), comm, zero=(comm.rank == last)))}
    return out


class _Custom(object):
    name = "custom"

    def __call__(self, opt):
        pass


ELEMENTWISE = {  # no hook that reduces: ZeRO and replicated must give the same bits
    "fp32-adam": {"optimizer": "Adam", "dtype": np.float32, "kwargs": {"alpha": 0.01}},
    "fp16-master-amsgrad-fixed": {"optimizer": "AMSGrad", "dtype": np.float16, "master": True,
                                  "loss_scaling": True, "profile": "fixed",
                                  "hooks": [lambda: fast.optimizer_hooks.WeightDecay(1e-3)]},
    "fp16-rmsprop-exchange-fp32": {"optimizer": "RMSpropGraves", "dtype": np.float16, "exchange": np.float32,
                                   "kwargs": {"lr": 1e-3}},
    "fp64-msvag-noise": {"optimizer": "MSVAG", "dtype": np.float64,
                         "hooks": [lambda: fast.optimizer_hooks.GradientNoise(
                             0.01, noise_func=lambda xp, shape, dtype, hook, rule: xp.full(shape, 0.01, dtype)
                             * np.arange(np.prod(shape, dtype=int)).reshape(shape))]},
}


#: scalars between the other parameters: on some rank a rule group's pieces are not in a row
#: of its block, so its engine keeps them apart (copied in and out around each step)
SCALARS_BETWEEN = {"w": (3, 5), "s": (), "b": (7,), "s2": (), "c": (4,)}


def pieces_at_home(opt, params):
    """Per parameter: whether this rank's piece lives in the parameter's own memory (the
    engine updates it where ``p.data`` is), or is empty."""
    return {name: piece.data.size == 0 or bool(np.shares_memory(piece.data, params[name.lstrip("/")].data))
            for name, piece in opt.actual_optimizer.named_parameters()}


def zero_against_replicated(comm, config, shapes=None):
    """(state, master + state bytes, pieces at home) of a replicated and a ZeRO run on the same
    unquantized gradients (4 steps)."""
    runs = []
    for zero in (False, True):
        params = make_params(config["dtype"], comm.rank, shapes)
        actual = getattr(fast.optimizers, config["optimizer"])(profile=config.get("profile", "chainer"),
                                                               **config.get("kwargs", {}))
        opt = configure(fd.create_multi_node_optimizer(actual, comm, zero=zero,
                                                       allreduce_grad_dtype=config.get("exchange"))
                        .setup(params), config)
        for step in range(4):
            rng = np.random.default_rng([step, comm.rank])
            for k, p in params.items():
                p.grad = np.asarray(rng.standard_normal(p.shape) * (opt.loss_scale or 1.0), config["dtype"])
            opt.update()
        runs.append((state_of(opt, params), opt.state_nbytes(), pieces_at_home(opt, params) if zero else None))
    return runs


class DigestSerializer(fast.serializers.Serializer):
    """A saving serializer that keeps nothing: it digests what it is given."""

    def __init__(self, entries=None, path=""):
        self.entries, self.path = ([] if entries is None else entries), path

    def __getitem__(self, key):
        return DigestSerializer(self.entries, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        h = hashlib.blake2b(digest_size=12)
        h.update(memoryview(np.ascontiguousarray(value)).cast("B"))
        self.entries.append((self.path + key, h.hexdigest()))
        return value


MEMORY_SHAPES = {"big": (300_000,), "mid": (60_000,), "small": (999,), "s": ()}


def gather_one_by_one(opt, names):
    """gather_state a parameter at a time, dropping each result."""
    for name in names:
        opt.gather_state([name])


def save_memory(comm, outdir):
    """Peak memory (tracemalloc: NumPy's buffers and Python's objects) a rank allocates while
    saving (save_npz), serializing into a serializer that keeps nothing, and gathering the
    state one parameter at a time, under ZeRO, fp16 + fp32 masters, AdamW: against the
    largest whole array (a float32 master or state of the largest parameter) and the rank's
    shard (its master and state bytes)."""
    import tracemalloc
    config = {"optimizer": "AdamW", "dtype": np.float16, "master": True, "profile": "fixed",
              "kwargs": {"alpha": 0.01}}
    params = make_params(np.float16, 0, MEMORY_SHAPES)
    actual = fast.optimizers.AdamW(alpha=0.01, profile="fixed")
    opt = configure(fd.create_multi_node_optimizer(actual, comm, zero=True).setup(params), config)
    for step in range(2):
        feed(params, {k: np.full(s, 0.5 + step) for k, s in MEMORY_SHAPES.items()}, None, np.float16)
        opt.update()
    names = ["/" + k for k in MEMORY_SHAPES]
    path = os.path.join(outdir, "memory.npz")
    peaks = {}
    tracemalloc.start()
    try:
        for what, action in (("save_npz", lambda: fast.serializers.save_npz(path, opt)),
                             ("serialize", lambda: opt.serialize(DigestSerializer())),
                             ("gather_state_by_parameter", lambda: gather_one_by_one(opt, names))):
            comm.mpi_comm.Barrier()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            action()
            peaks[what] = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    with np.load(path) as saved:
        whole = {k: saved[k].copy() for k in saved.files}
    gathered = opt.gather_state()
    matches = all(whole["{}/{}".format(n.lstrip("/"), k)].tobytes() == v.tobytes()
                  for n in names for k, v in gathered[n]["state"].items())
    largest = int(np.prod(MEMORY_SHAPES["big"])) * 4
    return {"peaks": peaks, "largest_array_bytes": largest, "largest_parameter_bytes": 3 * largest,
            "shard_bytes": opt.state_nbytes(), "file_matches_gathered_state": matches}


def scenario_zero(comm, outdir):
    """ZeRO against replicated on the same rank, fed the same unquantized gradients (sums
    that round): bitwise equal for elementwise rules; pieces updated where the parameters
    live; per-rank master and state bytes; memory while saving; hooks that would see a shard
    as the whole refused everywhere."""
    out = {}
    for name, config in ELEMENTWISE.items():
        runs = zero_against_replicated(comm, config)
        out[name] = {"zero_equals_replicated": bitwise_equal(runs[0][0], runs[1][0]),
                     "state_nbytes": [runs[0][1], runs[1][1]], "pieces_at_home": runs[1][2]}
    runs = zero_against_replicated(comm, ELEMENTWISE["fp16-master-amsgrad-fixed"], SCALARS_BETWEEN)
    out["scalars_between"] = {"zero_equals_replicated": bitwise_equal(runs[0][0], runs[1][0]),
                              "pieces_at_home": runs[1][2]}
    out["save_memory"] = save_memory(comm, outdir)
    params = make_params(np.float32, comm.rank)
    opt = fd.create_multi_node_optimizer(fast.optimizers.Adam(), comm, zero=True).setup(params)
    feed(params, rank_gradients(None, 1, comm.rank, comm.size, False), None, np.float32)
    opt.add_hook(_Custom())
    out["custom_hook_error"] = caught(opt.update)
    out["pieces"] = {k: list(opt.piece_range("/" + k)) for k in SHAPES}
    return out


def scenario_checkpoint(comm, outdir):
    """save_npz: rank 0 writes the single-process file; load_npz of a corrupt one fails
    everywhere with nothing changed."""
    config = CONFIGS["fp16-master-dynamic-fixed"]
    opt, params = build(config, comm, seed=comm.rank)
    for step in range(3):
        feed(params, rank_gradients(config, step, comm.rank, comm.size, False), opt.loss_scale, np.float16)
        opt.update()
    path = os.path.join(outdir, "ckpt.npz")
    fast.serializers.save_npz(path, opt)
    exists_after_save = os.path.exists(path)
    with open(path, "rb") as f:
        saved = f.read()
    bad = os.path.join(outdir, "corrupt.npz")
    if comm.rank == 0:
        with open(bad, "wb") as f:
            f.write(saved[: len(saved) // 2])
    comm.mpi_comm.Barrier()
    before = state_digest(opt, params)
    error = caught(lambda: fast.serializers.load_npz(bad, opt))
    missing = caught(lambda: fast.serializers.load_npz(os.path.join(outdir, "absent.npz"), opt))
    unchanged = state_digest(opt, params) == before
    fast.serializers.load_npz(path, opt)
    reloaded_unchanged = state_digest(opt, params) == before
    # rank 0 cannot write: every rank still takes its part in gathering every array (ZeRO),
    # then raises rank 0's error
    unwritable = caught(lambda: fast.serializers.save_npz(os.path.join(outdir, "no-such-dir", "x.npz"), opt))
    # A replica that drifted (replicated: one element of one rank's state; ZeRO, where each
    # element lives on one rank: one rank's rule.t): save refuses on every rank and leaves
    # the last good file in place.
    if comm.rank == comm.size - 1:
        if ZERO:
            params["w"].update_rule.t += 1
        else:
            params["w"].update_rule.state["m"][0, 0] += 1
    diverged = caught(lambda: fast.serializers.save_npz(path, opt))
    with open(path, "rb") as f:
        kept = f.read() == saved
    return {"exists_after_save": exists_after_save, "corrupt_error": error, "missing_error": missing,
            "unchanged_after_bad_loads": unchanged, "reloaded_unchanged": reloaded_unchanged,
            "state": before, "diverged_save_error": diverged, "file_kept": kept, "unwritable_error": unwritable}


RESUME = {"optimizer": "Adam", "dtype": np.float16, "master": True, "loss_scaling": True,
          "profile": "fixed", "kwargs": {"alpha": 0.01},
          "hooks": [lambda: fast.optimizer_hooks.GradientClipping(0.05)]}


def resume_gradients(step, rank, size):
    """The global gradient G of `step` plus a per-rank deviation that sums to zero over the
    ranks, so that the mean is G exactly for any number of ranks."""
    rng = np.random.default_rng(500 + step)
    out = {}
    for k, s in SHAPES.items():
        g = quantized(rng, s, np.float64, limit=32)
        delta = quantized(rng, s, np.float64, limit=8) * 2
        out[k] = g + (rank - (size - 1) / 2.0) * delta
    return out


def resume_steps(opt, params, first, last, rank, size):
    for step in range(first, last):
        feed(params, resume_gradients(step, rank, size), opt.loss_scale, np.float16)
        opt.update()


def scenario_resume_save(comm, outdir, ckdir):
    opt, params = build(RESUME, comm, seed=comm.rank)
    resume_steps(opt, params, 0, 4, comm.rank, comm.size)
    fast.serializers.save_npz(os.path.join(ckdir, "optimizer.npz"), opt)
    if comm.rank == 0:
        np.savez(os.path.join(ckdir, "params.npz"), **{k: p.data for k, p in params.items()})
    return {"state": state_digest(opt, params)}


def scenario_resume_load(comm, outdir, ckdir):
    with np.load(os.path.join(ckdir, "params.npz")) as saved:
        params = {k: fast.Parameter(saved[k].copy(), name=k) for k in SHAPES}
    actual = fast.optimizers.Adam(profile="fixed", alpha=0.01)
    opt = configure(fd.create_multi_node_optimizer(actual, comm, zero=ZERO).setup(params), RESUME)
    fast.serializers.load_npz(os.path.join(ckdir, "optimizer.npz"), opt)
    resume_steps(opt, params, 4, 8, comm.rank, comm.size)
    final = state_of(opt, params)  # collective
    if comm.rank == 0:
        np.savez(os.path.join(outdir, "final.npz"), **final)
    return {"state": state_digest(opt, params)}


def main(argv):
    global ZERO
    scenario, outdir = argv[1], argv[2]
    comm = fd.create_communicator("mpi")
    results = {"rank": comm.rank, "size": comm.size, "intra_rank": comm.intra_rank}
    try:
        if scenario.endswith("-zero"):
            ZERO, scenario = True, scenario[:-len("-zero")]
        if scenario == "all":
            for name, run in (("identical", scenario_identical), ("mean", scenario_mean),
                              ("nan_skip", scenario_nan_skip), ("bad_input", scenario_bad_input)):
                results[name] = run(comm)
            results["checkpoint"] = scenario_checkpoint(comm, outdir)
            if ZERO:
                results["zero"] = scenario_zero(comm, outdir)
        elif scenario == "resume-save":
            results["resume"] = scenario_resume_save(comm, outdir, argv[3])
        elif scenario == "resume-load":
            results["resume"] = scenario_resume_load(comm, outdir, argv[3])
        else:
            raise ValueError("unknown scenario " + scenario)
    except Exception:
        results["crash"] = traceback.format_exc()
        print(results["crash"], file=sys.stderr, flush=True)
    with open(os.path.join(outdir, "rank{}.json".format(comm.rank)), "w") as f:
        json.dump(results, f, indent=1, default=float)
    if "crash" in results:  # the other ranks may wait in a collective: end them all now
        comm.mpi_comm.Abort(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
