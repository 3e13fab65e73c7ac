"""Hyperparameters with parent chains, and the alias properties optimizers expose."""

__all__ = ["Hyperparameter", "HyperparameterProxy"]


class Hyperparameter:
    """A set of named hyperparameters that falls back to a parent for unset names.

    An optimizer owns the root; each update rule owns a child whose parent is the
    optimizer's, so ``rule.hyperparam.lr = 0.5`` overrides one parameter's rate while
    ``opt.lr = 0.1`` changes every rule that has no override. Chain: rule -> optimizer ->
    (for rules built without one) the family's default hyperparameters.
    """

    def __init__(self, parent=None):
        self._parent = parent

    def __getattr__(self, name):
        if "_parent" not in self.__dict__:
            raise AttributeError("_parent is not set up yet")
        parent = self.__dict__["_parent"]
        if parent is None:
            raise AttributeError("hyperparameter {!r} is not defined".format(name))
        return getattr(parent, name)

    def __repr__(self):
        values = self.get_dict()
        return "Hyperparameter({})".format(
            ", ".join("{}={}".format(key, values[key]) for key in sorted(values)))

    @property
    def parent(self):
        """The hyperparameter set consulted for names not set here (or None)."""
        return self._parent

    def get_dict(self):
        """All visible hyperparameters, own values overriding the parent chain's."""
        values = {} if self._parent is None else self._parent.get_dict()
        values.update((key, value) for key, value in self.__dict__.items()
                      if key != "_parent")
        return values


class HyperparameterProxy:
    """Class attribute that aliases ``obj.hyperparam.<name>`` (e.g. ``opt.lr``)."""

    def __init__(self, attr_name):
        self._attr_name = attr_name
        self.__doc__ = "Alias to ``self.hyperparam.{}``".format(attr_name)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return getattr(obj.hyperparam, self._attr_name)

    def __set__(self, obj, value):
        setattr(obj.hyperparam, self._attr_name, value)
