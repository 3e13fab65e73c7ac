"""Chainer's optimizer hooks."""

from reference.optimizer_hooks.gradient_clipping import GradientClipping
from reference.optimizer_hooks.gradient_hard_clipping import GradientHardClipping
from reference.optimizer_hooks.gradient_lars import GradientLARS
from reference.optimizer_hooks.gradient_noise import GradientNoise, exponential_decay_noise
from reference.optimizer_hooks.lasso import Lasso
from reference.optimizer_hooks.weight_decay import WeightDecay

__all__ = ["WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping",
           "GradientNoise", "GradientLARS", "exponential_decay_noise"]
