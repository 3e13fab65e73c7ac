"""The gradient average and the parameter broadcast, over flat buffers.

Gradients are averaged with ChainerMN's ``pure_nccl`` arithmetic. For the parameters of
one gradient dtype D, with exchange dtype E (``allreduce_grad_dtype``, or D itself):

    buffer   = each rank's gradients cast to E, packed in parameter order
    buffer   = the sum over ranks of buffer, in E            (one allreduce)
    buffer   = round_E(float64(buffer) * float64(1 / N))     (ChainerMN: y = x * (1.0 / N))
    gradient = buffer cast to D                               (a view of buffer when E == D)

Every rank ends with the same bytes as long as the transport's sum is the same on every
rank (MPICH's and NCCL's allreduce algorithms compute each element's sum once, or in the
same order everywhere; the tests check the bytes). With N a power of two the scaling is
exact, so N ranks fed the same gradient g step on g itself (unless the sum overflows E);
for other N, on g exactly when N * g is representable in E.

The averaged gradients stay in buffers this object owns (one per gradient dtype) and are
handed to the optimizer as views, so their addresses do not change from step to step.
"""
import numpy

from fast.parameter import check_grad

#: elements scaled per float64 temporary when N is not a power of two
SCALE_CHUNK = 1 << 20


def _is_power_of_two(n):
    return n & (n - 1) == 0


def scale_by_reciprocal(buffer, n_ranks, xp):
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


class _Bucket(object):
    """The parameters of one gradient dtype: their offsets in a flat buffer of the exchange
    dtype, and (when the two dtypes differ) a flat output buffer of the gradient dtype."""

    def __init__(self, indices, shapes, grad_dtype, exchange_dtype, xp):
        self.indices = indices
        self.shapes = shapes
        self.sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in shapes]
        self.offsets = numpy.concatenate([[0], numpy.cumsum(self.sizes, dtype=numpy.int64)])
        total = int(self.offsets[-1])
        self.buffer = xp.zeros(total, dtype=exchange_dtype)
        self.output = self.buffer if grad_dtype == exchange_dtype else xp.zeros(total, dtype=grad_dtype)

    def _slice(self, flat, k):
        return flat[int(self.offsets[k]):int(self.offsets[k + 1])].reshape(self.shapes[k])

    def pack(self, grads):
        """Copy (cast) each gradient into the exchange buffer; None packs zeros."""
        for k, i in enumerate(self.indices):
            view = self._slice(self.buffer, k)
            view[...] = 0 if grads[i] is None else grads[i]

    def unpack(self):
        """The averaged gradients, as views of the output buffer (cast into it if needed)."""
        if self.output is not self.buffer:
            self.output[...] = self.buffer
        return [(i, self._slice(self.output, k)) for k, i in enumerate(self.indices)]


class GradientExchange(object):
    """Averages the gradients of a fixed list of parameters over the ranks."""

    def __init__(self, named, comm, exchange_dtype=None):
        self.comm = comm
        self.named = named
        by_dtype = {}
        for i, (_, p) in enumerate(named):
            by_dtype.setdefault(numpy.dtype(p.data.dtype), []).append(i)
        self.buckets = []
        for dtype, indices in by_dtype.items():
            shapes = [tuple(named[i][1].data.shape) for i in indices]
            exchange = dtype if exchange_dtype is None else numpy.dtype(exchange_dtype)
            self.buckets.append(_Bucket(indices, shapes, dtype, exchange, comm.xp))

    def local_gradients(self):
        """Every parameter's gradient, validated as the single-process optimizer validates
        it (array on the parameter's device, its shape and dtype); None stays None (zeros).
        Raises before anything is exchanged."""
        grads = []
        for name, p in self.named:
            grad = p.grad
            if grad is not None:
                check_grad(p, grad, name)
            grads.append(grad)
        return grads

    def average(self, grads):
        """The mean over ranks of ``grads`` (a list in parameter order), as a list of views
        into this object's buffers. Collective."""
        means = [None] * len(self.named)
        for bucket in self.buckets:
            bucket.pack(grads)
            self.comm.allreduce_sum(bucket.buffer)
            scale_by_reciprocal(bucket.buffer, self.comm.size, self.comm.xp)
            for i, view in bucket.unpack():
                means[i] = view
        return means


def broadcast_parameters(named, comm, root=0):
    """Overwrite every parameter with ``root``'s values: one flat broadcast per dtype."""
    by_dtype = {}
    for _, p in named:
        by_dtype.setdefault(numpy.dtype(p.data.dtype), []).append(p)
    for dtype, params in by_dtype.items():
        flat = comm.xp.concatenate([p.data.reshape(-1) for p in params]) if params else None
        comm.bcast_array(flat, root=root)
        offset = 0
        for p in params:
            n = p.data.size
            p.data[...] = flat[offset:offset + n].reshape(p.data.shape)
            offset += n
