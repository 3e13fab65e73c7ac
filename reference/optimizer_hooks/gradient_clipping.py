"""GradientClipping: rescale all gradients to a maximum global L2 norm."""

from reference import profiles
from reference.optimizer_hooks._norms import dot_self, promote


def squared_norm(ctx, params):
    """Chainer's ``_sum_sqnorm_grads`` on one device: ``sum(g.dot(g) for each param)``.

    Each dot is a scalar of its gradient's dtype; Python's ``sum`` adds them in order and
    every partial sum is rounded to the promoted dtype (fp16 + fp16 stays fp16). Returns
    ``(sum, dtype)``, or ``(None, None)`` when no parameter has a gradient.
    """
    total, total_dtype = None, None
    for param in params:
        if param.grad_value is None:
            continue
        dot = dot_self(ctx, param.grad_value, param.dtype)
        if total is None:
            total, total_dtype = dot, param.dtype
        else:
            total_dtype = promote(total_dtype, param.dtype)
            total = ctx.round_to(total + dot, total_dtype)[()]
    return total, total_dtype


class GradientClipping:
    """Scale every gradient by ``rate = threshold / ||g||`` when ``rate < 1``.

    ``||g||`` is the L2 norm over all gradients, ``sqrt`` rounded to the sum's dtype
    (Chainer quirk: an fp16 sum of squares above 65504 is inf, so ``rate = 0`` and every
    gradient is zeroed). A zero norm gives ``rate = threshold / 0``: inf (no-op) or, for
    ``threshold == 0``, NaN, which turns the gradients into NaN; the ``fixed`` profile leaves
    gradients unchanged when the norm is zero.
    """

    name = "GradientClipping"
    timing = "pre"
    call_for_each_param = False

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, opt):
        ctx = opt.arithmetic
        params = opt.hook_params()
        sqnorm, dtype = squared_norm(ctx, params)
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
                param.store_grad(param.grad_value * rate)
