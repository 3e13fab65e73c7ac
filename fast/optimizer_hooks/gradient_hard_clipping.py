from fast import hook_ops


class GradientHardClipping(object):
    """g <- clip(g, lower_bound, upper_bound) (NaN stays NaN)."""
    name = "GradientHardClipping"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def plan(self, ctx):
        ctx.ops.append(hook_ops.ConstOp(hook_ops.CLIP, self.lower_bound, self.upper_bound))

    def __call__(self, rule, param):
        raise TypeError("fast's GradientHardClipping runs inside the optimizer's fused pass; add it with opt.add_hook")
