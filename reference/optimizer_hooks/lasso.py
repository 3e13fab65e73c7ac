"""Lasso: L1 regularisation added to the gradient."""

from reference.optimizer_hooks._numpy_ops import add_in_place, scalar_times


class Lasso:
    """``g <- g + rate * sign(p)`` per parameter (no loss-scale compensation, as in
    Chainer: with loss scaling in the ``chainer`` profile the decay is relatively
    ``loss_scale`` times weaker).

    As Chainer's NumPy statements: ``rate * sign(p)`` is rounded to its dtype (so ``rate``
    becomes the gradient's dtype, unless too large for it) before ``g += ...``, whose result
    is stored in the gradient's dtype (the rounding rules: :mod:`reference.optimizer_hooks`).
    """

    name = "Lasso"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        decay, decay_dtype = scalar_times(ctx, ctx.scalar(self.rate), ctx.sign(param.value),
                                          param.dtype)
        param.store_grad(add_in_place(ctx, param.grad_value, param.dtype, decay, decay_dtype))
