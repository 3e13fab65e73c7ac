"""The reference model of Chainer 7.8.1's optimizers: float64 and mpmath from one source."""

from reference import arithmetic, optimizer_hooks, optimizers, profiles, serializers
from reference.arithmetic import Float64, Mpmath
from reference.hyperparameter import Hyperparameter
from reference.optimizer import GradientMethod, Optimizer
from reference.parameter import Parameter
from reference.update_rule import UpdateRule

__all__ = ["Parameter", "Hyperparameter", "UpdateRule", "Optimizer", "GradientMethod",
           "optimizers", "optimizer_hooks", "serializers", "arithmetic", "profiles",
           "Float64", "Mpmath"]
