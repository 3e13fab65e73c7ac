"""GradientNoise: additive Gaussian gradient noise (Neelakantan et al.)."""

import numpy


def exponential_decay_noise(xp, shape, dtype, hook, opt):
    """Chainer's default noise: ``N(0, eta / (1 + t)**0.55)`` from ``xp.random``, cast to
    ``dtype``. ``opt`` is the update rule (Chainer quirk), so ``t`` is the rule's step count
    before this step's increment."""
    std = numpy.sqrt(hook.eta / numpy.power(1 + opt.t, 0.55))
    return xp.random.normal(0, std, shape).astype(dtype)


class GradientNoise:
    """``g <- g + noise_func(numpy, g.shape, g.dtype, hook, rule)`` per parameter.

    The noise is a numpy array (converted exactly into the arithmetic); the sum is stored in
    the gradient's dtype. Chainer quirk kept: ``noise_func`` receives the update rule in its
    ``opt`` argument.
    """

    name = "GradientNoise"
    call_for_each_param = True
    timing = "pre"

    def __init__(self, eta, noise_func=exponential_decay_noise):
        self.eta = eta
        self.noise_func = noise_func

    def __call__(self, rule, param):
        if param.grad_value is None:
            return
        noise = numpy.asarray(self.noise_func(numpy, param.shape, param.dtype, self, rule))
        if noise.shape != param.shape:
            raise ValueError("noise_func returned shape {}, expected {}"
                             .format(noise.shape, param.shape))
        param.store_grad(param.grad_value + param.arithmetic.array(noise))
