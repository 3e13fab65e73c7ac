import numpy

from fast import hook_ops


class GradientHardClipping(object):
    """g <- clip(g, lower_bound, upper_bound) (NaN stays NaN)."""
    name = "GradientHardClipping"
    call_for_each_param = True
    timing = "pre"
    #: planning changes nothing but ctx.ops (the optimizer may plan it before it settles
    #: dynamic loss scaling's non-finite check: fast.optimizer)
    plan_is_pure = True

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
