"""WeightDecay: L2 regularisation added to the gradient."""



class WeightDecay:
    """``g <- g + rate' * p`` per parameter, with ``rate' = rate * loss_scale`` when the
    gradient still carries a loss scale (Chainer: the hook runs on scaled gradients and is
    the only hook that compensates). In the ``fixed`` profile the gradient is already
    unscaled (``param._loss_scale`` is None) and ``rate' = rate``.
    """

    name = "WeightDecay"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        ctx = param.arithmetic
        rate = ctx.scalar(self.rate)
        if param._loss_scale is not None:
            rate = rate * ctx.scalar(param._loss_scale)
        param.store_grad(param.grad_value + rate * param.value)


