"""Elementwise hook operations the kernels apply to a gradient as they load it.

An optimizer-level hook is planned into one or more ops (the hook kinds of
fast.backends.abi); reductions the hook needs (global norm, per
parameter norms) are taken over the gradient as transformed by the ops
planned before it. Scalars are rounded to the dtype the hook sees the
gradient in, as NumPy rounds a Python float operand to the array's dtype.
"""
import numpy

from fast.backends.abi import hook_kind
from fast.engine import hook_dtype

ADD_PARAM = hook_kind("HOOK_ADD_PARAM")
ADD_SIGN = hook_kind("HOOK_ADD_SIGN")
CLIP = hook_kind("HOOK_CLIP")
SCALE = hook_kind("HOOK_SCALE")
SCALE_TENSOR = hook_kind("HOOK_SCALE_TENSOR")
ADD_NOISE = hook_kind("HOOK_ADD_NOISE")
#: The kinds ``g += a * p`` and ``g += a * sign(p)`` take for a group of 0-d gradients:
#: NumPy 1.x treats a 0-d array as a scalar, so the product is float64, not rounded to
#: the gradient's dtype before the add (and ``a`` is not converted to it).
WIDE_KIND = {ADD_PARAM: hook_kind("HOOK_ADD_PARAM_WIDE"), ADD_SIGN: hook_kind("HOOK_ADD_SIGN_WIDE")}


def numpy1_scalar(value, array):
    """``value`` as NumPy 1.x (Chainer 7.8.1's) converts a Python scalar meeting ``array``,
    under any NumPy: float64 when ``array`` is 0-d (a scalar too), else the array's dtype
    unless the value needs a wider one (value-based casting)."""
    if array.ndim == 0:
        return numpy.float64(value)
    return numpy.result_type(array.dtype, numpy.min_scalar_type(float(value))).type(value)


class Op(object):
    """One elementwise operation of the fused pass: its kind and per-tensor scalars."""

    kind = None

    def kind_for(self, group):
        """The kernel's hook kind on ``group`` (0-d groups take the wide kinds)."""
        return WIDE_KIND.get(self.kind, self.kind) if group.zero_d else self.kind

    def tables(self, group):
        """(a, b, noise pointers or None): the op's scalars for each tensor of ``group``."""
        raise NotImplementedError


class ConstOp(Op):
    """An op with scalars ``a`` and ``b``: numbers, or entry-ordered arrays (one value per
    parameter, e.g. a WeightDecay rate multiplied by each parameter's loss scale)."""

    def __init__(self, kind, a, b=0.0, round_to_grad_dtype=True):
        self.kind = kind
        self.a = numpy.asarray(a, dtype=numpy.float64)
        self.b = numpy.asarray(b, dtype=numpy.float64)
        self.round = round_to_grad_dtype

    def _per_tensor(self, values, group):
        if values.ndim == 0:
            return numpy.full(len(group.entries), float(values))
        return values[group.global_index]

    def tables(self, group):
        a, b = self._per_tensor(self.a, group), self._per_tensor(self.b, group)
        if self.round:
            if self.kind == SCALE:
                return scale_as_numpy_converts(a, group), b, None
            if self.kind in WIDE_KIND and group.zero_d:
                return a, b, None
            dtype = hook_dtype(group.mode, group.dtype)
            with numpy.errstate(over="ignore"):
                a, b = a.astype(dtype).astype(numpy.float64), b.astype(dtype).astype(numpy.float64)
        return a, b, None


def scale_as_numpy_converts(rates, group):
    """The factors of ``g *= rate`` per tensor of ``group``, as NumPy 1.x converts the float64
    rate: to the dtype the hook sees the gradient in, except for a 0-d gradient, which
    counts as a scalar itself, so the product is float64, rounded once on store."""
    dtype = hook_dtype(group.mode, group.dtype)
    with numpy.errstate(over="ignore"):
        rounded = rates.astype(dtype).astype(numpy.float64)
    zero_d = numpy.asarray([len(shape) == 0 for shape in group.shapes], dtype=bool)
    return numpy.where(zero_d, rates, rounded)


class TensorScaleOp(Op):
    """g <- g * rate[parameter] (GradientLARS), the rates converted as NumPy 1.x
    converts them (scale_as_numpy_converts)."""
    kind = SCALE_TENSOR

    def __init__(self, rates):
        self.rates = numpy.asarray(rates, dtype=numpy.float64)

    def tables(self, group):
        a = scale_as_numpy_converts(self.rates[group.global_index], group)
        return a, numpy.zeros_like(a), None


class NoiseOp(Op):
    """g <- g + noise[parameter] (GradientNoise); arrays in entry order."""
    kind = ADD_NOISE

    def __init__(self, arrays):
        self.arrays = arrays

    def tables(self, group):
        n = len(group.entries)
        ptrs = numpy.asarray([group.backend.pointer(self.arrays[k]) for k in group.global_index],
                             dtype=numpy.uint64)
        return numpy.zeros(n), numpy.zeros(n), ptrs


class PlanContext(object):
    """What a hook needs to plan itself: the profile, the ops so far, reductions.

    ``optimizer``: the optimizer planning; ``loss_scales``: entry-ordered, the loss scale
    each gradient carries (NaN: unscaled; see fast.boundary). In the chainer profile the
    hooks see the gradients still scaled; in the fixed profile unscaled.
    """

    def __init__(self, optimizer, loss_scales, pending_check=None):
        self.optimizer = optimizer
        #: what the optimizer's profile decides (fast.profiles.Profile)
        self.semantics = optimizer.semantics
        self.engine = optimizer.engine
        self.loss_scales = loss_scales
        self.ops = []
        #: dynamic loss scaling's non-finite check, when the optimizer left it to the first
        #: reduction (fast.optimizer.DeferredCheck), else None
        self.pending_check = pending_check

    @property
    def entries(self):
        return self.engine.entries

    @staticmethod
    def xp(entry):
        """The array module of the entry's device (NumPy or CuPy)."""
        return entry.group.backend.xp

    def hook_dtype(self, entry):
        """The dtype the profile shows the entry's gradient in to hooks."""
        group = entry.group
        return hook_dtype(group.mode, group.dtype) if self.semantics.hooks_see_masters else group.dtype

    def hook_shape(self, entry):
        """The shape of the whole parameter, for values drawn per parameter (noise)."""
        return self.engine.scope.hook_shape(entry)

    def local_part(self, entry, whole):
        """The part of a whole-parameter array that the entry's tensor holds."""
        return self.engine.scope.local_part(entry, whole)

    def sums_of_squares(self):
        """Per-entry sums of g^2 and p^2 (g after the ops so far), in double. The first call
        with a non-finite check pending makes it in the same pass and settles it first."""
        pending = self.pending_check
        if pending is not None and not pending.done:
            names, sums = self.engine.nonfinite_names_and_sums_of_squares(list(self.ops), self.loss_scales)
            pending.settle(names)
            return sums
        return self.engine.sums_of_squares(list(self.ops), self.loss_scales)
