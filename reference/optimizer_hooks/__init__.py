"""Chainer's optimizer hooks.

Each hook acts on the gradients before the update (timing ``pre``): an optimizer-level hook
with ``call_for_each_param`` is called as ``hook(rule, param)`` for every parameter of the
target (a parameter without a gradient is left alone), the others (GradientClipping) as
``hook(opt)`` once; a hook added to one rule (``rule.add_hook``) runs inside that rule's
update, after the division by the loss scale (see the order of an update).

Chainer writes its hooks as NumPy statements on the gradient array (``g += rate * p``,
``g *= rate``). Each NumPy operation rounds its result to its own dtype, and an in-place
statement casts the result back into the gradient's dtype: ``g <- g + rate * p`` is two
roundings, the product to its dtype, then the sum to the gradient's.

The dtype of an operation between an array and a scalar (a Python float, a NumPy scalar or
a 0-d array) follows NumPy 1.x's value-based casting: the scalar is converted to the
array's dtype unless its value needs a wider one (``numpy.min_scalar_type``: float16 holds
``|x| < 65000``, float32 ``|x| < 3.4e38``), e.g. ``1e6 * p`` is float32 for an fp16 ``p``.
A 0-d array counts as a scalar itself, and between scalars NumPy 1.x promotes by type: a
Python float (or float64) scalar makes the operation float64.
"""

from reference.optimizer_hooks.gradient_clipping import GradientClipping
from reference.optimizer_hooks.gradient_hard_clipping import GradientHardClipping
from reference.optimizer_hooks.gradient_lars import GradientLARS
from reference.optimizer_hooks.gradient_noise import GradientNoise, exponential_decay_noise
from reference.optimizer_hooks.lasso import Lasso
from reference.optimizer_hooks.weight_decay import WeightDecay

__all__ = ["WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping",
           "GradientNoise", "GradientLARS", "exponential_decay_noise"]
