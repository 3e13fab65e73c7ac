"""GradientLARS: layer-wise adaptive rate scaling of the gradient."""

from reference.optimizer_hooks._norms import l2_norm, reduction_dtype
from reference.optimizer_hooks._numpy_ops import add_in_place, multiply_in_place, \
    scalar_times


class GradientLARS:
    """Per parameter, with ``||.||`` NumPy's ``linalg.norm`` in the parameter's dtype (in
    float64 in the ``fixed`` profile)::

        local_rate = ||p|| / (eps + ||g|| + weight_decay * ||p||)
        rate       = local_rate if ||p|| > threshold else 1
        g         <- g + weight_decay * p
        g         <- g * rate

    ``local_rate`` is computed in float64 (NumPy 1.x: a Python float with a NumPy scalar
    gives float64). The two gradient statements are Chainer's NumPy ones: ``weight_decay *
    p`` is rounded to its dtype before ``g += ...``; ``g *= rate`` converts ``rate`` to the
    gradient's dtype (unless too large for it) before multiplying; each result is stored in
    the gradient's dtype (the rounding rules: :mod:`reference.optimizer_hooks`).
    """

    name = "GradientLARS"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, threshold=1e-2, weight_decay=0.0, eps=1e-9):
        self.threshold = threshold
        self.weight_decay = weight_decay
        self.eps = eps

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        weight_decay = ctx.scalar(self.weight_decay)
        dtype = reduction_dtype(param.dtype, rule.profile)
        p_norm = l2_norm(ctx, param.value, dtype)
        g_norm = l2_norm(ctx, param.grad_value, dtype)
        local_rate = ctx.divide(p_norm, ctx.scalar(self.eps) + g_norm + weight_decay * p_norm)
        rate = local_rate if p_norm > ctx.scalar(self.threshold) else ctx.scalar(1.0)
        decay, decay_dtype = scalar_times(ctx, weight_decay, param.value, param.dtype)
        param.store_grad(add_in_place(ctx, param.grad_value, param.dtype, decay, decay_dtype))
        param.store_grad(multiply_in_place(ctx, param.grad_value, param.dtype, rate))
