import numpy

from fast import hook_ops
from fast.optimizer_hooks.fused import FusedHook


class Lasso(FusedHook):
    """g <- g + rate * sign(p)."""
    name = "Lasso"
    call_for_each_param = True

    def __init__(self, rate):
        self.rate = rate

    def plan(self, ctx):
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_SIGN, self.rate))

    def __call__(self, rule, param):
        """As a rule hook: g <- g + rate * sign(p), in NumPy."""
        if param.data is None or param.grad is None:
            return
        sign = numpy.sign(param.data)
        param.grad += hook_ops.numpy1_scalar(self.rate, sign) * sign
