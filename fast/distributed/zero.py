"""ZeRO-sharded data-parallel optimizers (stages 1 and 2): each rank keeps the fp32 master
and the optimizer state of its shard of the parameters only.

Layout (fast.distributed.sharding). The parameters of each gradient dtype are packed, in
order, into a flat buffer padded to ``size * block`` elements; rank r owns block r. Every
parameter is whole on every rank (``p.data`` is a view of that padded buffer). The part of
parameter k that rank r owns is its piece: the elements [b, e) of its flattened values
(whole, partial at a shard edge, or empty). Each rank runs the wrapped ``fast`` optimizer
over its pieces: one piece per parameter, named as the parameter, the piece shaped as the
parameter when whole and 1-d otherwise, its array the piece's place in the padded buffer.
That optimizer's rules are the parameters' rules (``p.update_rule``); its engine keeps the
pieces' values where they are, in the rank's block of the padded buffer (``ShardScope.
parameter_storage`` lends a group the block's elements, which hold its pieces in a row), and
their masters and state in buffers of its own, so master and state cost 1/N of one process
(plus the padding of one block) and a step copies no parameter in or out.

One step (``update``):
 1. local checks, agreed over the ranks (fast.distributed.agreement);
 2. each rank's gradients are reduce-scattered: rank r receives block r of the sums, and
    of the mean, formed by the step's kernels as they read it or by one pass over the block
    (fast.distributed.exchange's arithmetic, the same as replicated training's);
 3. the wrapped optimizer steps on the pieces, in place in the padded buffer. Its engine
    combines over the ranks what spans pieces (``ShardScope``): the per-parameter sums of
    squares behind GradientClipping and GradientLARS, and the non-finite flags of dynamic
    loss scaling, so every rank takes the same decisions;
 4. the blocks of the padded buffer are all-gathered.
A group whose pieces do not lie in a row of the block (pieces of other groups between them:
a 0-d parameter, rules of another kind) keeps them in a buffer of its own, and its pieces are
copied in before the step and out after it (``ShardLayout.refresh_pieces``, ``publish``).
"""
import numpy

from fast import boundary
from fast.distributed import sharding
from fast.distributed.exchange import buckets_by_dtype
from fast.engine import LocalScope
from fast.optimizer_hooks import is_fused
from fast.parameter import Parameter
from fast.serializers import NpzDeserializer


def _address(array):
    """The address of an array's first element (NumPy or CuPy)."""
    if isinstance(array, numpy.ndarray):
        return array.__array_interface__["data"][0]
    return array.data.ptr


class ShardScope(LocalScope):
    """The scope of an engine over one rank's pieces: what spans pieces (the non-finite
    flags, the sums of squares) is combined over the ranks, so every rank takes the same
    decisions, hooks draw per-parameter values for the whole parameter, and a group keeps
    its pieces' values in the padded parameter buffer where they lie in a row."""

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

    def parameter_storage(self, entries, dtype):
        return self.layout.storage_of([entry.index for entry in entries], dtype)


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
        for j, bucket in enumerate(self.buckets):
            for k, i in enumerate(bucket.indices):
                self.bucket_of[i] = (j, k)
        #: pieces_by_rank[r][i]: (b, e) of parameter i owned by rank r
        self.pieces_by_rank = [self._pieces(r) for r in range(comm.size)]
        self.pieces = self.pieces_by_rank[comm.rank]
        self.piece_shapes = [self._piece_shape(i, b, e) for i, (b, e) in enumerate(self.pieces)]
        self.values = []      # per bucket: the padded parameter buffer (dtype D)
        self.sums = []        # per bucket: this rank's block of the gradients' sums (dtype E)
        self.means = []       # per bucket: the block the step reads (D): the sums when E is D
        for bucket in self.buckets:
            self.values.append(comm.xp.zeros(bucket.block * comm.size, dtype=bucket.grad_dtype))
            sums = None if bucket.plan.skip else comm.xp.zeros(bucket.block, dtype=bucket.exchange_dtype)
            self.sums.append(sums)
            self.means.append(sums if sums is None or bucket.exchange_dtype == bucket.grad_dtype else
                              comm.xp.zeros(bucket.block, dtype=bucket.grad_dtype))
        #: per parameter: where this rank's piece lies in the padded parameter buffer
        #: (bucket, first element, one past the last), its view there, and its view of the
        #: block the step reads (the same views every step)
        self.homes, self.value_views, self.mean_views = [], [], []
        for i in range(len(named)):
            j, k = self.bucket_of[i]
            bucket = self.buckets[j]
            b, e = self.pieces[i]
            start = bucket.offsets[k] + b
            shape = self.piece_shapes[i]
            self.homes.append((j, start, start + e - b))
            self.value_views.append(self.values[j][start:start + e - b].reshape(shape))
            block_start = start - bucket.begin
            self.mean_views.append(None if self.means[j] is None else
                                   self.means[j][block_start:block_start + e - b].reshape(shape))
        self.index_of = {name: i for i, (name, _) in enumerate(named)}
        self.pieces_params = None
        #: per piece: the array object last seen as its storage, and whether it is its home
        self.seen_storage = []

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
        """name -> a fast.Parameter of this rank's piece of each parameter, its array the
        piece's view of the padded parameter buffer."""
        pieces = {name: Piece(view, name, parent) for (name, parent), view in zip(self.named, self.value_views)}
        self.pieces_params = list(pieces.values())
        self.seen_storage = [None] * len(self.pieces_params)
        return pieces

    def storage_of(self, indices, dtype):
        """The elements of the padded parameter buffer that hold the pieces ``indices`` (in
        order) in a row, as one array of ``dtype``; None where they do not lie so."""
        homes = [self.homes[i] for i in indices if self.homes[i][2] > self.homes[i][1]]  # empty ones lie anywhere
        if not homes:
            return None
        j, first, end = homes[0][0], homes[0][1], homes[0][1]
        for bucket, start, stop in homes:
            if bucket != j or start != end:
                return None
            end = stop
        values = self.values[j]
        return values[first:end] if values.dtype == dtype else None

    def _stored_elsewhere(self):
        """(piece, home view) of the pieces whose engine keeps them in a buffer of its own."""
        out = []
        for k, (piece, home) in enumerate(zip(self.pieces_params, self.value_views)):
            storage = piece.data
            seen = self.seen_storage[k]
            if seen is None or seen[0] is not storage:
                at_home = storage.size == 0 or (_address(storage) == _address(home) and storage.size == home.size)
                self.seen_storage[k] = seen = (storage, at_home)
            if not seen[1]:
                out.append((piece, home))
        return out

    # --- one step ---
    def refresh_pieces(self):
        """Copy into the pieces kept elsewhere than their home the parameters' values there
        (``p.data`` may have been written)."""
        for piece, home in self._stored_elsewhere():
            piece.data[...] = home

    def reduce_to_pieces(self, grads, fold):
        """Collective: this rank's block of the mean gradient, as one array per piece (views
        of buffers kept from step to step, or the gradients themselves on one rank), and the
        factor the step's kernels multiply them by as they read them (``fold``: the arrays
        hold the sums), or None."""
        factor = None
        out = list(self.mean_views)
        for bucket, sums, means in zip(self.buckets, self.sums, self.means):
            if bucket.plan.skip:
                for i in bucket.indices:
                    out[i] = grads[i]
                continue
            bucket.reduce_into(grads, sums)
            if fold:
                factor = bucket.plan.factor
            else:
                bucket.plan.form(sums, means)
        return out, factor

    def foldable(self):
        """Whether every bucket's mean can be left to the step's kernels (or needs nothing)."""
        return all(b.plan.skip or b.plan.foldable for b in self.buckets)

    def publish(self):
        """Collective: every rank's updated pieces into every rank's parameters."""
        for piece, home in self._stored_elsewhere():
            home[...] = piece.data
        for bucket, values in zip(self.buckets, self.values):
            if bucket.total and self.comm.size > 1:
                self.comm.allgather_blocks(values)

    # --- whole arrays from pieces ---
    def whole_from_pieces(self, i, piece, root=None):
        """Collective: parameter i's whole array, a new host array, from every rank's
        ``piece`` of it (an array of its elements ``pieces_by_rank[r][i]``), on ``root``
        (None elsewhere) or, for ``root=None``, on every rank."""
        counts = [e - b for b, e in (by_rank[i] for by_rank in self.pieces_by_rank)]
        if root is None:
            flat = self.comm.allgather_pieces(piece, counts)
        else:
            flat = self.comm.gather_pieces(piece, counts, root)
        return None if flat is None else flat.reshape(self.shapes[i])

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
