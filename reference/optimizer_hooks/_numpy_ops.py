"""The hooks' array statements as NumPy 1.x (Chainer 7.8.1's CPU path) evaluates them.

The rules (each operation rounded to its own dtype, in-place statements cast back into the
gradient's dtype, value-based casting of scalars) are stated in the package's docstring,
:mod:`reference.optimizer_hooks`; every temporary is modelled with ``round_to`` here.
"""

import numpy

__all__ = ["scalar_operation_dtype", "scalar_times", "add_in_place", "multiply_in_place",
           "divide_in_place"]


def scalar_operation_dtype(ctx, scalar, dtype, values=None):
    """The dtype of ``scalar (op) array`` for an array of ``dtype`` (value-based casting).

    A 0-d array (``values`` of shape ``()``) counts as a scalar itself, and between scalars
    NumPy 1.x promotes by type: a Python float (or float64) scalar makes it float64.
    """
    if values is not None and numpy.ndim(values) == 0:
        return numpy.promote_types(numpy.dtype(dtype), numpy.float64)
    scalar_dtype = numpy.min_scalar_type(ctx.to_python_float(scalar))
    return numpy.result_type(numpy.dtype(dtype), scalar_dtype)


def scalar_times(ctx, scalar, values, dtype):
    """``scalar * array`` for an array of ``dtype``: the scalar converted to the operation's
    dtype, the product rounded to it. Returns ``(product, operation dtype)``."""
    operation_dtype = scalar_operation_dtype(ctx, scalar, dtype, values)
    factor = _round_scalar(ctx, scalar, operation_dtype)
    return ctx.round_to(factor * values, operation_dtype), operation_dtype


def add_in_place(ctx, values, dtype, addend, addend_dtype):
    """``array += addend`` for an array of ``dtype`` and an array ``addend`` of
    ``addend_dtype``: the sum rounded to the promoted dtype, then cast back to ``dtype``."""
    operation_dtype = numpy.promote_types(dtype, addend_dtype)
    return ctx.round_to(ctx.round_to(values + addend, operation_dtype), dtype)


def multiply_in_place(ctx, values, dtype, scalar):
    """``array *= scalar`` for an array of ``dtype``: the scalar converted to the operation's
    dtype, the product rounded to it, then cast back to ``dtype``."""
    operation_dtype = scalar_operation_dtype(ctx, scalar, dtype, values)
    factor = _round_scalar(ctx, scalar, operation_dtype)
    return ctx.round_to(ctx.round_to(values * factor, operation_dtype), dtype)


def divide_in_place(ctx, values, dtype, scalar):
    """``array /= scalar`` for an array of ``dtype``: the scalar converted to the operation's
    dtype, the quotient rounded to it, then cast back to ``dtype``."""
    operation_dtype = scalar_operation_dtype(ctx, scalar, dtype, values)
    divisor = _round_scalar(ctx, scalar, operation_dtype)
    return ctx.round_to(ctx.round_to(ctx.divide(values, divisor), operation_dtype), dtype)


def _round_scalar(ctx, scalar, dtype):
    rounded = ctx.round_to(scalar, dtype)
    return rounded[()] if isinstance(rounded, numpy.ndarray) else rounded
