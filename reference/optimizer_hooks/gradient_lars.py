"""GradientLARS: layer-wise adaptive rate scaling of the gradient."""

from reference.optimizer_hooks._norms import l2_norm


class GradientLARS:
    """Per parameter, with ``||.||`` NumPy's ``linalg.norm`` in the parameter's dtype::

        local_rate = ||p|| / (eps + ||g|| + weight_decay * ||p||)
        rate       = local_rate if ||p|| > threshold else 1
        g         <- g + weight_decay * p
        g         <- g * rate
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
        p_norm = l2_norm(ctx, param.value, param.dtype)
        g_norm = l2_norm(ctx, param.grad_value, param.dtype)
        local_rate = ctx.divide(p_norm, ctx.scalar(self.eps) + g_norm + weight_decay * p_norm)
        rate = local_rate if p_norm > ctx.scalar(self.threshold) else ctx.scalar(1.0)
        param.store_grad(param.grad_value + weight_decay * param.value)
        param.store_grad(param.grad_value * rate)
