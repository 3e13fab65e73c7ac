"""Replicated data-parallel optimizers (ChainerMN's ``create_multi_node_optimizer``).

Every rank holds the whole model and the whole optimizer state. ``setup`` broadcasts the
parameters from rank 0; each ``update`` averages the gradients over the ranks
(fast.distributed.exchange) and then runs the wrapped optimizer's ordinary step on every
rank. Since the averaged gradient is the same bytes on every rank, every decision of the
step is the same everywhere by construction: the dynamic loss-scaling skip (one rank's NaN
makes the mean NaN on every rank), the loss scale, ``opt.t``, every ``rule.t``, the hooks'
norms. N ranks therefore equal one process fed the averaged gradient.

Errors are agreed before anything is exchanged (fast.distributed.agreement): bad input on
one rank (a gradient of the wrong shape, dtype or device; a failing ``lossfun``; a setup
whose parameter names, shapes, dtypes or devices differ from rank 0's; an optimizer whose
step count, loss scale, hooks or hyperparameters have drifted apart) makes every rank raise
the same error, with no parameter, master or state changed on any rank.
"""
import functools

import numpy

from fast import boundary
from fast.distributed import agreement, checkpoints
from fast.distributed.exchange import GradientExchange, broadcast_parameters, local_gradients
from fast.distributed.zero import PieceDeserializer, ShardLayout, ShardScope, refuse_unsharded_hooks
from fast.optimizer import GradientMethod, named_parameters, warn_nonfinite
from fast.parameter import array_device
from fast.serializers import NpzDeserializer, RecordingSerializer, host_copy, is_deserializer

EXCHANGE_DTYPES = ("float16", "float32", "float64")


def _exchange_dtype(allreduce_grad_dtype):
    """None, or the numpy dtype of a float16/32/64 ``allreduce_grad_dtype``."""
    if allreduce_grad_dtype is None:
        return None
    try:
        dtype = numpy.dtype(allreduce_grad_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in EXCHANGE_DTYPES:
        raise ValueError("allreduce_grad_dtype must be numpy.float16, numpy.float32, numpy.float64 "
                         "or None, got {!r}".format(allreduce_grad_dtype))
    return dtype


def _parameter_layout(pairs, comm):
    """(field, value) pairs describing the parameters; raises if one is on a device the
    communicator does not exchange."""
    kind = comm.array_device_kind()
    fields = [("the number of parameters", len(pairs))]
    for k, (name, p) in enumerate(pairs):
        array = boundary.array(p)
        if array is None:
            fields.append(("parameter #{}".format(k), "{} (no array yet)".format(name)))
            continue
        device = array_device(array)
        if not device.startswith(kind):
            raise TypeError("parameter {!r} is on {}, but the {!r} communicator exchanges {} arrays".format(
                name, device, comm.name, "NumPy" if kind == "cpu" else "CuPy"))
        fields.append(("parameter #{}".format(k), "{} shape={} dtype={} device={}".format(
            name, tuple(array.shape), array.dtype, kind)))
    return fields


def _with_arrays(pairs):
    """``pairs``, if every parameter has its array (ZeRO lays out the shards at setup)."""
    for name, p in pairs:
        if boundary.array(p) is None:
            raise ValueError("parameter {!r} has no array yet: under zero=True the shards are laid out "
                             "at setup, so run one forward pass of a lazily initialized link before "
                             "setting the optimizer up".format(name))
    return pairs


def step_fingerprint(actual):
    """(field, value) pairs that must be equal on every rank before a step: everything
    that decides what the step does, other than the gradients themselves. Per-rule values
    are taken in parameter order (under zero=True the ranks group their pieces differently)."""
    engine = actual.engine
    engine.sync_hyperparameters()
    rules = [(e.group, e.position) for e in engine.entries]
    hooks = [(timing, name, type(h).__name__) for timing, name, h in actual.named_hooks()]
    return [
        ("the optimizer's step count t", actual.t),
        ("the epoch", actual.epoch),
        ("the loss-scaling state (scale, dynamic, multiplier, isnan_ever)", actual.scaling.fields()),
        ("the optimizer hooks (timing, name, type)", hooks),
        ("the rules' kernels and dtype modes",
         agreement.digest(numpy.asarray([(g.kernel_id, g.mode, g.dtype.num) for g, _ in rules]))),
        ("the rules' step counts (rule.t)", agreement.digest(numpy.asarray([g.t[i] for g, i in rules]))),
        ("the rules' enabled flags and rule-level hooks",
         agreement.digest(numpy.asarray([(g.enabled[i], g.hooked[i]) for g, i in rules]))),
        ("the optimizer's hyperparameters", sorted(actual.hyperparam.get_dict().items())),
        ("the rules' hyperparameters (per-rule overrides included)",
         agreement.digest(*[g.raw[i] for g, i in rules])),
    ]


class MultiNodeOptimizer(object):
    """An optimizer that averages the gradients over the ranks, then steps as
    ``actual_optimizer`` does on every rank (replicated training). Every attribute not
    defined here is the actual optimizer's (read and written through), so the public API is
    the same: hooks, loss scaling, ``use_fp32_update``, ``t``, ``epoch``, ``target``,
    ``serialize``, ...

    ``setup``, ``update``, ``check_nan_in_grads``, ``gather_state`` and the npz save/load
    are collective: every rank must call them, in the same order.
    """

    zero = False

    def __init__(self, actual_optimizer, communicator, allreduce_grad_dtype=None):
        object.__setattr__(self, "actual_optimizer", actual_optimizer)
        object.__setattr__(self, "communicator", communicator)
        object.__setattr__(self, "allreduce_grad_dtype", allreduce_grad_dtype)
        object.__setattr__(self, "_exchange", None)

    def __getattr__(self, name):
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.actual_optimizer, name, value)

    def __repr__(self):
        return "{}({!r}, {} communicator, rank {} of {})".format(
            type(self).__name__, type(self.actual_optimizer).__name__, self.communicator.name,
            self.communicator.rank, self.communicator.size)

    # --- set-up ---
    def setup(self, target):
        """Collective: check that every rank sets up the same parameters (names, shapes,
        dtypes, device kind), set up the actual optimizer, broadcast the parameters from
        rank 0. Returns self."""
        comm = self.communicator
        agreement.agree(comm, lambda: named_parameters(target),
                        fingerprint=lambda pairs: _parameter_layout(pairs, comm))
        actual = self.actual_optimizer
        actual.setup(target)
        ready = [(n, p) for n, p in actual.named_parameters() if boundary.array(p) is not None]
        broadcast_parameters(ready, comm)
        object.__setattr__(self, "_exchange", GradientExchange(ready, comm, self.allreduce_grad_dtype))
        return self

    def check_set_up(self):
        if self._exchange is None:
            raise RuntimeError("Optimizer is not set up. Call `setup` method.")

    def _parameters(self):
        """(name, parameter) of the model's parameters that take part in the exchange (those
        that have arrays), as the user set them up."""
        return self._exchange.named

    # --- the step ---
    def update(self, lossfun=None, *args, **kwds):
        """Collective: one step on the gradients averaged over the ranks.

        With ``lossfun``, each rank computes its own loss and backward (loss-scaled) first.
        A gradient that is None counts as zeros. During the step each ``p.grad`` is the
        averaged gradient (a view of a buffer of the optimizer's), or the sum over the ranks
        where the step's kernels divide it by N as they read it (fast.distributed.exchange);
        afterwards, and if the step raises, ``p.grad`` is the rank's own gradient again.

        A call that finds parameters that got their arrays since the last one (a lazily
        initialized link's first forward) broadcasts rank 0's values of them and does no
        step, as ChainerMN's first update does: the gradients were taken at each rank's own
        initial values.
        """
        def local_phase():
            self.check_set_up()
            self._check_steppable()
            if lossfun is not None:
                self._backward(lossfun, args, kwds)
            new = self._newly_initialized()
            return new, (None if new else local_gradients(self._parameters()))

        new, grads = agreement.agree(
            self.communicator, local_phase,
            fingerprint=lambda result: step_fingerprint(self.actual_optimizer) + [
                ("the parameters that got their arrays", _parameter_layout(result[0], self.communicator))])
        if new:
            self._take_in(new)
            return
        self._exchange_and_step(grads)

    def _newly_initialized(self):
        """(name, parameter) of the parameters that have arrays but are not exchanged yet."""
        known = {id(p) for _, p in self._exchange.named}
        return [(n, p) for n, p in self.actual_optimizer.named_parameters()
                if id(p) not in known and boundary.array(p) is not None]

    def _take_in(self, new):
        """Collective: rank 0's values of newly initialized parameters on every rank, and an
        exchange that includes them."""
        broadcast_parameters(new, self.communicator)
        ready = [(n, p) for n, p in self.actual_optimizer.named_parameters() if boundary.array(p) is not None]
        object.__setattr__(self, "_exchange", GradientExchange(ready, self.communicator, self.allreduce_grad_dtype))

    def _check_steppable(self):
        """Local checks of what this kind of multi-node optimizer can run (none here)."""

    def _exchange_and_step(self, grads):
        means, factor = self._exchange.average(grads, self._fold())
        self._step_on(self._parameters(), means, factor)

    def _fold(self):
        """Whether this step's mean is left to the step's kernels (fast.distributed.exchange):
        where the bits allow it and the step reads the gradients in its kernels alone."""
        return self._exchange.foldable() and self.actual_optimizer.reads_gradients_only_in_kernels()

    def _model_parameters(self):
        """(name, parameter) of every parameter of the model as the user set it up (those
        without arrays included)."""
        return self.actual_optimizer.named_parameters()

    def _backward(self, lossfun, args, kwds):
        """Chainer's update(lossfun): the loss, the model's cleared grads, backward with the
        loss scale."""
        loss = lossfun(*args, **kwds)
        boundary.clear_grads(self.target, [p for _, p in self._model_parameters()])
        loss.backward(loss_scale=self.actual_optimizer.loss_scale)
        del loss

    def _step_on(self, named, grads, factor):
        """Hand ``grads`` to the parameters ``named`` of the actual optimizer and step, its
        kernels multiplying each gradient by ``factor`` as they read it (None: as it is);
        then put every parameter's own gradient back."""
        originals = [boundary.grad(p) for _, p in named]
        for (_, p), grad, original in zip(named, grads, originals):
            if grad is not original:
                boundary.set_grad(p, grad)
        engine = self.actual_optimizer.engine
        engine.average_factor = factor
        try:
            self.actual_optimizer.update()
        finally:
            engine.average_factor = None
            for (_, p), grad, original in zip(named, grads, originals):
                if grad is not original:
                    boundary.set_grad(p, original)

    def check_nan_in_grads(self):
        """Collective: dynamic loss scaling's check on the local gradients, agreed over the
        ranks, so that a non-finite value on any rank makes ``is_safe_to_update()`` False
        on every rank (``update`` itself checks the averaged gradient)."""
        actual = self.actual_optimizer

        def local_check():
            actual.check_nan_in_grads()
            return not actual.is_safe_to_update()

        bad = agreement.agree(self.communicator, local_check)
        if any(self.communicator.allgather_obj(bad)):
            actual.scaling.found_nonfinite()

    # --- reading the state ---
    def gather_state(self, names=None):
        """Collective: the fp32 master and optimizer state of the parameters ``names`` (a
        list of names; every parameter by default, in order), whole, as host NumPy copies,
        the same on every rank (``t`` is this rank's ``rule.t``, the same on every rank unless
        the ranks drifted apart): name -> {"fp32_param": array or None, "state": {key: array}
        or None, "t": rule.t}. It is built one array at a time: besides its result, a rank
        holds at most one parameter's array at once (under ZeRO, its own shard aside); a
        caller can take the state a few parameters at a time through ``names``."""
        rules = agreement.agree(self.communicator, lambda: self._chosen_rules(names),
                                fingerprint=lambda chosen: [("the arrays to gather", [
                                    (name, None if rule.state is None else sorted(rule.state),
                                     rule.fp32_param is not None) for name, rule in chosen])])
        out = {}
        for name, rule in rules:
            state = rule.state
            out[name] = {"fp32_param": None if rule.fp32_param is None else self._whole(name, rule.fp32_param),
                         "state": None if state is None else {k: self._whole(name, v) for k, v in sorted(state.items())},
                         "t": rule.t}
        return out

    def _chosen_rules(self, names):
        """(name, rule) of the parameters ``names`` (all, in order, for None); KeyError
        naming an unknown one."""
        self.check_set_up()
        rules = [(name, p.update_rule) for name, p in self.actual_optimizer.named_parameters()]
        if names is None:
            return rules
        known = dict(rules)
        if isinstance(names, str):
            raise TypeError("names must be a list of parameter names, got the string {!r}".format(names))
        missing = [n for n in names if n not in known]
        if missing:
            raise KeyError("no parameter named {!r}; the parameters are {}".format(missing[0], sorted(known)))
        return [(n, known[n]) for n in names]

    def _whole(self, name, array):
        """Collective: a host copy of parameter ``name``'s whole ``array`` (here: this rank's)."""
        return host_copy(array)

    # --- checkpoints: fast.serializers.save_npz / load_npz call the first two; the rest is
    # what fast.distributed.checkpoints asks of the optimizer ---
    def collective_save_npz(self, file, compression=True):
        """Collective: the single-process npz of the state, written by rank 0."""
        checkpoints.save_npz(self, file, compression)

    def collective_load_npz(self, file, path="", strict=True):
        """Collective: load a single-process npz (rank 0's file) on every rank."""
        checkpoints.load_npz(self, file, path=path, strict=strict)

    def local_entries(self):
        """This rank's state as the single-process serializer writes it: (key, value) in
        order, the arrays as live views (nothing copied)."""
        self.check_set_up()
        s = RecordingSerializer()
        self.actual_optimizer.serialize(s)
        return s.entries

    def save_fingerprint(self, entries):
        """Replicated ranks must hold the same whole state."""
        return [("the optimizer state to save", checkpoints.entries_digest(entries))]

    def whole_entries(self, entries, root=None):
        """Collective: the single-process (key, value) of ``entries``, one at a time, whole
        on ``root`` (None: every rank; elsewhere a piece's value is None). Here: as they are."""
        return iter(entries)

    def deserializer_for(self, path):
        """The deserializer class that loads this rank's state from a whole npz under
        ``path`` (replicated: every array as it is)."""
        return NpzDeserializer


class ZeroOptimizer(MultiNodeOptimizer):
    """ZeRO stages 1 and 2 (fast.distributed.zero): gradients reduce-scattered, each rank
    updating the master and state of its shard only, parameters all-gathered.

    On a rank: ``p.data`` is the whole parameter; ``p.update_rule`` is the rule of this
    rank's piece, so ``rule.t``, ``rule.enabled`` and ``rule.hyperparam`` are the
    parameter's (the same on every rank) while ``rule.state[k]`` and ``rule.fp32_param`` are
    this rank's piece only (the elements ``piece_range(name)`` of the flattened parameter,
    1-d unless the piece is the whole parameter; an empty array where it holds none).
    ``gather_state()`` returns them whole. ``p.grad`` is left as the rank's own gradient.
    """

    zero = True

    def __init__(self, actual_optimizer, communicator, allreduce_grad_dtype=None):
        super(ZeroOptimizer, self).__init__(actual_optimizer, communicator, allreduce_grad_dtype)
        object.__setattr__(self, "_layout", None)
        object.__setattr__(self, "_target", None)

    @property
    def target(self):
        """The model's parameters as given to ``setup``."""
        return self._target

    def setup(self, target):
        """Collective: check the ranks agree on the parameters, broadcast rank 0's values,
        lay out the shards and set up the actual optimizer on this rank's pieces."""
        comm = self.communicator
        pairs = agreement.agree(comm, lambda: _with_arrays(named_parameters(target)),
                                fingerprint=lambda pairs: _parameter_layout(pairs, comm))
        broadcast_parameters(pairs, comm)
        layout = ShardLayout(pairs, comm, self.allreduce_grad_dtype)
        layout.adopt_parameters()
        actual = self.actual_optimizer
        actual.setup(layout.piece_parameters(), scope=ShardScope(comm, layout))
        for (_, p), (_, piece) in zip(pairs, actual.named_parameters()):
            p.update_rule = piece.update_rule
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_exchange", layout)
        return self

    def _parameters(self):
        return self._layout.named

    def _model_parameters(self):
        return self._layout.named

    def _newly_initialized(self):
        return []

    def piece_range(self, name):
        """(b, e): the elements of parameter ``name`` (flattened) whose master and state
        this rank holds."""
        self.check_set_up()
        return self._layout.piece_range(name)

    def _check_steppable(self):
        refuse_unsharded_hooks(self.actual_optimizer)

    def _exchange_and_step(self, grads):
        layout = self._layout
        layout.refresh_pieces()
        means, factor = layout.reduce_to_pieces(grads, self._fold())
        try:
            self._step_on(self.actual_optimizer.named_parameters(), means, factor)
        finally:
            # Also after a skipped step (nothing changed) and after a step that raised midway
            # as Chainer's does (eps too small: the pieces of the rules before the rejected
            # one have updated, on every rank): the ranks' sequence of collectives never
            # depends on a decision of the step, so ranks that decided differently (a bug)
            # diverge visibly instead of deadlocking or crashing in mismatched collectives.
            layout.publish()

    def check_nan_in_grads(self):
        """Collective: dynamic loss scaling's check on every rank's own gradients, agreed
        (``update`` itself checks the averaged gradient)."""
        actual = self.actual_optimizer

        def local_check():
            self.check_set_up()
            actual.scaling.begin_check()
            if not actual.scaling.dynamic:
                return []
            return [name for name, p in self._parameters()
                    if p.grad is not None and not bool(self.communicator.xp.isfinite(p.grad).all())]

        bad = agreement.agree(self.communicator, local_check)
        for name in bad:
            warn_nonfinite(name, actual.t, actual.scaling.scale)
        if any(self.communicator.allgather_obj(bool(bad))):
            actual.scaling.found_nonfinite()

    # --- whole arrays from pieces ---
    def _whole(self, name, array):
        """Collective: parameter ``name``'s whole array from every rank's piece ``array``."""
        return self._layout.whole_from_pieces(self._layout.index_of[name], array)

    def _element_keys(self, prefix=""):
        """Serialized key -> parameter index, for the keys holding per-element arrays (state
        and master), as the single-process layout names them under ``prefix``."""
        keys = {}
        self.actual_optimizer.engine.sync_hyperparameters()
        for i, (name, p) in enumerate(self.actual_optimizer.named_parameters()):
            base = prefix + name.lstrip("/") + "/"
            rule = p.update_rule
            for leaf in tuple(rule.state_names(rule.hyperparam)) + ("fp32_param",):
                keys[base + leaf] = i
        return keys

    def save_fingerprint(self, entries):
        """The ranks hold different pieces but must agree on the keys and on every other
        saved value."""
        elements = self._element_keys()
        scalars = [(k, v) for k, v in entries if k not in elements]
        return [("the optimizer's keys, counters and scalars to save",
                 checkpoints.entries_digest(scalars) + checkpoints.entries_digest([(k, 0) for k, _ in entries]))]

    def whole_entries(self, entries, root=None):
        """Collective: the single-process (key, value) of ``entries``, one at a time: each
        array of pieces gathered whole on ``root`` (None: on every rank; elsewhere its value
        is None), so no rank holds more than one whole array at once."""
        elements = self._element_keys()
        for key, value in entries:
            if key in elements:
                value = self._layout.whole_from_pieces(elements[key], value, root)
            yield key, value

    def deserializer_for(self, path):
        layout = self._layout

        def slicer(key, whole):
            i = elements[key]
            if tuple(whole.shape) != layout.shapes[i]:
                raise ValueError("key {!r} has shape {}, expected the parameter's shape {}".format(
                    key, tuple(whole.shape), layout.shapes[i]))
            return layout.local_slice(i, whole)

        elements = self._element_keys(path)
        return functools.partial(PieceDeserializer, slicers={k: slicer for k in elements})

    def serialize(self, serializer):
        """Collective. Saving writes the whole (single-process) state into ``serializer`` on
        every rank. Loading reads the whole arrays from the npz archive the deserializer
        reads (Chainer's or fast's ``NpzDeserializer``: ``chainer.serializers.load_npz(file,
        trainer)`` resumes a Trainer) and keeps each rank's pieces, after every rank has
        validated it (fast.distributed.checkpoints.load_opened)."""
        if is_deserializer(serializer):
            npz = getattr(serializer, "npz", None)
            if npz is None:
                raise TypeError("under zero=True a snapshot loads from an npz archive (chainer.serializers."
                                "load_npz or fast.serializers.load_npz); got a {}".format(type(serializer).__name__))
            checkpoints.load_opened(self, lambda: npz, "the snapshot", path=getattr(serializer, "path", ""),
                                    strict=getattr(serializer, "strict", True))
            return
        entries = agreement.agree(self.communicator, self.local_entries, fingerprint=self.save_fingerprint)
        for key, value in self.whole_entries(entries):
            serializer(key, value)
            del value  # before the next array is gathered


def _check_wrappable(actual_optimizer, communicator, exchange_dtype):
    if not isinstance(actual_optimizer, GradientMethod):
        raise TypeError("actual_optimizer must be a fast optimizer (a fast.GradientMethod), got {}".format(
            type(actual_optimizer).__name__))
    if actual_optimizer.target is not None:
        raise ValueError("actual_optimizer is already set up: create the multi-node optimizer first, "
                         "then call its setup(), which broadcasts the parameters")
    return [("the optimizer", "{} profile={}".format(type(actual_optimizer).__name__, actual_optimizer.profile)),
            ("allreduce_grad_dtype", None if exchange_dtype is None else exchange_dtype.name),
            ("the communicator", (communicator.name, communicator.size))]


def create_multi_node_optimizer(actual_optimizer, communicator, zero=False, allreduce_grad_dtype=None):
    """Wrap a ``fast`` optimizer for data-parallel training. Collective.

    ``zero=False``: replicated (ChainerMN's semantics): every rank holds everything and
    steps on the averaged gradient. ``zero=True``: ZeRO stages 1 and 2: each rank holds the
    fp32 master and optimizer state of its shard only (fast.distributed.zero). Both give the
    same bits for elementwise rules.

    ``allreduce_grad_dtype``: the dtype the gradients are summed and divided in (float16,
    float32 or float64); None sums each gradient in its own dtype. ChainerMN's
    ``pure_nccl`` None means ``chainer.get_dtype()`` (float32 unless configured), so
    ``numpy.float32`` reproduces its default for fp16 gradients.
    """
    if not hasattr(communicator, "allgather_obj"):
        raise TypeError("communicator must come from fast.distributed.create_communicator, got {}".format(
            type(communicator).__name__))

    def local_check():
        if not isinstance(zero, bool):
            raise TypeError("zero must be True or False, got {!r}".format(zero))
        return _exchange_dtype(allreduce_grad_dtype)

    dtype = agreement.agree(communicator, local_check, fingerprint=lambda dtype: _check_wrappable(
        actual_optimizer, communicator, dtype) + [("zero", zero)])
    return (ZeroOptimizer if zero else MultiNodeOptimizer)(actual_optimizer, communicator, dtype)
