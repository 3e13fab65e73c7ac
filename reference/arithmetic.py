"""Arithmetic contexts: one rule source, several number systems.

Every update rule and hook in :mod:`reference` is written once against a context ``ctx``.
A context decides what a *value* is and supplies every operation that is not a plain Python
operator.

The protocol (what rules may rely on):

* Values are numpy arrays: ``float64`` arrays in :class:`Float64`, object arrays whose elements
  are numbers of one type in an :class:`ObjectArithmetic` (e.g. :class:`Mpmath`). Scalars are
  numbers of the same kind (``numpy.float64`` / an element number).
* Rules may apply ``+ - * / ** unary-`` and comparisons ``< <= > >= ==`` to values and scalars
  (``/`` only where the denominator cannot be zero; use :meth:`Arithmetic.divide` otherwise).
* Everything else goes through the context: ``array, scalar, to_float64, sqrt, abs, sign,
  maximum, minimum, clip, where, isnan, isfinite, sum, pow, divide, zeros_like, ones_like,
  round_to``.
* ``round_to(values, dtype)`` rounds to the nearest value representable in the numpy float
  dtype (ties to even, subnormals included) and overflows to +-inf exactly as a cast does. It
  is the only place where a storage dtype enters the arithmetic; the rules call it wherever
  Chainer stores into an array of a given dtype.

No context touches global state: :class:`Mpmath` uses a private ``mpmath.MPContext``.
"""

import mpmath
import numpy

__all__ = ["Arithmetic", "Float64", "ObjectArithmetic", "Mpmath", "FLOAT_DTYPES"]

#: The storage dtypes the reference models.
FLOAT_DTYPES = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32),
                numpy.dtype(numpy.float64))


def _float_dtype(dtype):
    dtype = numpy.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError("storage dtype must be float16, float32 or float64, not {}"
                        .format(dtype))
    return dtype


class Arithmetic:
    """Base class naming the operations of the protocol (see the module docstring)."""

    name = "arithmetic"

    def array(self, values):
        """Converts a numpy array (any float dtype, or an object array) exactly."""
        raise NotImplementedError

    def scalar(self, number):
        """Converts a Python or numpy number exactly."""
        raise NotImplementedError

    def to_float64(self, values):
        """Returns values as a float64 numpy array (nearest float64)."""
        raise NotImplementedError

    def to_python_float(self, scalar):
        return float(self.to_float64(numpy.asarray(scalar)).reshape(()))

    def zeros_like(self, values):
        return self.array(numpy.zeros(numpy.shape(values)))

    def ones_like(self, values):
        return self.array(numpy.ones(numpy.shape(values)))

    def clip(self, values, lower, upper):
        """``minimum(maximum(values, lower), upper)``, NaN propagating (numpy.clip)."""
        return self.minimum(self.maximum(values, lower), upper)

    def __repr__(self):
        return self.name


class Float64(Arithmetic):
    """IEEE float64 arithmetic with NumPy: values are float64 arrays, scalars numpy.float64."""

    name = "float64"

    def array(self, values):
        return numpy.array(values, dtype=numpy.float64)

    def scalar(self, number):
        return numpy.float64(number)

    def to_float64(self, values):
        return numpy.array(values, dtype=numpy.float64)

    def sqrt(self, values):
        return numpy.sqrt(values)

    def abs(self, values):
        return numpy.abs(values)

    def sign(self, values):
        return numpy.sign(values)

    def maximum(self, a, b):
        return numpy.maximum(a, b)

    def minimum(self, a, b):
        return numpy.minimum(a, b)

    def where(self, condition, a, b):
        return numpy.where(condition, a, b)

    def isnan(self, values):
        return numpy.isnan(values)

    def isfinite(self, values):
        return numpy.isfinite(values)

    def sum(self, values):
        return numpy.float64(numpy.sum(values, dtype=numpy.float64))

    def pow(self, base, exponent):
        return numpy.power(numpy.float64(base), exponent)

    def divide(self, numerator, denominator):
        return numpy.true_divide(numerator, denominator)

    def round_to(self, values, dtype):
        dtype = _float_dtype(dtype)
        values = numpy.asarray(values, dtype=numpy.float64)
        if dtype == numpy.float64:
            return values.copy()
        return values.astype(dtype).astype(numpy.float64)


class ObjectArithmetic(Arithmetic):
    """Arithmetic over numpy object arrays of some number type.

    Subclasses supply the element-level operations below; operators are the number type's
    own. A user-supplied number type works by subclassing this and implementing
    :meth:`number`, :meth:`number_to_float`, :meth:`number_sqrt`, :meth:`number_isnan`,
    :meth:`number_isinf` and :meth:`number_round_to`.
    """

    name = "object"

    # --- element operations (override) -------------------------------------------------
    def number(self, x):
        """An exact element for a Python float / int (or an element itself)."""
        raise NotImplementedError

    def number_to_float(self, x):
        raise NotImplementedError

    def number_sqrt(self, x):
        """Square root of a non-negative element (NaN and +inf pass through)."""
        raise NotImplementedError

    def number_isnan(self, x):
        raise NotImplementedError

    def number_isinf(self, x):
        raise NotImplementedError

    def number_round_to(self, x, finfo):
        """Rounds an element to the float format ``finfo`` (a numpy.finfo)."""
        raise NotImplementedError

    def number_nan(self):
        return self.number(float("nan"))

    def number_inf(self):
        return self.number(float("inf"))

    # --- helpers -------------------------------------------------------------------------
    def _map(self, function, *arrays):
        arrays = numpy.broadcast_arrays(*[self._as_object(a) for a in arrays])
        out = numpy.empty(arrays[0].shape, dtype=object)
        for index in numpy.ndindex(out.shape):
            out[index] = function(*[a[index] for a in arrays])
        return out

    def _map_bool(self, function, values):
        values = self._as_object(values)
        out = numpy.empty(values.shape, dtype=bool)
        for index in numpy.ndindex(values.shape):
            out[index] = bool(function(values[index]))
        return out

    def _as_object(self, values):
        if isinstance(values, numpy.ndarray):
            if values.dtype == object:
                return values
            return self.array(values)
        if isinstance(values, (bool, numpy.bool_)):
            return numpy.asarray(values)
        out = numpy.empty((), dtype=object)
        out[()] = self.number(values) if isinstance(values, (int, float, numpy.floating)) \
            else values
        return out

    # --- protocol ------------------------------------------------------------------------
    def array(self, values):
        values = numpy.asarray(values)
        out = numpy.empty(values.shape, dtype=object)
        for index in numpy.ndindex(values.shape):
            element = values[index]
            if isinstance(element, (numpy.floating, numpy.integer)):
                element = element.item()
            out[index] = self.number(element)
        return out

    def scalar(self, number):
        if isinstance(number, (numpy.floating, numpy.integer)):
            number = number.item()
        return self.number(number)

    def to_float64(self, values):
        values = self._as_object(values)
        out = numpy.empty(values.shape, dtype=numpy.float64)
        for index in numpy.ndindex(values.shape):
            out[index] = self.number_to_float(values[index])
        return out

    def sqrt(self, values):
        nan = self.number_nan()
        return self._unwrap(self._map(
            lambda x: nan if x < 0 else self.number_sqrt(x), values))

    def abs(self, values):
        return self._unwrap(self._map(abs, values))

    def sign(self, values):
        zero, one = self.number(0), self.number(1)

        def sign(x):
            if self.number_isnan(x):
                return x
            return one if x > 0 else (-one if x < 0 else zero)
        return self._unwrap(self._map(sign, values))

    def maximum(self, a, b):
        def maximum(x, y):
            if self.number_isnan(x):
                return x
            if self.number_isnan(y):
                return y
            return y if y > x else x
        return self._unwrap(self._map(maximum, a, b))

    def minimum(self, a, b):
        def minimum(x, y):
            if self.number_isnan(x):
                return x
            if self.number_isnan(y):
                return y
            return y if y < x else x
        return self._unwrap(self._map(minimum, a, b))

    def where(self, condition, a, b):
        condition = numpy.asarray(condition, dtype=bool)
        a, b = self._as_object(a), self._as_object(b)
        return self._unwrap(numpy.where(condition, a, b).astype(object))

    def isnan(self, values):
        return self._map_bool(self.number_isnan, values)

    def isfinite(self, values):
        return self._map_bool(
            lambda x: not (self.number_isnan(x) or self.number_isinf(x)), values)

    def sum(self, values):
        total = self.number(0)
        for element in self._as_object(values).ravel():
            total = total + element
        return total

    def pow(self, base, exponent):
        return self.scalar(base) ** self.scalar(exponent)

    def divide(self, numerator, denominator):
        """IEEE division: x/0 is +-inf (NaN for 0/0 and NaN/0) instead of raising."""
        nan, inf = self.number_nan(), self.number_inf()

        def divide(x, y):
            if y != 0 or self.number_isnan(y):
                return x / y
            if x == 0 or self.number_isnan(x):
                return nan
            return inf if x > 0 else -inf
        return self._unwrap(self._map(divide, numerator, denominator))

    def round_to(self, values, dtype):
        finfo = numpy.finfo(_float_dtype(dtype))
        return self._map(lambda x: self.number_round_to(x, finfo), values)

    @staticmethod
    def _unwrap(values):
        return values[()] if values.shape == () else values


class Mpmath(ObjectArithmetic):
    """Arbitrary-precision arithmetic with mpmath at ``dps`` decimal digits.

    Elements are ``mpf`` numbers of a private ``mpmath.MPContext`` (so the global
    ``mpmath.mp`` precision is never touched). Conversions from binary floats are exact;
    :meth:`round_to` rounds correctly (ties to even) from the full-precision value.
    mpmath has no signed zero: ``-0.0`` becomes ``0``.
    """

    def __init__(self, dps=50):
        if not isinstance(dps, int) or dps < 1:
            raise ValueError("dps must be a positive integer, not {!r}".format(dps))
        self.dps = dps
        self.mp = mpmath.MPContext()
        self.mp.dps = dps
        self.name = "mpmath(dps={})".format(dps)

    def number(self, x):
        return self.mp.mpf(x)

    def number_to_float(self, x):
        return float(x)

    def number_sqrt(self, x):
        return self.mp.sqrt(x)

    def number_isnan(self, x):
        return self.mp.isnan(x)

    def number_isinf(self, x):
        return self.mp.isinf(x)

    def number_round_to(self, x, finfo):
        if self.mp.isnan(x) or self.mp.isinf(x) or x == 0:
            return x
        negative, mantissa, exponent, bit_count = x._mpf_
        if negative:
            mantissa = -mantissa
        top_bit = exponent + bit_count - 1  # exponent of the leading bit
        quantum = max(top_bit, int(finfo.minexp)) - int(finfo.nmant)
        if exponent < quantum:
            mantissa = _round_half_even_shift(mantissa, quantum - exponent)
            exponent = quantum
        rounded = self.mp.ldexp(self.mp.mpf(mantissa), exponent)
        if abs(rounded) > self.mp.mpf(float(finfo.max)):
            return self.mp.mpf("inf") if rounded > 0 else self.mp.mpf("-inf")
        return rounded


def _round_half_even_shift(mantissa, shift):
    """``round(mantissa / 2**shift)`` with ties to even, for a signed integer mantissa."""
    sign = -1 if mantissa < 0 else 1
    magnitude = abs(mantissa)
    quotient, remainder = divmod(magnitude, 1 << shift)
    half = 1 << (shift - 1)
    if remainder > half or (remainder == half and quotient & 1):
        quotient += 1
    return sign * quotient


def check_arithmetic(arithmetic):
    """Returns ``arithmetic`` if it is an :class:`Arithmetic`, else raises TypeError."""
    if not isinstance(arithmetic, Arithmetic):
        raise TypeError("arithmetic must be an reference.arithmetic.Arithmetic instance "
                        "(e.g. Float64() or Mpmath(dps=50)), not {!r}".format(arithmetic))
    return arithmetic

