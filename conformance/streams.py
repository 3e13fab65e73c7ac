"""Deterministic gradient streams and the injected GradientNoise noise function.

Every gradient is a pure function of (case seed, parameter position, step), generated in
float64, multiplied by the current loss scale and cast to the storage dtype once; the very
same array is handed to both sides of a comparison. In a distributed case each rank has its
own stream, a pure function of (case seed, parameter position, step, rank), so every rank can
compute every other rank's gradient (the reference's mean, conformance.ranks) locally.
"""
from __future__ import annotations

import math

import numpy as np

from .cases import Case, ParamSpec

_FP16_MAX = 65504.0
_MAGNITUDE = {
    "normal": 1.0,
    "zeros": 0.0,
    "fp16_overflow": 2.0 * _FP16_MAX,   # overflows fp16 once cast
    "fp16_underflow": 2.0 ** -27,       # flushes to zero or to fp16 subnormals
}
_SUBNORMAL = {"float16": 2.0 ** -20, "float32": 2.0 ** -140, "float64": 2.0 ** -1060}
#: The seed word that separates the per-rank streams of a distributed case from the
#: one-process streams (whose seed is [seed, position, step]).
RANK_STREAM = 1009


def _seed(case: Case, position: int, step: int, rank: int | None) -> list:
    if case.ranks == 1:
        return [case.seed, position, step]
    if rank is None or not 0 <= rank < case.ranks:
        raise ValueError(f"a {case.ranks}-rank case's gradient needs a rank in "
                         f"0..{case.ranks - 1}, not {rank!r}")
    return [case.seed, position, step, RANK_STREAM, rank]


def base_gradient(case: Case, position: int, spec: ParamSpec, step: int,
                  rank: int | None = None) -> np.ndarray:
    """The unscaled float64 gradient of parameter `spec` at `step` (1-based), on `rank`
    (distributed cases only; a one-process case has one stream)."""
    rng = np.random.default_rng(_seed(case, position, step, rank))
    normal = rng.standard_normal(spec.shape)
    if spec.grad_kind == "subnormal":
        return normal * _SUBNORMAL[case.storage_dtype]
    return normal * (_MAGNITUDE[spec.grad_kind] * spec.grad_scale)


def gradient(case: Case, position: int, spec: ParamSpec, step: int,
             loss_scale: float | None, rank: int | None = None) -> np.ndarray | None:
    """The gradient array handed to both sides at `step`, or None for an injected None grad
    (in a distributed case: the one `rank` feeds; an injection with a rank lands on that
    rank only).

    Injected non-finite values are planted after scaling, as an overflowing backward pass
    would produce them.
    """
    injections = [i for i in case.injections if i.step == step and i.param == spec.name
                  and (i.rank is None or i.rank == rank)]
    if any(i.kind == "none" for i in injections):
        return None
    grad = base_gradient(case, position, spec, step, rank)
    if loss_scale is not None:
        grad = grad * loss_scale
    with np.errstate(over="ignore"):
        grad = np.array(grad, dtype=case.storage_dtype)  # an ndarray even for shape ()
    flat = grad.reshape(-1)  # a view: writes below land in grad
    for inj in injections:
        if flat.size:
            flat[inj.index % flat.size] = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}[inj.kind]
    return grad


def initial_value(case: Case, position: int, spec: ParamSpec) -> np.ndarray:
    """The parameter's initial value, in its storage dtype."""
    rng = np.random.default_rng([case.seed, position, 0, 7])
    return np.array(rng.standard_normal(spec.shape) * spec.init_scale, dtype=case.storage_dtype)


def deterministic_noise(xp, shape, dtype, hook, opt):
    """GradientNoise's noise function, made deterministic for conformance.

    Same law as Chainer's `exponential_decay_noise` (std = sqrt(eta / (1 + t)**0.55)),
    but the normal draws are a pure function of (t, shape), so both sides add equal noise.
    """
    std = math.sqrt(hook.eta / math.pow(1 + opt.t, 0.55))
    seed = [int(opt.t)] + [int(d) for d in shape]
    noise = np.random.default_rng(seed).standard_normal(shape) * std
    return xp.asarray(noise.astype(dtype))
