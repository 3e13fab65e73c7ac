import numpy

from fast import hook_ops


class Lasso(object):
    """g <- g + rate * sign(p)."""
    name = "Lasso"
    call_for_each_param = True
    timing = "pre"
    #: planning changes nothing but ctx.ops (the optimizer may plan it before it settles
    #: dynamic loss scaling's non-finite check: fast.optimizer)
    plan_is_pure = True

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
