"""fast.distributed's mean folded into the step (fast.engine.Engine.average_factor): the
kernels multiply each loaded gradient, a sum over N ranks, by 1/N and round the product to
the gradient's dtype D before anything else, where that is ChainerMN's mean
round_D(float64(sum) * float64(1/N)) bit for bit (fast.distributed.exchange.MeanPlan: N a
power of two, or any N in float64).

A step on sums with the factor must equal, bit for bit, the step one process takes on the
means computed by that formula in NumPy, on the CPU and the emulated GPU path (one source of
the load for both drivers), in every dtype mode, through the plain load (the float16 lanes,
the tiles, a float32/float64 gradient read in place), the hooks' path and the norm pass. The
sums: every float16 value (all of float16's rounding boundaries: its subnormals times 1/N are
where the rounding to D acts), and for float32 and float64 their own subnormal and boundary
values and random bit patterns."""
import warnings

import numpy as np
import pytest

import fast
import fast.backends
from fast.backends.cuda_emulator import EmulatedCudaBackend

EVERY_HALF = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
MODES = {"fp16": (np.float16, False), "fp16+master": (np.float16, True), "fp32": (np.float32, False),
         "fp64": (np.float64, False)}
RANKS = {"fp16": (2, 4, 1024), "fp16+master": (2, 8), "fp32": (2, 4, 1 << 20), "fp64": (2, 3, 6, 7)}


def sums_of(dtype):
    """Every float16 value, and for wider dtypes their smallest subnormals, values around
    their rounding boundaries and random bit patterns."""
    values = [EVERY_HALF.astype(dtype)]
    if dtype != np.float16:
        info = np.finfo(dtype)
        uint = np.uint32 if dtype == np.float32 else np.uint64
        tiny = np.arange(1, 2000, dtype=uint).view(dtype)
        rng = np.random.default_rng(9)
        patterns = rng.integers(0, np.iinfo(uint).max, 60_000, dtype=uint, endpoint=True).view(dtype)
        values += [tiny, -tiny, np.array([info.max, -info.max, info.tiny, 3 * info.tiny / 2], dtype), patterns]
    return np.concatenate(values)


def chainermn_mean(sums, n):
    with np.errstate(over="ignore", invalid="ignore"):
        return (sums.astype(np.float64) * (1.0 / n)).astype(sums.dtype)


def stepped(mode, g, factor, hooks, backend, monkeypatch):
    """The parameters after one SGD step (lr 1, parameters 0) on gradients ``g`` read
    with ``factor`` (None: as they are): with lr 1 from 0 the step writes -g."""
    dtype, master = MODES[mode]
    with monkeypatch.context() as patch:
        if backend is not None:
            patch.setattr(fast.backends, "for_array", lambda array: backend)
        params = {"g": fast.Parameter(np.zeros(g.size, dtype)), "scalar": fast.Parameter(np.zeros((), dtype)),
                  "odd": fast.Parameter(np.zeros(13, dtype))}
        opt = fast.optimizers.SGD(lr=1.0).setup(params)
        if master:
            opt.use_fp32_update()
        for hook in hooks:
            opt.add_hook(hook())
        params["g"].grad = g
        params["scalar"].grad = np.asarray(g[5], dtype)
        params["odd"].grad = np.ascontiguousarray(g[-13:])
        assert opt.reads_gradients_only_in_kernels()
        opt.engine.average_factor = factor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update()
        opt.engine.average_factor = None
        return [p.data.copy() for p in params.values()]


def same_bits(a, b):
    nan = np.isnan(b)
    return np.array_equal(np.isnan(a), nan) and a[~nan].tobytes() == b[~nan].tobytes()


@pytest.fixture(scope="module")
def emulated():
    return EmulatedCudaBackend()


HOOKS = {"plain": (), "hooks": (lambda: fast.optimizer_hooks.WeightDecay(0.0),),
         "norm": (lambda: fast.optimizer_hooks.GradientClipping(1.0),)}


@pytest.mark.parametrize("path", sorted(HOOKS))
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("device", ["cpu", "gpu-emulated"])
def test_the_folded_mean_is_chainermns_mean_bit_for_bit(device, mode, path, emulated, monkeypatch):
    backend = emulated if device == "gpu-emulated" else None
    sums = sums_of(MODES[mode][0])
    if path == "norm":  # an inf, a NaN or a square beyond float64 would make the norm inf or NaN
        with np.errstate(invalid="ignore"):  # signalling NaNs among the bit patterns
            sums = sums[np.isfinite(sums) & (np.abs(sums.astype(np.float64)) < 1e150)]
    for n in RANKS[mode]:
        folded = stepped(mode, sums, 1.0 / n, HOOKS[path], backend, monkeypatch)
        one_process = stepped(mode, chainermn_mean(sums, n), None, HOOKS[path], backend, monkeypatch)
        for got, want in zip(folded, one_process):
            assert same_bits(got.reshape(-1), want.reshape(-1)), (device, mode, path, n)


def test_a_folded_step_never_rewrites_the_sums_in_place():
    """A hook that runs on p.grad itself would see the sums, and rewriting them in place would
    fold twice: the engine refuses (a multi-node optimizer folds only when
    reads_gradients_only_in_kernels)."""
    p = fast.Parameter(np.zeros(4, np.float32))
    opt = fast.optimizers.SGD(lr=1.0).setup([p])
    opt.add_hook(lambda o: None, name="custom")
    opt.add_hook(fast.optimizer_hooks.WeightDecay(0.5))
    assert not opt.reads_gradients_only_in_kernels()
    p.grad = np.ones(4, np.float32)
    opt.engine.average_factor = 0.5
    with pytest.raises(RuntimeError, match="cannot be rewritten in place"):
        opt.update()
