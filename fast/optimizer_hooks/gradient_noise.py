"""GradientNoise: g <- g + noise_func(xp, shape, dtype, hook, rule).

As in Chainer, ``noise_func`` receives the parameter's update rule as its
``opt`` argument (so ``opt.t`` is the rule's step count before this update)
and is called once per parameter, in parameter order, every step (also on a
step that dynamic loss scaling skips, so the random stream matches).
"""
import numpy

from fast import backends, hook_ops
from fast.optimizer_hooks.fused import FusedHook


def exponential_decay_noise(xp, shape, dtype, hook, opt):
    """Gaussian noise with std sqrt(eta / (1 + t)^0.55)."""
    std = numpy.sqrt(hook.eta / numpy.power(1 + opt.t, 0.55))
    return xp.random.normal(0, std, shape).astype(dtype)


class GradientNoise(FusedHook):
    name = "GradientNoise"
    call_for_each_param = True
    #: noise_func draws random numbers: planning must come after the non-finite check
    plan_is_pure = False

    def __init__(self, eta, noise_func=exponential_decay_noise):
        self.eta = eta
        self.noise_func = noise_func

    def plan(self, ctx):
        arrays = []
        for e in ctx.entries:
            dtype = ctx.hook_dtype(e)
            shape = ctx.hook_shape(e)
            xp = ctx.xp(e)
            noise = xp.asarray(self.noise_func(xp, shape, dtype, self, e.rule))
            if noise.shape != shape:
                raise ValueError("noise_func returned shape {} for parameter {!r} of shape {}".format(
                    noise.shape, e.name, shape))
            arrays.append(ctx.local_part(e, xp.ascontiguousarray(noise, dtype=dtype)))
        ctx.ops.append(hook_ops.NoiseOp(arrays))

    def __call__(self, rule, param):
        """As a rule hook: add noise_func's noise to the gradient, in NumPy."""
        g = param.grad
        if g is None:
            return
        g += self.noise_func(backends.for_array(g).xp, g.shape, g.dtype, self, rule)
