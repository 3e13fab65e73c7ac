"""Parameters: a storage dtype plus values held in an arithmetic's representation."""

import numpy

from reference.arithmetic import FLOAT_DTYPES, Float64, ObjectArithmetic

__all__ = ["Parameter", "read_only_storage_array"]


def read_only_storage_array(arithmetic, values, dtype):
    """``values`` as a new numpy array of ``dtype``, marked read-only.

    The public views are copies (the values live in the arithmetic's representation), so an
    in-place write into one could only be lost; marking it read-only turns that into an error.
    """
    with numpy.errstate(over="ignore"):
        array = arithmetic.to_float64(values).astype(dtype)
    array.flags.writeable = False
    return array


class Parameter:
    """A trainable array, as Chainer's ``chainer.Parameter`` is to its optimizer.

    The parameter keeps its values (and its gradient) in the arithmetic of the optimizer it
    is set up with (``Float64()`` until then). Every write through the public views rounds
    to the storage dtype, so the values always lie on the storage grid unless a caller
    writes off-grid values through :attr:`value` on purpose.

    Public views (read-only numpy arrays of the storage dtype, copies of the values: modify
    them by assignment, ``p.data = a``; an in-place write such as ``p.data[...] = a`` raises
    ``ValueError: assignment destination is read-only`` instead of being lost):
    :attr:`data` / :attr:`array`, :attr:`grad`.
    Reference-only accessors: :attr:`value`, :attr:`grad_value` (arithmetic values).
    """

    def __init__(self, array, name=None):
        array = numpy.asarray(array)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError("Parameter array must be float16, float32 or float64, not {}"
                            .format(array.dtype))
        self.name = name
        # The name the last optimizer set-up gave it ('/w', '/0', ...), for error messages.
        self.name_in_optimizer = None
        self.update_rule = None
        self._dtype = array.dtype
        self._shape = array.shape
        self._ctx = Float64()
        self._value = self._ctx.array(array)
        self._grad_value = None
        # The loss scale the current gradient carries (Chainer: set by backward). The
        # optimizer sets it before each update; None means "not scaled".
        self._loss_scale = None

    def __repr__(self):
        return "Parameter(name={!r}, shape={}, dtype={})".format(
            self.name, self._shape, self._dtype)

    # --- metadata ---------------------------------------------------------------------
    @property
    def dtype(self):
        return self._dtype

    @property
    def shape(self):
        return self._shape

    @property
    def size(self):
        return int(numpy.prod(self._shape, dtype=numpy.int64))

    @property
    def arithmetic(self):
        """The arithmetic context the values are held in."""
        return self._ctx

    @property
    def label(self):
        """How error messages name it: ``name``, else its name in the optimizer it was last
        set up with (``'/w'``), else None."""
        return self.name if self.name is not None else self.name_in_optimizer

    def describe(self):
        """``"parameter '/w'"`` (see :attr:`label`), or ``"unnamed parameter"``."""
        label = self.label
        return "unnamed parameter" if label is None else "parameter {!r}".format(label)

    # --- public views -----------------------------------------------------------------
    @property
    def data(self):
        """The parameter as a read-only numpy array of its storage dtype (a copy)."""
        return self._to_storage_array(self._value)

    @data.setter
    def data(self, array):
        self._value = self._ctx.array(self._checked_array(array, "data"))

    array = data

    @property
    def grad(self):
        """The gradient as a read-only numpy array of the storage dtype (a copy), or None."""
        if self._grad_value is None:
            return None
        return self._to_storage_array(self._grad_value)

    @grad.setter
    def grad(self, array):
        if array is None:
            self._grad_value = None
        else:
            self._grad_value = self._ctx.array(self._checked_array(array, "grad"))

    def cleargrad(self):
        self._grad_value = None

    def zerograd(self):
        self._grad_value = self._ctx.zeros_like(self._value)

    # --- reference-only accessors ------------------------------------------------------
    @property
    def value(self):
        """The values in the arithmetic's representation (the live array)."""
        return self._value

    @value.setter
    def value(self, values):
        self._value = self._coerce_values(values, "value")

    @property
    def grad_value(self):
        """The gradient in the arithmetic's representation (live), or None."""
        return self._grad_value

    @grad_value.setter
    def grad_value(self, values):
        self._grad_value = None if values is None else self._coerce_values(values, "grad_value")

    # --- used by update rules and optimizers -------------------------------------------
    def store(self, values):
        """Writes ``values`` into the parameter, rounded to the storage dtype."""
        self._value = self._ctx.round_to(values, self._dtype)

    def store_grad(self, values):
        """Writes ``values`` into the gradient, rounded to the storage dtype."""
        self._grad_value = self._ctx.round_to(values, self._dtype)

    def bind(self, arithmetic):
        """Moves the values (and gradient) into ``arithmetic`` (exact for on-grid values)."""
        if arithmetic is self._ctx:
            return
        self._value = arithmetic.array(self._value)
        if self._grad_value is not None:
            self._grad_value = arithmetic.array(self._grad_value)
        self._ctx = arithmetic

    # --- helpers ----------------------------------------------------------------------
    def _to_storage_array(self, values):
        return read_only_storage_array(self._ctx, values, self._dtype)

    def _checked_array(self, array, what):
        if not isinstance(array, numpy.ndarray):
            raise TypeError("{} of {} must be a numpy array, not {}"
                            .format(what, self.describe(), type(array).__name__))
        if array.dtype != self._dtype:
            raise TypeError("{} of {} must have dtype {}, not {}"
                            .format(what, self.describe(), self._dtype, array.dtype))
        if array.shape != self._shape:
            raise ValueError("{} of {} must have shape {}, not {}"
                             .format(what, self.describe(), self._shape, array.shape))
        return array

    def _coerce_values(self, values, what):
        values = numpy.asarray(values)
        if values.shape != self._shape:
            raise ValueError("{} of {} must have shape {}, not {}"
                             .format(what, self.describe(), self._shape, values.shape))
        if isinstance(self._ctx, ObjectArithmetic) and values.dtype == object:
            return values.copy()
        if values.dtype.kind != "f" and values.dtype != object:
            raise TypeError("{} of {} must hold floating-point values, not {}"
                            .format(what, self.describe(), values.dtype))
        return self._ctx.array(values)
