import numpy

from fast import hook_ops
from fast.optimizer_hooks.fused import FusedHook


class GradientHardClipping(FusedHook):
    """g <- clip(g, lower_bound, upper_bound) (NaN stays NaN)."""
    name = "GradientHardClipping"
    call_for_each_param = True

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def plan(self, ctx):
        ctx.ops.append(hook_ops.ConstOp(hook_ops.CLIP, self.lower_bound, self.upper_bound))

    def __call__(self, rule, param):
        """As a rule hook: clip the gradient in place, in NumPy."""
        if param.grad is None:
            return
        numpy.clip(param.grad, self.lower_bound, self.upper_bound, out=param.grad)
