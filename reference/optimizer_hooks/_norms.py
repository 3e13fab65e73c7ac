"""Squared norms with Chainer's storage-dtype rounding of the NumPy reductions it uses."""

import numpy


def dot_self(ctx, values, dtype):
    """``x.ravel().dot(x.ravel())`` for an array of ``dtype``: the sum of squares, returned as
    a scalar of that dtype (NumPy's fp16 dot accumulates in float32 and rounds the result to
    fp16, so a sum above 65504 becomes inf)."""
    return _scalar(ctx.round_to(ctx.sum(values * values), dtype))


def l2_norm(ctx, values, dtype):
    """``numpy.linalg.norm(x)`` for an array of ``dtype``: ``sqrt(x.dot(x))`` in that dtype."""
    return _scalar(ctx.round_to(ctx.sqrt(dot_self(ctx, values, dtype)), dtype))


def promote(dtype_a, dtype_b):
    return numpy.promote_types(dtype_a, dtype_b)


def _scalar(values):
    return values[()] if isinstance(values, numpy.ndarray) and values.shape == () else values
