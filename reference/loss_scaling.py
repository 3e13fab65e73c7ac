"""Static and dynamic loss scaling with Chainer's schedule."""

import collections
import math
import numbers
import warnings

__all__ = ["LossScaling", "LossScalingState", "LOSS_SCALE_MAX"]

#: Upper clamp of the dynamic loss scale (fp16's largest finite value).
LOSS_SCALE_MAX = 65504

#: The loss-scaling state: the scale (None when off), whether it is dynamic, the per-step
#: growth factor after the first non-finite step (None until dynamic scaling is configured),
#: and whether a non-finite gradient was ever seen.
LossScalingState = collections.namedtuple(
    "LossScalingState", ["scale", "dynamic", "multiplier", "isnan_ever"])


class LossScaling:
    """The loss scale and its schedule (Chainer's ``Optimizer`` loss-scaling methods).

    Dynamic schedule, applied by :meth:`update_scale` after every step:
    ``scale <- clamp(scale * m, 1, 65504)`` with ``m = 0.5`` when this step found a
    non-finite gradient, ``m = 2`` while none was ever found, and
    ``m = 2**(1/interval)`` afterwards. The scale is a float64 value, as in Chainer.
    """

    def __init__(self):
        self.scale = None
        self.dynamic = False
        self.multiplier = None
        self.isnan_ever = False
        self.isnan = False

    def configure(self, interval=1000, scale=None):
        """Dynamic scaling from 1.0 (``scale=None``) or a static ``scale``.

        Chainer quirk kept: a static scale set after dynamic scaling keeps the dynamic
        schedule running from that scale.
        """
        if scale is None:
            if not isinstance(interval, numbers.Real):
                raise TypeError("interval must be a number, not {!r}".format(interval))
            if interval < 1:
                raise ValueError("interval must be greater than or equal to 1. Actual: {}"
                                 .format(interval))
            self.dynamic = True
            self.scale = 1.0
            self.multiplier = math.pow(2.0, 1.0 / interval)
            self.isnan_ever = False
        else:
            if not isinstance(scale, numbers.Real):
                raise TypeError("loss_scale must be a number, not {!r}".format(scale))
            if scale <= 0:
                raise ValueError("loss_scale must be a positive number. Actual: {}"
                                 .format(scale))
            self.scale = scale

    def check(self, grads_finite, step):
        """Records whether this step's gradients are all finite (dynamic scaling only).

        ``grads_finite`` is an iterable of (name, bool).
        """
        self.isnan = False
        if not self.dynamic:
            return
        for name, finite in grads_finite:
            if not finite:
                self.isnan = True
                self.isnan_ever = True
                warnings.warn("Non finite number found in param.grad of {} (iteration: {}, "
                              "loss_scale: {})".format(name, step, self.scale))

    def is_safe_to_update(self):
        return not self.isnan

    def update_scale(self):
        if not self.dynamic:
            return
        if self.isnan:
            multiplier = 0.5
        elif self.isnan_ever:
            multiplier = self.multiplier
        else:
            multiplier = 2.0
        self.scale = float(max(1, min(LOSS_SCALE_MAX, self.scale * multiplier)))

    @property
    def state(self):
        return LossScalingState(self.scale, self.dynamic, self.multiplier, self.isnan_ever)

    @state.setter
    def state(self, state):
        scale, dynamic, multiplier, isnan_ever = state
        if scale is not None and (not isinstance(scale, numbers.Real) or not scale > 0
                                  or not math.isfinite(scale)):
            raise ValueError("loss scale must be None or a positive finite number, not {!r}"
                             .format(scale))
        if multiplier is not None and (not isinstance(multiplier, numbers.Real)
                                       or not math.isfinite(multiplier)):
            raise ValueError("multiplier must be None or a finite number, not {!r}"
                             .format(multiplier))
        if dynamic and (scale is None or multiplier is None):
            raise ValueError("dynamic loss scaling needs a scale and a multiplier")
        self.scale = None if scale is None else float(scale)
        self.dynamic = bool(dynamic)
        self.multiplier = None if multiplier is None else float(multiplier)
        self.isnan_ever = bool(isnan_ever)
