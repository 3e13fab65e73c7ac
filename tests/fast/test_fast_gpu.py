"""The CuPy path: the same math as the CPU path, and skipped steps that change nothing.
Skipped cleanly where CuPy or a CUDA device is missing (`make gpu-check` runs them on a GPU).
The GPU build is IEEE (fast/backends/nvrtc.py: no flush to zero, no fma), so the GPU must
equal the same driver compiled for the host (the emulated device path) bit for bit, and
keep float32 subnormals. That a step makes no host synchronisation is not observable from a
test; the benchmarks measure it."""

import warnings

import numpy as np
import pytest

import fast
from fast_testkit import OPTIMIZER_NAMES, assert_same_snapshot, gradients, make_params, ulp_distance

pytestmark = pytest.mark.gpu


def cuda_or_skip():
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # no driver, no device: nothing to test here
        pytest.skip(f"no usable CUDA device: {error}")
    if count == 0:
        pytest.skip("no CUDA device")
    return cupy


def to_host(array):
    return None if array is None else (array.get() if hasattr(array, "get") else array)


def run(name, dtype, master, on_gpu, steps=3, loss_scaling=False, bad_step=None):
    """`steps` updates on CPU or GPU from the same values and gradients; returns the
    optimizer and the parameters."""
    xp = cuda_or_skip() if on_gpu else np
    host_params = make_params({"w": (33, 17), "b": (5,)}, dtype)
    params = {k: fast.Parameter(xp.asarray(p.data), name=k) for k, p in host_params.items()}
    opt = getattr(fast.optimizers, name)().setup(params)
    if master:
        opt.use_fp32_update()
    if loss_scaling:
        opt.loss_scaling()
    for step in range(steps):
        scale = 1.0 if opt.loss_scale is None else opt.loss_scale
        grads = gradients(host_params, step, scale=scale)
        if step == bad_step:
            grads["w"][3, 4] = np.nan
        for k, g in grads.items():
            params[k].grad = xp.asarray(g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update()
    return opt, params


def host_state(params):
    out = {}
    for k, p in params.items():
        rule = p.update_rule
        out[k + ".data"] = to_host(p.data)
        out[k + ".fp32_param"] = to_host(rule.fp32_param)
        for s, v in (rule.state or {}).items():
            out[f"{k}.state.{s}"] = to_host(v)
    return out


@pytest.mark.parametrize("name", ["Adam", "AdamW", "AMSBound"])
def test_fp16_master_adam_matches_the_cpu_path_within_fp32_rounding(name):
    _, gpu = run(name, np.float16, True, on_gpu=True)
    _, cpu = run(name, np.float16, True, on_gpu=False)
    gpu_state, cpu_state = host_state(gpu), host_state(cpu)
    for key, value in cpu_state.items():
        if value is None:
            assert gpu_state[key] is None
            continue
        if value.dtype == np.float16:
            assert ulp_distance(gpu_state[key], value).max() <= 1, key
        else:
            assert ulp_distance(gpu_state[key], value).max() <= 4, key


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float32_step_matches_the_cpu_path(name):
    _, gpu = run(name, np.float32, False, on_gpu=True)
    _, cpu = run(name, np.float32, False, on_gpu=False)
    for key in cpu:
        assert ulp_distance(to_host(gpu[key].data), cpu[key].data).max() <= 8, key


def test_skipped_step_changes_nothing_on_the_gpu():
    opt_before, before = run("Adam", np.float16, True, on_gpu=True, steps=2, loss_scaling=True)
    opt_after, after = run("Adam", np.float16, True, on_gpu=True, steps=3, loss_scaling=True,
                           bad_step=2)
    state_before, state_after = host_state(before), host_state(after)
    for key, value in state_before.items():
        assert value.tobytes() == state_after[key].tobytes(), key
    assert opt_after.t == opt_before.t + 1
    assert opt_after.loss_scale == opt_before.loss_scale / 2
    assert after["w"].update_rule.t == 2


def test_loss_scale_sequence_matches_the_cpu_path():
    def scales(on_gpu):
        opt, _ = run("MomentumSGD", np.float16, True, on_gpu, steps=5, loss_scaling=True,
                     bad_step=3)
        return opt.loss_scale, opt.t
    assert scales(True) == scales(False)


# ---- the IEEE build on the GPU: the same bits as the same driver compiled for the host ----

BIT_SHAPES = {"w": (40000,), "b": (5,), "s": ()}  # w spans two chunks of the chunk table


def _device_run(name, mode, profile, on_gpu, hooks=()):
    """Four steps, the third skipped by an inf (dynamic loss scaling), on the GPU (CuPy
    arrays) or through the emulated device path (NumPy arrays, cuda_driver.cu built by g++)."""
    from fast_testkit import DTYPE_MODES, make_params, optimizer_kwargs
    import fast.backends
    from fast.backends.cuda_emulator import EmulatedCudaBackend
    xp = cuda_or_skip() if on_gpu else np
    dtype, master = DTYPE_MODES[mode]
    host = make_params(BIT_SHAPES, dtype)
    params = {k: fast.Parameter(xp.asarray(p.data), name=k) for k, p in host.items()}
    emulated = None if on_gpu else EmulatedCudaBackend()
    original = fast.backends.for_array
    if emulated is not None:
        fast.backends.for_array = lambda array: emulated
    try:
        opt = getattr(fast.optimizers, name)(profile=profile, **optimizer_kwargs(name, mode)).setup(params)
        if master:
            opt.use_fp32_update()
        opt.loss_scaling()
        for hook in hooks:
            opt.add_hook(hook)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in range(4):
                grads = gradients(host, step, scale=opt.loss_scale)
                if step == 2:
                    grads["w"][7] = np.inf
                for k, g in grads.items():
                    params[k].grad = xp.asarray(g)
                opt.update()
        out = host_state(params)
        out["loss_scale"], out["opt.t"] = opt.loss_scale, opt.t
        out.update({k + ".t": p.update_rule.t for k, p in params.items()})
        return out
    finally:
        fast.backends.for_array = original


@pytest.mark.parametrize("profile", ["chainer", "fixed"])
@pytest.mark.parametrize("mode", ["float64", "float32", "fp16_master", "fp16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_the_gpu_equals_the_emulated_device_path_bit_for_bit(name, mode, profile):
    """The GPU build computes the same IEEE operations in the same order as the host build of
    the same driver (no ftz, no fma, IEEE division and square root): every bit equal."""
    assert_same_snapshot(_device_run(name, mode, profile, on_gpu=True),
                      _device_run(name, mode, profile, on_gpu=False))


@pytest.mark.parametrize("mode", ["float32", "fp16_master"])
def test_the_reducing_hooks_equal_the_emulated_device_path_bit_for_bit(mode):
    """GradientClipping and GradientLARS sum in the device's fixed tree on both sides."""
    hooks = (fast.optimizer_hooks.GradientClipping(1.0), fast.optimizer_hooks.WeightDecay(1e-2))
    assert_same_snapshot(_device_run("Adam", mode, "chainer", True, hooks),
                      _device_run("Adam", mode, "chainer", False, hooks))
    lars = (fast.optimizer_hooks.GradientLARS(),)
    assert_same_snapshot(_device_run("MomentumSGD", mode, "fixed", True, lars),
                      _device_run("MomentumSGD", mode, "fixed", False, lars))


def test_float32_subnormals_are_kept_on_the_gpu():
    """A flush-to-zero build would turn these updates into no-ops: p - lr * g with a subnormal
    gradient, and a subnormal parameter moved by a subnormal step."""
    cupy = cuda_or_skip()
    tiny = np.float32(1e-39)  # subnormal in float32 (smallest normal: 1.18e-38)
    start = np.array([0.0, tiny, 1.0, -tiny], dtype=np.float32)
    grad = np.array([tiny, tiny, tiny, 3 * tiny], dtype=np.float32)
    param = fast.Parameter(cupy.asarray(start), name="w")
    opt = fast.optimizers.SGD(lr=1.0).setup({"w": param})
    param.grad = cupy.asarray(grad)
    opt.update()
    want = start - np.float32(1.0) * grad
    assert want[0] != 0 and want[1] == 0 and want[3] != 0
    assert param.data.get().tobytes() == want.tobytes()


@pytest.mark.parametrize("profile", ["chainer", "fixed"])
def test_a_gpu_checkpoint_saves_and_loads_the_cpu_file(tmp_path, profile):
    """save_npz copies the device state to the host; load_npz copies it back to the device
    (host arrays are not assigned into CuPy arrays implicitly) and the run goes on as the
    uninterrupted one."""
    cupy = cuda_or_skip()
    opt, params = run("Adam", np.float16, True, on_gpu=True, steps=2, loss_scaling=True)
    fast.serializers.save_npz(tmp_path / "gpu.npz", opt)
    cpu_opt, _ = run("Adam", np.float16, True, on_gpu=False, steps=2, loss_scaling=True)
    fast.serializers.save_npz(tmp_path / "cpu.npz", cpu_opt)
    with np.load(tmp_path / "gpu.npz") as g, np.load(tmp_path / "cpu.npz") as c:
        assert sorted(g.files) == sorted(c.files)
    fresh = {k: fast.Parameter(cupy.asarray(p.data), name=k) for k, p in params.items()}
    loaded = fast.optimizers.Adam(profile=profile).setup(fresh)
    loaded.use_fp32_update()
    loaded.loss_scaling()
    fast.serializers.load_npz(tmp_path / "gpu.npz", loaded)
    for k, p in params.items():
        for s, v in p.update_rule.state.items():
            assert fresh[k].update_rule.state[s].get().tobytes() == v.get().tobytes(), (k, s)
