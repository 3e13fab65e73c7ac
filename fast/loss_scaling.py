"""Loss-scaling state and Chainer's schedule.

Dynamic scaling (``scale=None``) starts at 1 and, after each step, multiplies
the scale by 0.5 when a gradient held inf/NaN, by 2 while no non-finite
gradient was ever seen, and by 2**(1/interval) afterwards, clamped to
[1, 65504]. Static scaling keeps the scale fixed.

Every change of the state goes through the methods below (the optimizer's
steps, fast.distributed's combined checks, checkpoints).
"""
import math

LOSS_SCALE_MAX = 65504


class LossScaling(object):
    """The loss-scaling fields of one optimizer.

    ``scale`` (None: off), ``dynamic``, ``multiplier`` (2**(1/interval), dynamic only),
    ``isnan_ever`` (a non-finite gradient was seen since dynamic scaling started) and
    ``isnan`` (the current step's gradients hold one).
    """

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

    def begin_check(self):
        """A new non-finite check starts: nothing found yet."""
        self.isnan = False

    def found_nonfinite(self):
        """The current check found a non-finite gradient (the step will be skipped)."""
        self.isnan = True
        self.isnan_ever = True

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

    def fields(self):
        """(scale, dynamic, multiplier, isnan_ever): what a checkpoint and the ranks'
        agreement compare."""
        return (self.scale, self.dynamic, self.multiplier, self.isnan_ever)

    def restore(self, scale, dynamic, multiplier, isnan_ever):
        """Set the fields a checkpoint holds (already validated)."""
        self.scale, self.dynamic, self.multiplier, self.isnan_ever = scale, bool(dynamic), multiplier, bool(isnan_ever)
