"""GradientNoise: g <- g + noise_func(xp, shape, dtype, hook, rule).

As in Chainer, ``noise_func`` receives the parameter's update rule as its
``opt`` argument (so ``opt.t`` is the rule's step count before this update)
and is called once per parameter, in parameter order, every step (also on a
step that dynamic loss scaling skips, so the random stream matches).
"""
import numpy

from fast import hook_ops


def exponential_decay_noise(xp, shape, dtype, hook, opt):
    """Gaussian noise with std sqrt(eta / (1 + t)^0.55)."""
    std = numpy.sqrt(hook.eta / numpy.power(1 + opt.t, 0.55))
    return xp.random.normal(0, std, shape).astype(dtype)


class GradientNoise(object):
    name = "GradientNoise"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, eta, noise_func=exponential_decay_noise):
        self.eta = eta
        self.noise_func = noise_func

    def plan(self, ctx):
        arrays = []
        for e in ctx.entries:
            dtype = ctx.hook_dtype(e)
            shape = tuple(e.param.data.shape)
            noise = numpy.asarray(self.noise_func(numpy, shape, dtype, self, e.rule))
            if noise.shape != shape:
                raise ValueError("noise_func returned shape {} for parameter {!r} of shape {}".format(
                    noise.shape, e.name, shape))
            arrays.append(numpy.ascontiguousarray(noise, dtype=dtype))
        ctx.ops.append(hook_ops.NoiseOp(arrays))

    def __call__(self, rule, param):
        raise TypeError("fast's GradientNoise runs inside the optimizer's fused pass; add it with opt.add_hook")
