"""Parameters: a storage dtype plus values held in an arithmetic's representation."""

import numpy

from reference.arithmetic import FLOAT_DTYPES, Float64, ObjectArithmetic

__all__ = ["Parameter"]


class Parameter:
    """A trainable array, as Chainer's ``chainer.Parameter`` is to its optimizer.

    The parameter keeps its values (and its gradient) in the arithmetic of the optimizer it
    is set up with (``Float64()`` until then). Every write through the public views rounds
    to the storage dtype, so the values always lie on the storage grid unless a caller
    writes off-grid values through :attr:`value` on purpose.

    Public views (numpy arrays of the storage dtype, fresh copies: modify them by
    assignment, never in place): :attr:`data` / :attr:`array`, :attr:`grad`.
    Reference-only accessors: :attr:`value`, :attr:`grad_value` (arithmetic values).
    """

    def __init__(self, array, name=None):
        array = numpy.asarray(array)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError("Parameter array must be float16, float32 or float64, not {}"
                            .format(array.dtype))
        self.name = name
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

    # --- public views -----------------------------------------------------------------
    @property
    def data(self):
        """The parameter as a numpy array of its storage dtype (a copy)."""
        return self._to_storage_array(self._value)

    @data.setter
    def data(self, array):
        self._value = self._ctx.array(self._checked_array(array, "data"))

    array = data

    @property
    def grad(self):
        """The gradient as a numpy array of the storage dtype (a copy), or None."""
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
        with numpy.errstate(over="ignore"):
            return self._ctx.to_float64(values).astype(self._dtype)

    def _checked_array(self, array, what):
        if not isinstance(array, numpy.ndarray):
            raise TypeError("{} of parameter {!r} must be a numpy array, not {}"
                            .format(what, self.name, type(array).__name__))
        if array.dtype != self._dtype:
            raise TypeError("{} of parameter {!r} must have dtype {}, not {}"
                            .format(what, self.name, self._dtype, array.dtype))
        if array.shape != self._shape:
            raise ValueError("{} of parameter {!r} must have shape {}, not {}"
                             .format(what, self.name, self._shape, array.shape))
        return array

    def _coerce_values(self, values, what):
        values = numpy.asarray(values)
        if values.shape != self._shape:
            raise ValueError("{} of parameter {!r} must have shape {}, not {}"
                             .format(what, self.name, self._shape, values.shape))
        if isinstance(self._ctx, ObjectArithmetic) and values.dtype == object:
            return values.copy()
        if values.dtype.kind != "f" and values.dtype != object:
            raise TypeError("{} of parameter {!r} must hold floating-point values, not {}"
                            .format(what, self.name, values.dtype))
        return self._ctx.array(values)
