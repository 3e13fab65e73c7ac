"""What an optimizer optimizes: named parameters gathered from a mapping, an iterable or a
Link-like object with ``namedparams()``."""

import collections.abc

from reference.parameter import Parameter

__all__ = ["Target"]


class Target:
    """The parameters of an optimization target, in a fixed order, with Chainer's names.

    * a mapping: ``"/" + key`` (``{"w": p}`` -> ``"/w"``);
    * an object with ``namedparams()`` (e.g. a Chainer Link): the names it yields;
    * any other iterable: ``"/0"``, ``"/1"``, ... by position.

    Offers the part of Chainer's Link interface that optimizers and hooks use:
    :meth:`params`, :meth:`namedparams`, :meth:`cleargrads`, :meth:`zerograds`.
    ``source`` is the object given to ``setup``.
    """

    def __init__(self, source):
        self.source = source
        self._named = _collect(source)

    def namedparams(self, include_uninit=True):
        return iter(list(self._named))

    def params(self, include_uninit=True):
        return iter([param for _, param in self._named])

    def cleargrads(self):
        for _, param in self._named:
            param.cleargrad()

    def zerograds(self):
        for _, param in self._named:
            param.zerograd()

    def __len__(self):
        return len(self._named)


def _collect(source):
    if isinstance(source, Parameter):
        raise TypeError("optimization target must be a mapping, an iterable of Parameters or "
                        "an object with namedparams(), not a single Parameter "
                        "(wrap it: setup([param]))")
    if isinstance(source, collections.abc.Mapping):
        named = [("/" + str(key).lstrip("/"), param) for key, param in source.items()]
    elif callable(getattr(source, "namedparams", None)):
        named = list(source.namedparams())
    elif isinstance(source, collections.abc.Iterable) and not isinstance(source, (str, bytes)):
        named = [("/{}".format(index), param) for index, param in enumerate(source)]
    else:
        raise TypeError("optimization target must be a mapping, an iterable of Parameters or "
                        "an object with namedparams(), not {}".format(type(source).__name__))
    _check_named(named)
    return named


def _check_named(named):
    seen_names, seen_ids = set(), set()
    for name, param in named:
        if not isinstance(param, Parameter):
            raise TypeError("parameter {!r} is a {}, not a reference.Parameter (the reference "
                            "holds its own values; build reference.Parameter objects from "
                            "your arrays)".format(name, type(param).__name__))
        if name in seen_names:
            raise ValueError("two parameters are named {!r}".format(name))
        if id(param) in seen_ids:
            raise ValueError("parameter {!r} appears twice in the target".format(name))
        seen_names.add(name)
        seen_ids.add(id(param))
