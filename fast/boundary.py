"""The one place that reads and writes the parameters users hand an optimizer.

Two kinds of parameter reach ``fast``: its own ``fast.Parameter``, and Chainer's
``chainer.Parameter`` (a ``chainer.Variable``), from a ``chainer.Link`` set up as the
target. Their arrays may be NumPy or CuPy arrays. Everything the engine and the optimizer
do to a parameter goes through the functions below, which use each kind's public API:

=====================  ==============================  ======================================
                       fast.Parameter                  chainer.Parameter
=====================  ==============================  ======================================
array                  ``p.data``                      ``p.array`` (None until a lazily
                                                       initialized link's first forward)
gradient               ``p.grad``                      ``p.grad``: the array of ``p.grad_var``
                                                       once ``backward`` has run
write the gradient     ``p.grad = g`` (checked)        ``p.grad = g`` (Chainer's checks)
adopt a buffer view    ``p.adopt_storage(view)``       ``p.array = view``
loss scale its         the optimizer's: gradients      the scale ``backward(loss_scale=S)``
gradient carries       are handed over multiplied      recorded on the parameter (Chainer's
                       by ``opt.loss_scale``           ``_loss_scale``, which Chainer's own
                                                       update rule and WeightDecay read;
                                                       None: not scaled)
=====================  ==============================  ======================================

A value written anywhere else (a private attribute Chainer does not read) would be lost
silently, so nothing else in ``fast`` touches a parameter's attributes.
"""
import operator
import sys

from fast.parameter import Parameter


class FastKind(object):
    name = "fast.Parameter"
    #: whether a parameter's array can be replaced behind the engine's back (fast.Parameter's
    #: setter copies into its storage; only the engine adopts a new one)
    replaceable = False
    # C-level getters: the engine reads every gradient every step
    array = staticmethod(operator.attrgetter("data"))
    grad = staticmethod(operator.attrgetter("grad"))

    @staticmethod
    def set_grad(p, grad):
        p.grad = grad

    @staticmethod
    def adopt(p, view):
        p.adopt_storage(view)

    @staticmethod
    def loss_scale(p, optimizer_scale):
        return p.carried_loss_scale(optimizer_scale)

    @staticmethod
    def carries_optimizer_scale(p):
        """Whether ``p``'s gradient always carries the optimizer's loss scale."""
        return type(p).carried_loss_scale is Parameter.carried_loss_scale


class ChainerKind(object):
    name = "chainer.Parameter"
    replaceable = True
    array = staticmethod(operator.attrgetter("array"))
    grad = staticmethod(operator.attrgetter("grad"))

    @staticmethod
    def set_grad(p, grad):
        p.grad = grad

    @staticmethod
    def adopt(p, view):
        p.array = view

    @staticmethod
    def loss_scale(p, optimizer_scale):
        # Chainer's backward writes the scale here; its update rule reads it back.
        return p._loss_scale

    @staticmethod
    def carries_optimizer_scale(p):
        return False


def _chainer_variable():
    chainer = sys.modules.get("chainer")
    return None if chainer is None else getattr(chainer, "Variable", None)


def kind_of(p):
    """The kind of ``p``; TypeError for an object that is neither kind."""
    if isinstance(p, Parameter):
        return FastKind
    variable = _chainer_variable()
    if variable is not None and isinstance(p, variable):
        return ChainerKind
    raise TypeError("expected a fast.Parameter or a chainer.Parameter, got {}".format(type(p).__name__))


def is_parameter(p):
    try:
        kind_of(p)
    except TypeError:
        return False
    return True


def array(p):
    """The parameter's array, or None while a lazily initialized Chainer parameter has none."""
    return kind_of(p).array(p)


def grad(p):
    """The parameter's gradient array, or None."""
    return kind_of(p).grad(p)


def set_grad(p, value):
    """Make ``value`` (an array of the parameter's shape and dtype, or None) its gradient."""
    kind_of(p).set_grad(p, value)


def clear_grad(p):
    """Clear the gradient (both kinds' ``cleargrad()``)."""
    p.cleargrad()


def clear_grads(target, params):
    """Clear every gradient before a backward, as Chainer's ``update(lossfun)`` does: the
    target's own ``cleargrads()`` where it has one (a Link's, which also keeps a lazily
    initialized parameter from being given a NaN gradient), else each parameter's."""
    cleargrads = getattr(target, "cleargrads", None)
    if callable(cleargrads):
        cleargrads()
    else:
        for p in params:
            clear_grad(p)


def adopt(p, view):
    """Make ``view`` (already holding the parameter's values) the parameter's array."""
    kind_of(p).adopt(p, view)


def loss_scale(p, optimizer_scale):
    """The loss scale ``p``'s gradient carries (None: unscaled); see the module doc."""
    return kind_of(p).loss_scale(p, optimizer_scale)
