import numpy

from fast import hook_ops
from fast.optimizer_hooks.fused import FusedHook


class WeightDecay(FusedHook):
    """g <- g + rate * p.

    As an optimizer hook, ``chainer`` profile: the gradient is still
    loss-scaled, so the rate is multiplied by the loss scale that parameter's
    gradient carries (Chainer's rule reads ``param._loss_scale``, which
    ``backward(loss_scale=...)`` sets; see fast.boundary); ``fixed``: the
    gradient is already unscaled and the rate is used as given.
    As a rule hook see ``__call__``.
    """
    name = "WeightDecay"
    call_for_each_param = True

    def __init__(self, rate):
        self.rate = rate

    def plan(self, ctx):
        rate = self.rate
        if ctx.semantics.weight_decay_scales_rate:
            scales = ctx.loss_scales
            rate = numpy.where(numpy.isnan(scales), numpy.float64(rate), rate * scales)
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_PARAM, rate))

    def __call__(self, rule, param):
        """As a rule hook (``rule.add_hook``): g <- g + rate * p in NumPy, on the
        gradient the rule sees, which is already unscaled. Like Chainer, the
        rate is still multiplied by ``param._loss_scale`` (the scale backward
        tags the parameter with): the ``chainer`` profile sets it whenever loss
        scaling is on and the rule updates the parameter itself (not an fp32
        master, which Chainer leaves untagged); the ``fixed`` profile never
        sets it, so the rate is used as given."""
        if param.data is None or param.grad is None:
            return
        rate = self.rate
        loss_scale = getattr(param, "_loss_scale", None)
        if loss_scale is not None:
            rate = rate * loss_scale
        param.grad += hook_ops.numpy1_scalar(rate, param.data) * param.data
