"""WeightDecay: L2 regularisation added to the gradient."""

from reference.optimizer_hooks._numpy_ops import add_in_place, scalar_times


class WeightDecay:
    """``g <- g + rate' * p`` per parameter, with ``rate' = rate * loss_scale`` when the
    gradient still carries a loss scale (Chainer: the hook runs on scaled gradients and is
    the only hook that compensates). In the ``fixed`` profile the gradient is already
    unscaled (``param._loss_scale`` is None) and ``rate' = rate``.

    As Chainer's NumPy statement ``g += rate' * p``: ``rate' * p`` is rounded to its dtype
    (the gradient's, unless ``rate'`` is too large for it) before the add, whose result is
    stored in the gradient's dtype (the rounding rules: :mod:`reference.optimizer_hooks`).
    """

    name = "WeightDecay"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        rate = ctx.scalar(self.rate)
        if param._loss_scale is not None:
            rate = rate * ctx.scalar(param._loss_scale)
        decay, decay_dtype = scalar_times(ctx, rate, param.value, param.dtype)
        param.store_grad(add_in_place(ctx, param.grad_value, param.dtype, decay, decay_dtype))
