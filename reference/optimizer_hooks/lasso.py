"""Lasso: L1 regularisation added to the gradient."""


class Lasso:
    """``g <- g + rate * sign(p)`` per parameter (no loss-scale compensation, as in
    Chainer: with loss scaling in the ``chainer`` profile the decay is relatively
    ``loss_scale`` times weaker)."""

    name = "Lasso"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        param.store_grad(param.grad_value + ctx.scalar(self.rate) * ctx.sign(param.value))
