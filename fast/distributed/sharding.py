"""How the flat gradient and parameter buffers are split over the ranks, and the two small
collectives that make a sharded step one decision on every rank.

A flat buffer of ``total`` elements is cut into ``size`` blocks of
``block = ceil(total / size)`` elements, padded with zeros to ``size * block``; rank r owns
the elements ``shard_range(total, size, r)`` (the last ranks' ranges are short or empty).
A parameter at ``[offset, offset + n)`` of the buffer is owned in pieces: rank r holds the
elements ``piece_of(offset, n, *shard_range(...))`` of its flattened values, so a parameter
may straddle a shard edge, and a rank may hold no element of it (an empty piece).

Whatever depends on a whole parameter or on all parameters is combined over the ranks
before it is used: the per-parameter sums of squares behind GradientClipping's global norm
and GradientLARS's norms (``combine_partial_sums``), and dynamic loss scaling's non-finite
flags (``combine_nonfinite_flags``). Both gather every rank's small host vector and combine
it in rank order, so every rank holds the same bits.
"""
import numpy


def block_size(total, n_ranks):
    """Elements per rank of a flat buffer of ``total`` elements (the padded block)."""
    return -(-int(total) // int(n_ranks))


def shard_range(total, n_ranks, rank):
    """(begin, end): the elements of a flat buffer of ``total`` elements that ``rank`` owns."""
    block = block_size(total, n_ranks)
    return min(rank * block, total), min((rank + 1) * block, total)


def piece_of(offset, size, begin, end):
    """(b, e): the elements [b, e) of a tensor at [offset, offset + size) of a flat buffer
    that lie in [begin, end); (0, 0) when there are none."""
    b = min(max(begin - offset, 0), size)
    e = min(max(end - offset, 0), size)
    return (b, e) if e > b else (0, 0)


def combine_partial_sums(comm, sums):
    """Sum each rank's float64 partial sums over the ranks, in rank order
    (rank 0's + rank 1's + ...), in place; returns ``sums``."""
    gathered = comm.allgather_host(numpy.asarray(sums, dtype=numpy.float64))
    total = gathered[0].copy()
    for part in gathered[1:]:
        total += part
    sums[...] = total
    return sums


def combine_nonfinite_flags(comm, flags):
    """Per-parameter flags, set where any rank's flag is set."""
    gathered = comm.allgather_host(numpy.asarray(flags, dtype=numpy.uint8))
    return gathered.any(axis=0)
