"""GradientClipping: scale every gradient by min(1, threshold / ||g||).

The norm is one reduction over all gradients (after the hooks before it),
accumulated in double in fixed-size chunks summed in a fixed order.

``chainer`` profile: Chainer sums ``g.dot(g)`` per parameter, whose result
NumPy stores in the gradient's dtype (for float16: accumulated in float32 and
rounded to float16, so a parameter whose sum exceeds 65504 gives inf), then
adds them with Python's ``sum``, which starts from the int 0: under NumPy 1.x
(Chainer 7.8.1's) ``0 + float16 scalar`` is a float64, so the total, its
square root and ``rate = threshold / norm`` are float64. Here each
per-parameter sum is taken in double and rounded to the gradient's dtype,
and the rest is done in double, which reproduces Chainer's result including
its overflow (norm inf -> rate 0 -> gradients zeroed). When ``rate >= 1``
nothing changes.

Both profiles: ``grad *= rate`` converts the rate to the dtype the hook sees
the gradient in before multiplying (NumPy's scalar conversion).

``fixed`` profile: the gradients are unscaled (fp32 with a master), the sum
stays in double, and a zero norm leaves the gradients unchanged.
"""

import numpy

from fast import hook_ops
from fast.optimizer_hooks.fused import FusedHook


class GradientClipping(FusedHook):
    name = "GradientClipping"
    plan_reads_gradients = True

    def __init__(self, threshold):
        self.threshold = threshold

    def plan(self, ctx):
        gsq, _ = ctx.sums_of_squares()
        norm = self._norm(ctx, gsq)
        if norm == 0 and ctx.semantics.zero_norm_leaves_gradients:
            return
        with numpy.errstate(divide="ignore", invalid="ignore"):
            rate = numpy.float64(self.threshold) / norm
        if rate >= 1:
            return
        ctx.ops.append(hook_ops.ConstOp(hook_ops.SCALE, float(rate)))

    @staticmethod
    def _norm(ctx, gsq):
        """The global norm in float64, each parameter's sum of squares first rounded to its
        gradient's dtype unless the profile keeps the norms in float64."""
        with numpy.errstate(over="ignore"):
            total = numpy.float64(0)
            for e in ctx.entries:
                part = numpy.float64(gsq[e.index])
                if not ctx.semantics.norms_in_float64:
                    part = numpy.float64(ctx.hook_dtype(e).type(part))
                total = total + part
            return numpy.sqrt(total)

    def __call__(self, opt):
        raise TypeError("GradientClipping is an optimizer-level hook: add it with opt.add_hook, "
                        "which runs it inside the fused pass")
