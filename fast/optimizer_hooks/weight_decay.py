from fast import hook_ops


class WeightDecay(object):
    """g <- g + rate * p.

    ``chainer`` profile: the gradient is still loss-scaled, so the rate is
    multiplied by the loss scale (Chainer's rule); ``fixed``: the gradient is
    already unscaled and the rate is used as given.
    """
    name = "WeightDecay"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def plan(self, ctx):
        rate = self.rate
        if ctx.profile == "chainer" and ctx.loss_scale is not None:
            rate = rate * ctx.loss_scale
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_PARAM, rate))

    def __call__(self, rule, param):
        raise TypeError("fast's WeightDecay runs inside the optimizer's fused pass; add it with opt.add_hook")
