"""GradientHardClipping: elementwise clipping of the gradient."""


class GradientHardClipping:
    """``g <- clip(g, lower_bound, upper_bound)`` per parameter (NaN stays NaN)."""

    name = "GradientHardClipping"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        param.store_grad(ctx.clip(param.grad_value, ctx.scalar(self.lower_bound),
                                  ctx.scalar(self.upper_bound)))
