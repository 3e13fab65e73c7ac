"""GradientClipping: scale every gradient by min(1, threshold / ||g||).

The norm is one reduction over all gradients (after the hooks before it),
accumulated in double in fixed-size chunks summed in a fixed order.

``chainer`` profile: Chainer sums ``g.dot(g)`` per parameter, whose result
NumPy stores in the gradient's dtype (for float16: accumulated in float32 and
rounded to float16, so a parameter whose sum exceeds 65504 gives inf), then
adds the per-parameter sums in that dtype, takes the square root and forms
``rate = threshold / norm`` in it. Here each per-parameter sum is taken in
double and then rounded to the gradient's dtype, and the rest is done with
NumPy scalars of that dtype, which reproduces Chainer's result including
its overflow (norm inf -> rate 0 -> gradients zeroed). When ``rate >= 1``
nothing changes.

``fixed`` profile: the gradients are unscaled (fp32 with a master), the sum
stays in double, and a zero norm leaves the gradients unchanged.
"""
import math

import numpy

from fast import hook_ops


class GradientClipping(object):
    name = "GradientClipping"
    timing = "pre"

    def __init__(self, threshold):
        self.threshold = threshold

    def plan(self, ctx):
        gsq, _ = ctx.sums_of_squares()
        if ctx.profile == "chainer":
            rate = self._chainer_rate(ctx, gsq)
        else:
            norm = math.sqrt(float(sum(gsq[e.index] for e in ctx.entries)))
            if norm == 0:
                return
            rate = self.threshold / norm
        if rate >= 1:
            return
        ctx.ops.append(hook_ops.ConstOp(hook_ops.SCALE, float(rate), round_to_grad_dtype=False))

    def _chainer_rate(self, ctx, gsq):
        with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
            total = 0
            for e in ctx.entries:
                total = total + ctx.hook_dtype(e).type(gsq[e.index])
            norm = numpy.sqrt(total)
            return self.threshold / norm

    def __call__(self, opt):
        raise TypeError("fast's GradientClipping runs inside the optimizer's fused pass; add it with opt.add_hook")
