"""ZeRO-sharded data-parallel optimizers (stages 1 and 2): each rank keeps the fp32 master
and the optimizer state of its shard of the parameters only.

Layout (fast.distributed.sharding). The parameters of each gradient dtype are packed, in
order, into a flat buffer padded to ``size * block`` elements; rank r owns block r. Every
parameter is whole on every rank (``p.data`` is a view of that padded buffer). The part of
parameter k that rank r owns is its piece: the elements [b, e) of its flattened values
(whole, partial at a shard edge, or empty). Each rank runs the wrapped ``fast`` optimizer
over its pieces: one piece per parameter, named as the parameter, the piece shaped as the
parameter when whole and 1-d otherwise. That optimizer's rules are the parameters' rules
(``p.update_rule``), its engine holds the pieces' values, masters and state, so master and
state cost 1/N of one process (plus the padding of one block).

One step (``update``):
 1. local checks, agreed over the ranks (fast.distributed.agreement);
 2. each rank's gradients are reduce-scattered: rank r receives the mean of block r
    (fast.distributed.exchange's arithmetic, the same as replicated training's);
 3. the pieces' values are refreshed from the parameters (a write to ``p.data`` between
    steps is seen), then the wrapped optimizer steps on the pieces. Its engine
    (``ShardedEngine``) combines over the ranks what spans pieces: the per-parameter sums
    of squares behind GradientClipping and GradientLARS, and the non-finite flags of
    dynamic loss scaling, so every rank takes the same decisions;
 4. each rank writes its pieces into its block of the parameters' buffer and the blocks
    are all-gathered.
"""
import numpy

from fast import boundary
from fast.distributed import sharding
from fast.distributed.exchange import buckets_by_dtype, copy_cast
from fast.engine import LocalScope
from fast.optimizer_hooks import is_fused
from fast.parameter import Parameter
from fast.serializers import NpzDeserializer


class ShardScope(LocalScope):
    """The scope of an engine over one rank's pieces: what spans pieces (the non-finite
    flags, the sums of squares) is combined over the ranks, so every rank takes the same
    decisions, and hooks draw per-parameter values for the whole parameter."""

    decides_skip_on_host = True

    def __init__(self, comm, layout):
        self.comm, self.layout = comm, layout

    def combine_flags(self, bad):
        return sharding.combine_nonfinite_flags(self.comm, bad)

    def combine_sums(self, gsq, psq):
        both = sharding.combine_partial_sums(self.comm, numpy.concatenate([gsq, psq]))
        return both[:len(gsq)], both[len(gsq):]

    def hook_shape(self, entry):
        return self.layout.shapes[entry.index]

    def local_part(self, entry, whole):
        b, e = self.layout.pieces[entry.index]
        return whole.reshape(-1)[b:e].reshape(self.layout.piece_shapes[entry.index])


class Piece(Parameter):
    """This rank's piece of a parameter, as the actual optimizer's parameter: its gradient
    carries the loss scale its parent's does (for a chainer.Parameter, the one
    ``backward(loss_scale=...)`` recorded on it; fast.boundary)."""

    def __init__(self, array, name, parent):
        super(Piece, self).__init__(array, name=name)
        self.parent = parent

    def carried_loss_scale(self, optimizer_scale):
        return boundary.loss_scale(self.parent, optimizer_scale)


class ShardLayout(object):
    """Where every parameter's piece lies on every rank, the padded parameter buffers, and
    the exchange of one rank's block of the gradients."""

    def __init__(self, named, comm, exchange_dtype):
        self.comm, self.named = comm, named
        self.shapes = [tuple(boundary.array(p).shape) for _, p in named]
        self.buckets = buckets_by_dtype(named, comm, exchange_dtype)
        self.bucket_of = {}
        for bucket in self.buckets:
            for k, i in enumerate(bucket.indices):
                self.bucket_of[i] = (bucket, k)
        #: pieces_by_rank[r][i]: (b, e) of parameter i owned by rank r
        self.pieces_by_rank = [self._pieces(r) for r in range(comm.size)]
        self.pieces = self.pieces_by_rank[comm.rank]
        self.piece_shapes = [self._piece_shape(i, b, e) for i, (b, e) in enumerate(self.pieces)]
        self.values = []      # per bucket: the padded parameter buffer (dtype D)
        self.means = []       # per bucket: this rank's block of the mean gradient in D
        for bucket in self.buckets:
            self.values.append(comm.xp.zeros(bucket.padded.size, dtype=bucket.grad_dtype))
            self.means.append(bucket.reduced if bucket.reduced.dtype == bucket.grad_dtype else
                              comm.xp.zeros(bucket.block, dtype=bucket.grad_dtype))
        #: per parameter: this rank's piece as a view of the padded parameter buffer, and of
        #: the block of the mean (the same views every step)
        self.value_views, self.mean_views = [], []
        for i in range(len(named)):
            bucket, k = self.bucket_of[i]
            b, e = self.pieces[i]
            start = bucket.offsets[k] + b
            j = self.buckets.index(bucket)
            shape = self.piece_shapes[i]
            self.value_views.append(self.values[j][start:start + e - b].reshape(shape))
            block_start = start - bucket.begin
            self.mean_views.append(self.means[j][block_start:block_start + e - b].reshape(shape))
        self.index_of = {name: i for i, (name, _) in enumerate(named)}
        self.pieces_params = None

    def piece_range(self, name):
        """(b, e) of parameter ``name``'s elements (flattened) held by this rank."""
        if name not in self.index_of:
            raise KeyError("no parameter named {!r}; the parameters are {}".format(name, sorted(self.index_of)))
        return self.pieces[self.index_of[name]]

    def _pieces(self, rank):
        out = [None] * len(self.named)
        for bucket in self.buckets:
            begin, end = sharding.shard_range(bucket.total, self.comm.size, rank)
            for k, i in enumerate(bucket.indices):
                out[i] = sharding.piece_of(bucket.offsets[k], bucket.sizes[k], begin, end)
        return out

    def _piece_shape(self, i, b, e):
        """The parent's shape when the piece is the whole parameter (a size-0 parameter
        is whole everywhere), else 1-d."""
        size = int(numpy.prod(self.shapes[i], dtype=numpy.int64))
        return self.shapes[i] if (b, e) == (0, size) or size == 0 else (e - b,)

    # --- set-up ---
    def adopt_parameters(self):
        """Move every parameter's values into the padded buffers (``p.data`` becomes a view)."""
        for (bucket, values) in zip(self.buckets, self.values):
            for k, i in enumerate(bucket.indices):
                p = self.named[i][1]
                view = bucket.view(values, k)
                view[...] = boundary.array(p)
                boundary.adopt(p, view)

    def piece_parameters(self):
        """name -> a fast.Parameter holding this rank's piece of each parameter (a copy)."""
        pieces = {name: Piece(view.copy(), name, parent) for (name, parent), view in zip(self.named, self.value_views)}
        self.pieces_params = list(pieces.values())
        return pieces

    # --- one step ---
    def refresh_pieces(self):
        """Copy the parameters' values into the pieces (``p.data`` may have been written)."""
        for piece, view in zip(self.pieces_params, self.value_views):
            piece.data[...] = view

    def reduce_to_pieces(self, grads):
        """Collective: this rank's block of the mean gradient, as one array per piece (views
        of buffers kept from step to step)."""
        for bucket, mean in zip(self.buckets, self.means):
            bucket.pack(grads)
            bucket.reduce_mean()
            if mean is not bucket.reduced:
                copy_cast(mean, bucket.reduced)
        return self.mean_views

    def publish(self):
        """Collective: every rank's updated pieces into every rank's parameters."""
        for piece, view in zip(self.pieces_params, self.value_views):
            view[...] = piece.data
        for bucket, values in zip(self.buckets, self.values):
            if bucket.total:
                self.comm.allgather_blocks(values)

    # --- whole arrays from pieces ---
    def assemble(self, i, by_rank):
        """Parameter i's whole array from each rank's piece (``by_rank[r]``, flat order)."""
        parts = [numpy.asarray(a).reshape(-1) for r, a in enumerate(by_rank)
                 if self.pieces_by_rank[r][i][1] > self.pieces_by_rank[r][i][0]]
        if not parts:
            return numpy.asarray(by_rank[0]).reshape(self.shapes[i])
        return numpy.concatenate(parts).reshape(self.shapes[i])

    def local_slice(self, i, whole):
        """This rank's piece of parameter i's whole array."""
        b, e = self.pieces[i]
        return numpy.asarray(whole).reshape(-1)[b:e].reshape(self.piece_shapes[i])


def refuse_unsharded_hooks(actual):
    """zero=True runs only hooks that see the whole gradient through the sharded engine."""
    for _, name, hook in actual.named_hooks():
        if not is_fused(hook):
            raise TypeError(
                "optimizer hook {!r} is not one of fast's built-in hooks: under zero=True each rank "
                "holds only its shard of the gradients, which a custom hook would see as the whole; "
                "use zero=False for custom hooks".format(name))
    for name, p in actual.named_parameters():
        if p.update_rule.has_hooks:
            raise TypeError("the update rule of parameter {!r} has hooks of its own: under zero=True "
                            "a rule holds only this rank's piece of its parameter; add the hook to the "
                            "optimizer (opt.add_hook) or use zero=False".format(name))


class PieceDeserializer(NpzDeserializer):
    """An NpzDeserializer that reads each whole state or master array of a parameter and
    yields this rank's piece of it (``slicers``: full key -> function of the whole array)."""

    def __init__(self, npz, path="", strict=True, check_only=False, problems=None, slicers=None):
        super(PieceDeserializer, self).__init__(npz, path, strict, check_only, problems)
        self.slicers = slicers or {}

    def read(self, full):
        data = super(PieceDeserializer, self).read(full)
        slicer = self.slicers.get(full)
        return data if slicer is None else slicer(full, data)
