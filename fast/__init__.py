"""fast: Chainer 7.8.1's optimizers on a fused multi-tensor engine.

Same public API as ``reference`` (see README.md); design in docs/fast.md.
"""
from fast import optimizer_hooks, optimizers, serializers  # NOQA
from fast.hyperparameter import Hyperparameter, HyperparameterProxy  # NOQA
from fast.optimizer import GradientMethod  # NOQA
from fast.parameter import Parameter  # NOQA
from fast.update_rule import UpdateRule  # NOQA
