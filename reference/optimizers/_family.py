"""Helpers shared by the optimizer families: default hyperparameters and rule overrides."""

from reference.hyperparameter import Hyperparameter


def default_hyperparam(**values):
    """The family's defaults: the root of every rule's parent chain."""
    defaults = Hyperparameter()
    for name, value in values.items():
        setattr(defaults, name, value)
    return defaults


def set_overrides(hyperparam, **values):
    """Sets the per-rule overrides that were given (those not None)."""
    for name, value in values.items():
        if value is not None:
            setattr(hyperparam, name, value)


def set_all(hyperparam, **values):
    for name, value in values.items():
        setattr(hyperparam, name, value)
