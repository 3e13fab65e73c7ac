"""Foreign parameter objects (e.g. ``chainer.Parameter``) as optimization targets.

The reference keeps values in its own arithmetic, so a foreign parameter is mirrored by an
:class:`ExternalParameter`: before an optimizer operation (``update``, ``call_hooks``) the
mirror reads the foreign ``.array`` and ``.grad``; afterwards it writes both back (in place
when the foreign arrays are numpy arrays of the same shape and dtype, as Chainer's CPU
arrays are) and the rule is set as the foreign object's ``update_rule``.
"""

import numpy

from reference.parameter import Parameter

__all__ = ["ExternalParameter", "is_foreign_parameter"]


def is_foreign_parameter(obj):
    """Whether ``obj`` looks like a Chainer parameter: it has ``array`` and ``grad``."""
    return not isinstance(obj, Parameter) and hasattr(obj, "array") and hasattr(obj, "grad")


class ExternalParameter(Parameter):
    """A :class:`Parameter` mirroring a foreign parameter object ``external``."""

    def __init__(self, external, name=None):
        array = _host_array(external.array, name, "array")
        super().__init__(array, name=getattr(external, "name", None) or name)
        self.external = external

    @property
    def update_rule(self):
        return self._update_rule

    @update_rule.setter
    def update_rule(self, rule):
        self._update_rule = rule
        if rule is not None:
            self.external.update_rule = rule

    def pull(self):
        """Reads the foreign array and gradient (checked like any assignment)."""
        self.data = _host_array(self.external.array, self.label, "array")
        grad = self.external.grad
        self.grad = None if grad is None else _host_array(grad, self.label, "grad")

    def push(self):
        """Writes the values and the gradient back into the foreign object."""
        _write_back(self.external, "array", self.data)
        _write_back(self.external, "grad", self.grad)

    def cleargrad(self):
        super().cleargrad()
        if callable(getattr(self.external, "cleargrad", None)):
            self.external.cleargrad()
        else:
            self.external.grad = None


def _host_array(array, name, what):
    if array is None:
        raise TypeError("parameter {!r} has no {} (uninitialized parameters are not supported)"
                        .format(name, what))
    if not isinstance(array, numpy.ndarray):
        raise TypeError("{} of parameter {!r} is a {}, not a numpy array (only CPU arrays are "
                        "supported)".format(what, name, type(array).__name__))
    return array


def _write_back(external, attribute, values):
    current = getattr(external, attribute)
    if values is None:
        if current is not None:
            setattr(external, attribute, None)
    elif (isinstance(current, numpy.ndarray) and current.shape == values.shape
            and current.dtype == values.dtype and current.flags.writeable):
        current[...] = values
    else:
        # The views are read-only; the foreign object gets an array it may write into.
        setattr(external, attribute, numpy.array(values))
