from fast import hook_ops


class Lasso(object):
    """g <- g + rate * sign(p)."""
    name = "Lasso"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def plan(self, ctx):
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_SIGN, self.rate))

    def __call__(self, rule, param):
        raise TypeError("fast's Lasso runs inside the optimizer's fused pass; add it with opt.add_hook")
