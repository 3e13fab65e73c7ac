"""Shared builders and bitwise comparisons for the tests of `fast`.

Everything here uses only the public API of the README contract, so the same helpers
work on any implementation of it.
"""

import numpy as np

import fast

OPTIMIZER_NAMES = (
    "SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad", "AdaDelta",
    "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound",
    "MSVAG", "SMORMS3",
)
HOOK_NAMES = (
    "WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping", "GradientNoise",
    "GradientLARS",
)
PROFILES = ("chainer", "fixed")

# dtype mode -> (parameter dtype, whether use_fp32_update() is called)
DTYPE_MODES = {
    "float64": (np.float64, False),
    "float32": (np.float32, False),
    "fp16_master": (np.float16, True),
    "fp16": (np.float16, False),
}

DEFAULT_SHAPES = {"w": (3, 4), "b": (5,)}


def optimizer_kwargs(name, mode):
    """Constructor arguments for `name` in dtype mode `mode`: Chainer's defaults, except
    RMSprop's eps on plain fp16, which Chainer rejects (1e-8 rounds to 0 in fp16)."""
    if name == "RMSprop" and mode == "fp16":
        return {"eps": 1e-4}
    return {}


def make_params(shapes=None, dtype=np.float32, seed=0):
    """Parameters named by `shapes` (name -> shape) with values of magnitude ~0.1."""
    shapes = DEFAULT_SHAPES if shapes is None else shapes
    rng = np.random.default_rng(seed)
    return {
        name: fast.Parameter(np.array(0.1 * rng.standard_normal(shape), dtype=dtype), name=name)
        for name, shape in shapes.items()
    }


def make_optimizer(name, mode="float32", profile="chainer", shapes=None, seed=0, **kwargs):
    """A set-up optimizer `name` over fresh parameters in dtype mode `mode`.

    Returns (optimizer, params) with params the name -> Parameter mapping given to setup.
    """
    dtype, master = DTYPE_MODES[mode]
    params = make_params(shapes, dtype, seed)
    ctor_kwargs = {**optimizer_kwargs(name, mode), **kwargs}
    opt = getattr(fast.optimizers, name)(profile=profile, **ctor_kwargs)
    opt.setup(params)
    if master:
        opt.use_fp32_update()
    return opt, params


def gradients(params, step, seed=1, scale=1.0):
    """Deterministic gradients of magnitude ~1 for `step`, multiplied by `scale` (the
    loss scale) and cast to each parameter's dtype."""
    rng = np.random.default_rng([seed, step])
    return {
        name: np.array(rng.standard_normal(p.shape) * scale, dtype=p.dtype)
        for name, p in params.items()
    }


def set_grads(params, grads):
    for name, g in grads.items():
        params[name].grad = g


def run_steps(opt, params, steps, first_step=0, seed=1):
    """`steps` updates with deterministic gradients, each multiplied by the loss scale
    in force at that step."""
    for step in range(first_step, first_step + steps):
        scale = 1.0 if opt.loss_scale is None else opt.loss_scale
        set_grads(params, gradients(params, step, seed, scale))
        opt.update()


def copy_array(a):
    return None if a is None else np.array(a, copy=True)


def snapshot(opt, params):
    """A deep copy of everything a step may change: counters, loss scale, and for each
    parameter its data, its rule's t, fp32 master and state arrays."""
    snap = {"opt.t": opt.t, "opt.epoch": opt.epoch, "opt.loss_scale": opt.loss_scale}
    for name, p in params.items():
        rule = p.update_rule
        snap[name + ".data"] = copy_array(p.data)
        snap[name + ".t"] = rule.t
        snap[name + ".fp32_param"] = copy_array(rule.fp32_param)
        state = rule.state
        if state is None:
            snap[name + ".state"] = None
        else:
            for key in state:
                snap[name + ".state." + key] = copy_array(state[key])
    return snap


def same_bits(a, b):
    """True when a and b are both None, equal scalars, or arrays with the same dtype,
    shape and bytes (so NaNs compare equal to themselves and -0.0 differs from 0.0)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def assert_same_snapshot(before, after):
    """Every entry of the two snapshots is bitwise identical."""
    assert before.keys() == after.keys(), (
        f"entries differ: {sorted(before.keys() ^ after.keys())}")
    changed = [key for key in before if not same_bits(before[key], after[key])]
    assert not changed, f"changed: {changed}"


def assert_finite(array, what):
    assert np.all(np.isfinite(np.asarray(array, dtype=np.float64))), f"{what} is not finite"


def ulp_distance(a, b):
    """Elementwise distance between a and b in units of the last place of a's dtype."""
    a = np.asarray(a)
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(np.asarray(b, a.dtype))))
    return np.abs(a.astype(np.float64) - np.asarray(b, np.float64)) / spacing.astype(np.float64)
