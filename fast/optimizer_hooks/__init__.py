"""Chainer's optimizer hooks. Each plans itself into the fused kernel pass
(``plan(ctx)``); any other callable added with ``opt.add_hook`` is called as
Chainer calls it (see fast.optimizer_hooks.fused)."""
from fast.optimizer_hooks import fused
from fast.optimizer_hooks.gradient_clipping import GradientClipping  # NOQA
from fast.optimizer_hooks.gradient_hard_clipping import GradientHardClipping  # NOQA
from fast.optimizer_hooks.gradient_lars import GradientLARS  # NOQA
from fast.optimizer_hooks.gradient_noise import GradientNoise, exponential_decay_noise  # NOQA
from fast.optimizer_hooks.lasso import Lasso  # NOQA
from fast.optimizer_hooks.weight_decay import WeightDecay  # NOQA

FUSED_CLASSES = (GradientClipping, GradientHardClipping, GradientLARS, GradientNoise, Lasso, WeightDecay)


def is_fused(hook):
    """Whether the optimizer plans ``hook`` into the fused pass (fast.optimizer_hooks.fused)."""
    return fused.is_fused(hook, FUSED_CLASSES)
