"""The gradient average and the parameter broadcast, over flat padded buffers.

Gradients are averaged with ChainerMN's ``pure_nccl`` arithmetic. For the parameters of
one gradient dtype D, with exchange dtype E (``allreduce_grad_dtype``, or D itself):

    padded   = each rank's gradients cast to E, packed in parameter order, zero-padded
               to size * block elements (fast.distributed.sharding)
    sums     = block ``rank`` of the sum over ranks of padded, in E   (one reduce-scatter)
    mean     = round_E(float64(sums) * float64(1 / N))   (ChainerMN: y = x * (1.0 / N))
    gradient = mean cast to D

Replicated training then all-gathers the blocks (reduce-scatter + all-gather is an
allreduce); ZeRO keeps each rank's block. Both modes therefore compute every element's sum
with the same collective, so they see the same bits. Each element's sum is computed once
(by the rank whose block holds it) and copied to the others, so every rank ends with the
same bytes. (MPICH's ``Allreduce`` and ``Reduce_scatter_block`` add three ranks' values in
different orders, so mixing the two would break that.) With N a power of two the scaling is
exact, so N ranks fed the same gradient g step on g itself (unless the sum overflows E); for
other N, on g exactly when N * g is representable in E.

Where the mean is formed (the bits are those above in every case; ``MeanPlan``):

- one rank, E as wide as D or wider: the mean is the gradient itself (the cast to E and
  back is exact), so nothing is packed or exchanged and the step reads the gradients where
  they are;
- E = D, N a power of two, or E = D = float64 for any N: *folded* into the step. The sums
  are handed to the step, whose kernels multiply each element by 1/N as they load it and
  round the product to D (fast.engine.Engine.average_factor). That is the formula above: for
  a power of two the product is exact in the kernels' compute type (float32 for float16 and
  float32, float64 for float64) and only its rounding to E = D can change it (float16
  subnormals); for float64 the kernel's product is the formula's. Only a step whose
  gradients are read by fast's kernels alone can fold (``reads_gradients_only_in_kernels``
  of the optimizer: fast's own hooks; a custom hook or a rule's hook sees ``p.grad``, which
  must hold the mean);
- otherwise one compiled pass over the rank's block of sums (``fast.backends.cpu.
  convert_into``: the product in float64, rounded to E, cast to D; in place when E = D),
  or NumPy/CuPy arithmetic on arrays it does not take (CuPy, a build without F16C).
"""
import numpy

from fast import boundary
from fast.backends import cpu as cpu_backend
from fast.distributed.sharding import block_size
from fast.parameter import check_grad

#: elements per float64 temporary of the NumPy/CuPy form of the mean (``scaled_cast``)
SCALE_CHUNK = 1 << 20


def mean_factor(n_ranks):
    """float64(1 / N): the factor the sum over N ranks is multiplied by (ChainerMN's
    ``1.0 / N``)."""
    return 1.0 / n_ranks


def _is_power_of_two(n):
    return n & (n - 1) == 0


def scaled_cast(dst, src, round_dtype, factor):
    """``dst[...] = cast_dst(round_R(float64(src) * factor))``, R = ``round_dtype``: a
    compiled pass for host arrays (fast.backends.cpu.convert_into), else in float64 chunks
    of SCALE_CHUNK elements with the arrays' own module (NumPy's and CuPy's casts round to
    nearest even). ``dst`` may be ``src``."""
    if cpu_backend.convert_into(dst, src, round_dtype, factor):
        return
    flat_src, flat_dst = src.reshape(-1), dst.reshape(-1)
    for begin in range(0, flat_src.size, SCALE_CHUNK):
        chunk = flat_src[begin:begin + SCALE_CHUNK].astype(numpy.float64)
        if factor != 1.0:
            chunk *= factor
        flat_dst[begin:begin + SCALE_CHUNK] = chunk.astype(round_dtype)


def copy_cast(dst, src):
    """``dst[...] = src``, a cast where the dtypes differ (a compiled pass on host
    float16/32/64 buffers, NumPy's bits)."""
    if dst.dtype == src.dtype:
        dst[...] = src
    else:
        scaled_cast(dst, src, dst.dtype, 1.0)


class MeanPlan(object):
    """Where the mean of one bucket is formed, for N ranks, exchange dtype E and gradient
    dtype D (see the module doc): ``skip`` (one rank, E at least as wide as D: nothing to
    do), ``foldable`` (the step's kernels can multiply by ``factor`` as they load), and
    ``factor``, float64(1/N)."""

    def __init__(self, n_ranks, exchange_dtype, grad_dtype):
        self.factor = mean_factor(n_ranks)
        self.exchange_dtype, self.grad_dtype = numpy.dtype(exchange_dtype), numpy.dtype(grad_dtype)
        same = self.exchange_dtype == self.grad_dtype
        self.skip = n_ranks == 1 and self.exchange_dtype.itemsize >= self.grad_dtype.itemsize
        self.foldable = same and (_is_power_of_two(n_ranks) or self.exchange_dtype == numpy.float64)

    def form(self, sums, out):
        """The mean of ``sums`` (E) into ``out`` (D; may be ``sums``): the compiled pass."""
        scaled_cast(out, sums, self.exchange_dtype, self.factor)


class FlatBucket(object):
    """The parameters of one gradient dtype (``indices`` into the parameter list, in
    order): their offsets in a flat buffer padded to ``size * block`` elements, the padded
    exchange buffer (dtype E) and how the mean is formed (``plan``)."""

    def __init__(self, indices, shapes, grad_dtype, exchange_dtype, comm):
        self.comm, self.xp = comm, comm.xp
        self.indices = indices
        self.shapes = shapes
        self.grad_dtype = numpy.dtype(grad_dtype)
        self.exchange_dtype = numpy.dtype(exchange_dtype)
        self.sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in shapes]
        self.offsets = [0]
        for n in self.sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.total = self.offsets[-1]
        self.block = block_size(self.total, comm.size)
        self.begin = comm.rank * self.block
        self.plan = MeanPlan(comm.size, self.exchange_dtype, self.grad_dtype)
        self.padded = None if self.plan.skip else self.xp.zeros(self.block * comm.size, dtype=exchange_dtype)

    def view(self, flat, k):
        """Parameter ``k`` of the bucket (by position) as a view of a flat padded buffer."""
        return flat[self.offsets[k]:self.offsets[k + 1]].reshape(self.shapes[k])

    def own_block(self, flat):
        """This rank's block of a flat padded buffer."""
        return flat[self.begin:self.begin + self.block]

    def pack(self, grads):
        """Copy (cast) each gradient into the padded exchange buffer; None packs zeros. One
        compiled pass on host buffers (fast.backends.cpu.pack_into), else array by array."""
        if cpu_backend.pack_into(self.padded, [grads[i] for i in self.indices], self.sizes):
            return
        for k, i in enumerate(self.indices):
            if grads[i] is None:
                self.view(self.padded, k)[...] = 0
            else:
                copy_cast(self.view(self.padded, k), grads[i])

    def reduce_into(self, grads, sums):
        """Collective: ``sums`` (``block`` elements of E) = this rank's block of the sum over
        the ranks of their ``grads``."""
        self.pack(grads)
        if self.total:
            self.comm.reduce_scatter_sum(self.padded, sums)


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
    training): reduce-scatter into this rank's block of a padded buffer in D (through a
    block in E when E differs), the mean formed there or left to the step, the blocks
    all-gathered in D."""

    def __init__(self, named, comm, exchange_dtype=None):
        self.comm = comm
        self.named = named
        self.buckets = buckets_by_dtype(named, comm, exchange_dtype)
        #: per bucket: the padded buffer the step reads (D), and where the sums arrive (E)
        self.received, self.sums = [], []
        for b in self.buckets:
            received = None if b.plan.skip else comm.xp.zeros(b.padded.size, dtype=b.grad_dtype)
            self.received.append(received)
            self.sums.append(None if received is None else
                             b.own_block(received) if b.exchange_dtype == b.grad_dtype else
                             comm.xp.zeros(b.block, dtype=b.exchange_dtype))

    def foldable(self):
        """Whether every bucket's mean can be left to the step's kernels (or needs nothing)."""
        return all(b.plan.skip or b.plan.foldable for b in self.buckets)

    def average(self, grads, fold):
        """The mean over ranks of ``grads`` (a list in parameter order): (per parameter the
        array the step reads, the factor the step's kernels multiply it by, or None). With
        ``fold`` (only where ``foldable()``), the arrays hold the sums and the factor is 1/N;
        else they hold the mean. Views of this object's buffers (the same every step), or
        the gradients themselves where nothing needs exchanging. Collective."""
        means = list(grads)
        factor = None
        for bucket, received, sums in zip(self.buckets, self.received, self.sums):
            if bucket.plan.skip:
                continue
            bucket.reduce_into(grads, sums)
            if fold:
                factor = bucket.plan.factor
            else:
                bucket.plan.form(sums, bucket.own_block(received))
            if bucket.total:
                self.comm.allgather_blocks(received)
            for k, i in enumerate(bucket.indices):
                means[i] = bucket.view(received, k)
        return means, factor


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
