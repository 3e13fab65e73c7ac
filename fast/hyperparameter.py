"""Hyperparameters with parent chains, as in Chainer.

A rule's ``Hyperparameter`` falls back to its parent (the optimizer's) for
every name it does not set itself. Every assignment anywhere bumps a global
generation counter; the engine re-reads hyperparameters only when it changed,
so the hot path never walks the chains.
"""
import itertools

_generation = itertools.count(1)
_current = [0]


def generation():
    """A number that changes whenever any hyperparameter is assigned."""
    return _current[0]


def bump():
    """Mark every hyperparameter as possibly changed (the engine re-reads them)."""
    _current[0] = next(_generation)


class Hyperparameter(object):
    """A set of named hyperparameters that falls back to ``parent``."""

    def __init__(self, parent=None):
        object.__setattr__(self, "_parent", parent)

    def __getattr__(self, name):
        if name.startswith("__") or "_parent" not in self.__dict__:
            raise AttributeError(name)
        parent = self.__dict__["_parent"]
        if parent is None:
            raise AttributeError("hyperparameter {!r} is not set".format(name))
        return getattr(parent, name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        bump()

    def __delattr__(self, name):
        object.__delattr__(self, name)
        bump()

    def __repr__(self):
        d = self.get_dict()
        return "Hyperparameter({})".format(", ".join("%s=%s" % (k, d[k]) for k in sorted(d)))

    @property
    def parent(self):
        """The hyperparameter this one falls back to."""
        return self._parent

    def get_dict(self):
        """Every entry visible from here, the nearest definition winning."""
        d = {} if self._parent is None else self._parent.get_dict()
        d.update((k, v) for k, v in self.__dict__.items() if k != "_parent")
        return d


class HyperparameterProxy(object):
    """Class attribute that aliases ``obj.hyperparam.<name>``."""

    def __init__(self, attr_name):
        self._attr_name = attr_name
        self.__doc__ = "Alias to ``self.hyperparam.{}``".format(attr_name)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return getattr(obj.hyperparam, self._attr_name)

    def __set__(self, obj, value):
        setattr(obj.hyperparam, self._attr_name, value)


def defaults(**entries):
    """A parentless Hyperparameter holding an optimizer's defaults."""
    hp = Hyperparameter()
    for k, v in entries.items():
        setattr(hp, k, v)
    return hp
