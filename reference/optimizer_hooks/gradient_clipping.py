"""GradientClipping: rescale all gradients to a maximum global L2 norm."""

import numpy

from reference import profiles
from reference.optimizer_hooks._norms import dot_self, promote, reduction_dtype
from reference.optimizer_hooks._numpy_ops import multiply_in_place


def squared_norm(ctx, params, profile):
    """Chainer's ``_sum_sqnorm_grads`` on one device: ``sum(g.dot(g) for each param)``.

    Each dot is a scalar of its gradient's dtype (an fp16 dot above 65504 is inf). Python's
    ``sum`` adds them in order, starting from the int 0; NumPy 1.x's scalar arithmetic makes
    ``0 + dot`` a float64 whatever the dot's dtype, so in the ``chainer`` profile every
    partial sum is rounded to float64. In the ``fixed`` profile every dot and partial sum
    is float64.
    Returns ``(sum, dtype)``, or ``(None, None)`` when no parameter has a gradient.
    """
    total, total_dtype = None, None
    for param in params:
        if param.grad_value is None:
            continue
        dtype = reduction_dtype(param.dtype, profile)
        dot = dot_self(ctx, param.grad_value, dtype)
        if total is None:
            total_dtype = numpy.dtype(numpy.float64) if profile == profiles.CHAINER else dtype
            total = dot
        else:
            total_dtype = promote(total_dtype, dtype)
            total = ctx.round_to(total + dot, total_dtype)[()]
    return total, total_dtype


class GradientClipping:
    """Scale every gradient by ``rate = threshold / ||g||`` when ``rate < 1``.

    ``||g||`` is the L2 norm over all gradients, ``sqrt`` rounded to the sum's dtype (float64
    in the ``chainer`` profile; Chainer quirk: one parameter's fp16 ``g.dot(g)`` above 65504
    is inf, so ``rate = 0`` and every gradient is zeroed; the ``fixed`` profile keeps each
    dot, the sum and the norm in float64). A zero
    norm gives ``rate = threshold / 0``: inf (no-op) or, for ``threshold == 0``, NaN, which
    turns the gradients into NaN; the ``fixed`` profile leaves gradients unchanged when the
    norm is zero.

    ``rate`` is a float64 (a Python float divided by a NumPy scalar); Chainer's ``grad *=
    rate`` converts it to the gradient's dtype before multiplying, and stores the product in
    that dtype (the rounding rules: :mod:`reference.optimizer_hooks`).
    """

    name = "GradientClipping"
    timing = "pre"
    call_for_each_param = False

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, opt):
        ctx = opt.arithmetic
        params = opt.hook_params()
        sqnorm, dtype = squared_norm(ctx, params, opt.profile)
        if sqnorm is None:
            return
        norm = ctx.round_to(ctx.sqrt(sqnorm), dtype)[()]
        if opt.profile == profiles.FIXED and norm == 0:
            return
        rate = ctx.divide(ctx.scalar(self.threshold), norm)
        if rate >= 1:
            return
        for param in params:
            if param.grad_value is not None:
                param.store_grad(multiply_in_place(ctx, param.grad_value, param.dtype, rate))
