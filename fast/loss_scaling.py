"""Loss-scaling state and Chainer's schedule.

Dynamic scaling (``scale=None``) starts at 1 and, after each step, multiplies
the scale by 0.5 when a gradient held inf/NaN, by 2 while no non-finite
gradient was ever seen, and by 2**(1/interval) afterwards, clamped to
[1, 65504]. Static scaling keeps the scale fixed.
"""
import math

LOSS_SCALE_MAX = 65504


class LossScaling(object):
    """The loss-scaling fields of one optimizer."""

    def __init__(self):
        self.scale = None
        self.dynamic = False
        self.multiplier = None
        self.isnan_ever = False
        self.isnan = False

    def configure(self, interval=1000, scale=None):
        """``Optimizer.loss_scaling``: validate everything, then change."""
        if scale is None:
            if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 1:
                raise ValueError("interval must be greater than or equal to 1. Actual: {}".format(interval))
            self.dynamic = True
            self.scale = 1.0
            self.multiplier = math.pow(2.0, 1.0 / interval)
            self.isnan_ever = False
        else:
            if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
                raise ValueError("loss_scale must be a positive number. Actual: {}".format(scale))
            self.scale = scale
            self.dynamic = False

    def next_scale(self):
        """Advance the dynamic schedule after a step."""
        if not self.dynamic:
            return
        if self.isnan:
            multiplier = 0.5
        elif self.isnan_ever:
            multiplier = self.multiplier
        else:
            multiplier = 2.0
        self.scale = max(1, min(LOSS_SCALE_MAX, self.scale * multiplier))
