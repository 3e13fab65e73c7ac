"""The gradient average and the parameter broadcast, over flat padded buffers.

Gradients are averaged with ChainerMN's ``pure_nccl`` arithmetic. For the parameters of
one gradient dtype D, with exchange dtype E (``allreduce_grad_dtype``, or D itself):

    padded   = each rank's gradients cast to E, packed in parameter order, zero-padded
               to size * block elements (fast.distributed.sharding)
    shard    = block ``rank`` of the sum over ranks of padded, in E   (one reduce-scatter)
    shard    = round_E(float64(shard) * float64(1 / N))   (ChainerMN: y = x * (1.0 / N))
    gradient = shard cast to D

Replicated training then all-gathers the shards (reduce-scatter + all-gather is an
allreduce); ZeRO keeps each rank's shard. Both modes therefore compute every element's sum
with the same collective, so they see the same bits. Each element's sum is computed once
(by the rank whose block holds it) and copied to the others, so every rank ends with the
same bytes. (MPICH's ``Allreduce`` and ``Reduce_scatter_block`` add three ranks' values in
different orders, so mixing the two would break that.) With N a power of two the scaling is
exact, so N ranks fed the same gradient g step on g itself (unless the sum overflows E); for
other N, on g exactly when N * g is representable in E.
"""
import numpy

from fast import boundary
from fast.backends import cpu as cpu_backend
from fast.distributed.sharding import block_size
from fast.parameter import check_grad

#: elements scaled per float64 temporary when N is not a power of two
SCALE_CHUNK = 1 << 20


def _is_power_of_two(n):
    return n & (n - 1) == 0


def scale_by_reciprocal(buffer, n_ranks):
    """``buffer[...] = round_E(float64(buffer) * (1.0 / n_ranks))`` in place, E its dtype.

    For a power of two the product is exact, so the multiplication runs in E directly
    (the same bits); otherwise it runs in float64 chunks of SCALE_CHUNK elements.
    """
    reciprocal = 1.0 / n_ranks
    if buffer.dtype == numpy.float64 or _is_power_of_two(n_ranks):
        buffer *= buffer.dtype.type(reciprocal)
        return
    for begin in range(0, buffer.size, SCALE_CHUNK):
        chunk = buffer[begin:begin + SCALE_CHUNK]
        chunk[...] = chunk.astype(numpy.float64) * reciprocal


def copy_cast(dst, src):
    """``dst[...] = src``, a cast where the dtypes differ (NumPy's float16 casts run an
    element at a time; host float16 <-> float32 goes through fast's F16C cast, same bits)."""
    if not cpu_backend.cast_into(dst, src):
        dst[...] = src


class FlatBucket(object):
    """The parameters of one gradient dtype (``indices`` into the parameter list, in
    order): their offsets in a flat buffer padded to ``size * block`` elements, the padded
    exchange buffer (dtype E) and this rank's block of the mean (in E)."""

    def __init__(self, indices, shapes, grad_dtype, exchange_dtype, comm):
        self.comm, self.xp = comm, comm.xp
        self.indices = indices
        self.shapes = shapes
        self.grad_dtype = numpy.dtype(grad_dtype)
        self.sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in shapes]
        self.offsets = [0]
        for n in self.sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.total = self.offsets[-1]
        self.block = block_size(self.total, comm.size)
        self.begin = comm.rank * self.block
        self.padded = self.xp.zeros(self.block * comm.size, dtype=exchange_dtype)
        self.shard = self.padded[self.begin:self.begin + self.block]
        self.reduced = self.xp.zeros(self.block, dtype=exchange_dtype)

    def view(self, flat, k):
        """Parameter ``k`` of the bucket (by position) as a view of a flat padded buffer."""
        return flat[self.offsets[k]:self.offsets[k + 1]].reshape(self.shapes[k])

    def pack(self, grads):
        """Copy (cast) each gradient into the padded exchange buffer; None packs zeros."""
        for k, i in enumerate(self.indices):
            if grads[i] is None:
                self.view(self.padded, k)[...] = 0
            else:
                copy_cast(self.view(self.padded, k), grads[i])

    def reduce_mean(self):
        """Collective: ``self.reduced`` = this rank's block of the mean over ranks, in E."""
        if self.total == 0:
            return
        self.comm.reduce_scatter_sum(self.padded, self.reduced)
        scale_by_reciprocal(self.reduced, self.comm.size)


def buckets_by_dtype(named, comm, exchange_dtype):
    """One FlatBucket per gradient dtype, in order of first appearance."""
    by_dtype = {}
    for i, (_, p) in enumerate(named):
        by_dtype.setdefault(numpy.dtype(boundary.array(p).dtype), []).append(i)
    buckets = []
    for dtype, indices in by_dtype.items():
        shapes = [tuple(boundary.array(named[i][1]).shape) for i in indices]
        exchange = dtype if exchange_dtype is None else numpy.dtype(exchange_dtype)
        buckets.append(FlatBucket(indices, shapes, dtype, exchange, comm))
    return buckets


def local_gradients(named):
    """Every parameter's gradient, validated as the single-process optimizer validates it
    (array on the parameter's device, its shape and dtype); None stays None (zeros).
    Raises before anything is exchanged."""
    grads = []
    for name, p in named:
        grad = boundary.grad(p)
        if grad is not None:
            check_grad(name, grad, boundary.array(p))
        grads.append(grad)
    return grads


class GradientExchange(object):
    """Averages the gradients of a fixed list of parameters over the ranks (replicated
    training): reduce-scatter, scale, all-gather."""

    def __init__(self, named, comm, exchange_dtype=None):
        self.comm = comm
        self.named = named
        self.buckets = buckets_by_dtype(named, comm, exchange_dtype)
        self.outputs = [b.padded if b.grad_dtype == b.padded.dtype else
                        comm.xp.zeros(b.padded.size, dtype=b.grad_dtype) for b in self.buckets]

    def average(self, grads):
        """The mean over ranks of ``grads`` (a list in parameter order), as a list of views
        into this object's buffers (the same buffers every step). Collective."""
        means = [None] * len(self.named)
        for bucket, output in zip(self.buckets, self.outputs):
            bucket.pack(grads)
            bucket.reduce_mean()
            if bucket.total:
                bucket.shard[...] = bucket.reduced
                self.comm.allgather_blocks(bucket.padded)
            if output is not bucket.padded:
                copy_cast(output, bucket.padded)
            for k, i in enumerate(bucket.indices):
                means[i] = bucket.view(output, k)
        return means


def broadcast_parameters(named, comm, root=0):
    """Overwrite every parameter with ``root``'s values: one flat broadcast per dtype."""
    by_dtype = {}
    for _, p in named:
        by_dtype.setdefault(numpy.dtype(boundary.array(p).dtype), []).append(boundary.array(p))
    for dtype, arrays in by_dtype.items():
        flat = comm.xp.concatenate([a.reshape(-1) for a in arrays])
        comm.bcast_array(flat, root=root)
        offset = 0
        for a in arrays:
            a[...] = flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size
