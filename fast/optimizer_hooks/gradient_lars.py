"""GradientLARS: g <- (g + weight_decay * p) * rate, per parameter,

    rate = ||p|| / (eps + ||g|| + weight_decay * ||p||)  if ||p|| > threshold else 1.

Both norms of every parameter come from one segmented reduction pass.
``chainer`` profile: each norm is ``sqrt`` of the sum of squares rounded to
the parameter's dtype (NumPy's ``linalg.norm`` returns that dtype); the rate
is formed from the norms with Python floats, which NumPy 1.x (Chainer 7.8.1's)
evaluates in float64; ``fixed``: all in double. ``g *= rate`` then converts
the rate to the gradient's dtype (see hook_ops.TensorScaleOp).
"""
import numpy

from fast import backends, hook_ops
from fast.optimizer_hooks.fused import FusedHook


class GradientLARS(FusedHook):
    name = "GradientLARS"
    call_for_each_param = True
    plan_reads_gradients = True

    def __init__(self, threshold=1e-2, weight_decay=0.0, eps=1e-9):
        self.threshold = threshold
        self.weight_decay = weight_decay
        self.eps = eps

    def plan(self, ctx):
        gsq, psq = ctx.sums_of_squares()
        rates = numpy.ones(len(ctx.entries))
        with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
            for e in ctx.entries:
                dtype = numpy.dtype(numpy.float64) if ctx.semantics.norms_in_float64 else ctx.hook_dtype(e)
                p_norm = numpy.float64(numpy.sqrt(dtype.type(psq[e.index])))
                g_norm = numpy.float64(numpy.sqrt(dtype.type(gsq[e.index])))
                local = p_norm / (self.eps + g_norm + self.weight_decay * p_norm)
                rates[e.index] = local if p_norm > self.threshold else 1.0
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_PARAM, self.weight_decay))
        ctx.ops.append(hook_ops.TensorScaleOp(rates))

    def __call__(self, rule, param):
        """As a rule hook: the same formula on one parameter, in NumPy."""
        p, g = param.data, param.grad
        if p is None or g is None:
            return
        # NumPy 1.x semantics under any NumPy: the rate in float64 from the
        # norms (``chainer`` profile: rounded to the dtype, so an fp16 sum of
        # squares below 2**-25 becomes 0; ``fixed``: float64), converted to the gradient's
        # dtype for ``g *= rate`` (and ``weight_decay`` for ``g += weight_decay * p``).
        norm_dtype = numpy.float64 if rule.semantics.norms_in_float64 else None
        xp = backends.for_array(g).xp
        p_norm = numpy.float64(float(xp.linalg.norm(p.astype(norm_dtype or p.dtype, copy=False))))
        g_norm = numpy.float64(float(xp.linalg.norm(g.astype(norm_dtype or g.dtype, copy=False))))
        local_rate = p_norm / (self.eps + g_norm + self.weight_decay * p_norm)
        rate = local_rate if p_norm > self.threshold else 1.0
        g += hook_ops.numpy1_scalar(self.weight_decay, p) * p
        g *= hook_ops.numpy1_scalar(rate, g)
