"""The multi-tensor engine: groups, flat buffers, views and kernel dispatch.

At setup the parameters are grouped by (device, dtype mode, kernel, state
layout). Each group keeps its parameters, fp32 masters and optimizer state in
flat contiguous buffers; ``p.data``, ``rule.state[...]`` and
``rule.fp32_param`` are views into them. Numeric hyperparameters do not split
groups: they travel to the kernel in a per-tensor scalar table, re-read only
when a hyperparameter changed (see fast.hyperparameter.generation). A change
that alters the layout (fp32 update switched, AMSGrad switched) regroups, and
regrouping carries every value over.

One step of a group is one kernel call over its chunk table. Gradients are
read in place through a per-tensor pointer table. Where the buffers live and
how a kernel call is made is the group's backend (fast.backends): the engine
has one code path for the CPU and the GPU.
"""
import numpy

from fast import backends, boundary, hyperparameter
from fast.backends import abi
from fast.backends.step import StepSpec
from fast.parameter import array_device, check_grad
from fast.slots import GroupSlot

CHUNK = 1 << 15
F16, F32, F64 = numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)


def dtype_mode(dtype, use_master, semantics):
    """The dtype mode (fast.backends.abi) of a parameter dtype, under a profile's
    ``semantics`` (fast.profiles: whether hooks see the fp32 master)."""
    if dtype == F64:
        return abi.MODE_FLOAT64
    if dtype == F32:
        return abi.MODE_FLOAT32
    if use_master:
        return abi.MODE_FP16_MASTER_FIXED if semantics.hooks_see_masters else abi.MODE_FP16_MASTER
    return abi.MODE_FP16


def has_master(mode):
    return mode in (abi.MODE_FP16_MASTER, abi.MODE_FP16_MASTER_FIXED)


def hook_dtype(mode, dtype):
    """The dtype optimizer hooks see the gradient in (the dtype noise is drawn in)."""
    return F32 if mode == abi.MODE_FP16_MASTER_FIXED else dtype


class Entry(object):
    """One parameter of the target: its name, the parameter, its rule and the parameter's
    kind (fast.boundary). Once the parameter has an array the entry is in a group:
    ``index`` is its position among the engine's entries, ``group``/``position`` where its
    values live; before that (a lazily initialized Chainer parameter) ``group`` is None."""
    __slots__ = ("index", "name", "param", "rule", "kind", "group", "position")

    def __init__(self, name, param, rule):
        self.name, self.param, self.rule = name, param, rule
        self.kind = boundary.kind_of(param)
        self.index, self.group, self.position = -1, None, -1

    def array(self):
        return self.kind.array(self.param)

    def grad(self):
        return self.kind.grad(self.param)

    def set_grad(self, value):
        self.kind.set_grad(self.param, value)


def _chunk_table(sizes):
    tensor, begin, end = [], [], []
    for t, n in enumerate(sizes):
        for b in range(0, n, CHUNK):
            tensor.append(t)
            begin.append(b)
            end.append(min(b + CHUNK, n))
    as64 = lambda x: numpy.asarray(x, dtype=numpy.int64)
    return as64(tensor), as64(begin), as64(end)


class Group(object):
    """Parameters of one device, dtype mode, kernel and state layout."""

    def __init__(self, backend, rule_cls, kernel_id, mode, dtype, state_names, entries, param_storage=None):
        self.backend = backend
        self.rule_cls = rule_cls
        self.kernel_id = kernel_id
        self.mode = mode
        self.dtype = dtype
        self.state_names = tuple(state_names)
        self.entries = entries
        self.global_index = numpy.asarray([e.index for e in entries], dtype=numpy.int64)
        self.shapes = [tuple(e.array().shape) for e in entries]
        #: every tensor is 0-d (the engine groups 0-d parameters apart: NumPy 1.x
        #: divides them by the loss scale in float64)
        self.zero_d = all(len(shape) == 0 for shape in self.shapes)
        self.sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in self.shapes]
        self.offsets = numpy.zeros(len(entries), dtype=numpy.int64)
        if entries:
            self.offsets[1:] = numpy.cumsum(self.sizes)[:-1]
        total = int(sum(self.sizes))
        #: the parameters' values: a buffer of the group's own, or ``param_storage`` (an array
        #: of ``total`` elements of ``dtype`` that the scope lends, where it keeps them)
        self.param = backend.allocate(total, dtype, 0) if param_storage is None else param_storage
        self.master = backend.allocate(total, F32, 1, beside=self.param) if has_master(mode) else None
        self.state_dtype = F32 if self.master is not None else dtype
        self.state = [backend.allocate(total, self.state_dtype, 2 + k, beside=self.param)
                      for k in range(len(self.state_names))]
        n = len(entries)
        self.t = numpy.zeros(n, dtype=numpy.int64)
        self.enabled = numpy.ones(n, dtype=numpy.uint8)
        self.initialized = numpy.zeros(n, dtype=numpy.uint8)
        self.master_ready = numpy.zeros(n, dtype=numpy.uint8)
        self.extras = {name: numpy.zeros(n, dtype=numpy.float64) for name in rule_cls.extras}
        self.chunk_tensor, self.chunk_begin, self.chunk_end = _chunk_table(self.sizes)
        self.raw = None
        self.hooked = numpy.zeros(n, dtype=bool)
        self.no_hook_tables = None
        self.update_spec = None  # (key, StepSpec): see Engine._update_spec
        self.grad_ptrs = self.grad_keep = None  # gathered by Engine.collect_grads
        #: the parameter arrays as the parameters hold them (Engine.sync_parameters)
        self.views = [None] * n
        self.params = [e.param for e in entries]
        getters = {e.kind.grad for e in entries}
        #: the one gradient getter of every parameter of the group (None: kinds differ)
        self.grad_getter = getters.pop() if len(getters) == 1 else None

    # --- views ---
    def _slice(self, buf, i):
        o = int(self.offsets[i])
        return buf[o:o + self.sizes[i]].reshape(self.shapes[i])

    def param_view(self, i):
        return self._slice(self.param, i)

    def master_view(self, i):
        return self._slice(self.master, i)

    def state_views(self, i):
        return {name: self._slice(buf, i) for name, buf in zip(self.state_names, self.state)}

    # --- per-tensor scalars ---
    def refresh_hparams(self):
        """Re-read the rules' hyperparameters into the raw table, and which rules have
        hooks of their own (adding or removing one also bumps the generation)."""
        self.raw = numpy.asarray([e.rule.raw_hparams() for e in self.entries], dtype=numpy.float64)
        self.raw = self.raw.reshape(len(self.entries), -1)
        self.hooked = numpy.asarray([e.rule.has_hooks for e in self.entries], dtype=bool)

    def initialize(self, i):
        """Create rule ``i``'s state (and master) at its first update, as Chainer does."""
        for name, view in self.state_views(i).items():
            view[...] = self.rule_cls.state_fill.get(name, 0)
        self.entries[i].rule.before_first_update()
        self.initialized[i] = 1
        self.prepare_master(i)

    def prepare_master(self, i):
        """Create the fp32 master from the parameter if it does not exist yet."""
        if self.master is not None and not self.master_ready[i]:
            self.master_view(i)[...] = self.param_view(i)
            self.master_ready[i] = 1

    def fill(self, i, entry, values, data):
        """Position ``i`` takes the parameter's values ``data`` (its array, which becomes a
        view of this group's buffer) and the rule's ``values`` (a fast.slots.DetachedSlot).
        A state name the values lack (AMSGrad switched on) starts at its initial value."""
        view = self.param_view(i)
        view[...] = data
        entry.kind.adopt(entry.param, view)
        self.views[i] = view
        self.t[i] = values.t
        self.enabled[i] = values.enabled
        for k, v in values.extras.items():
            if k in self.extras:
                self.extras[k][i] = v
        if values.state is not None:
            for k, v in self.state_views(i).items():
                old = values.state.get(k)
                if old is not None and tuple(numpy.shape(old)) != self.shapes[i]:
                    raise ValueError("the optimizer state {!r} of parameter {!r} has shape {}, but the "
                                     "parameter's array has shape {}".format(k, entry.name, numpy.shape(old),
                                                                              self.shapes[i]))
                v[...] = self.backend.xp.asarray(old) if old is not None else self.rule_cls.state_fill.get(k, 0)
            if self.master is not None and values.master is not None:
                self.master_view(i)[...] = self.backend.xp.asarray(values.master)
                self.master_ready[i] = 1
            self.initialized[i] = 1


class LocalScope(object):
    """What the engine's tensors are part of: here, whole parameters of one process, so its
    reductions and non-finite flags are final as computed. fast.distributed's ZeRO gives
    an engine over pieces of parameters a scope that combines them over the ranks."""

    #: whether the optimizer must decide a dynamic loss-scaling skip on the host (a scope
    #: that combines the non-finite check over processes cannot leave it on the device)
    decides_skip_on_host = False

    def combine_flags(self, bad):
        """Entry-ordered non-finite flags, combined over everything the tensors are part of."""
        return bad

    def combine_sums(self, gsq, psq):
        """Entry-ordered sums of squares of the gradients and the parameters, combined."""
        return gsq, psq

    def hook_shape(self, entry):
        """The shape of the whole parameter a hook draws per-parameter values for (noise)."""
        return tuple(entry.array().shape)

    def local_part(self, entry, whole):
        """The part of ``whole`` (an array of ``hook_shape(entry)``) the entry's tensor
        holds, contiguous."""
        return whole

    def parameter_storage(self, entries, dtype):
        """An array the group of ``entries`` (in order) keeps its parameters' values in,
        where the scope holds them contiguously already (its ``dtype``, the entries' sizes
        in a row); None: the group allocates its own. Here: None."""
        return None


def divisor_classes(scales, active):
    """The active tensors (a uint8 mask) split by the loss scale their gradients carry
    (``scales``, NaN: unscaled): a list of (uint8 mask, scale or None). One class in the usual
    case (every gradient scaled alike)."""
    on = active.astype(bool)
    chosen = scales[on]
    if len(chosen) == 0 or numpy.all(chosen == chosen[0]) or numpy.all(numpy.isnan(chosen)):
        first = chosen[0] if len(chosen) else numpy.nan
        return [(active, None if numpy.isnan(first) else float(first))]
    classes = []
    unscaled = on & numpy.isnan(scales)
    if unscaled.any():
        classes.append((unscaled.astype(numpy.uint8), None))
    for value in numpy.unique(chosen[~numpy.isnan(chosen)]):
        classes.append(((on & (scales == value)).astype(numpy.uint8), float(value)))
    return classes


class Engine(object):
    """Owns the groups of one optimizer and runs their kernels.

    ``members``: every parameter of the target (an Entry each), in the target's order;
    ``entries``: those that have an array, in the same order. A lazily initialized Chainer
    parameter joins ``entries`` (and a group) the first time the engine finds it has an
    array (``sync_parameters``); until then its rule's values stay in the rule.
    """

    def __init__(self, semantics, scope=None):
        #: what the profile decides (fast.profiles.Profile)
        self.semantics = semantics
        self.scope = LocalScope() if scope is None else scope
        self.members = []
        self.entries = []
        self.groups = []
        self.keys = []
        self.seen_generation = None
        # fixed profile with a custom optimizer hook: fp16-master groups expose their fp32
        # masters with unscaled fp32 gradients, and their kernels run on the master as fp32.
        self.fp32_view = False
        #: fast.distributed's mean folded into the step: each gradient is multiplied by this
        #: factor (1/N) as the kernels load it, and rounded to its dtype (None: read as it is).
        #: Only for a step whose gradients are read by the kernels alone (no custom hook, no
        #: rule hook: ``GradientMethod.reads_gradients_only_in_kernels``).
        self.average_factor = None
        self._pending = None
        #: the position of the entry where this step stops (Chainer raises in its rule's
        #: update_core: the entries before it update, it and those after it do not), or None
        self.stop_at = None

    @property
    def decides_skip_on_host(self):
        return self.scope.decides_skip_on_host

    # --- a step whose skip decision is still on the device (see fast.optimizer) ---
    def hold(self, settle):
        """Register ``settle``, called once before anything reads what the step changed."""
        self._pending = settle

    @property
    def pending(self):
        """Whether a step's outcome is still to be settled."""
        return self._pending is not None

    def settle(self):
        settle, self._pending = self._pending, None
        if settle is not None:
            settle()

    def stepping(self, g):
        """Which of ``g``'s tensors this step updates: the enabled ones before ``stop_at``."""
        active = g.enabled.copy()
        if self.stop_at is not None:
            active[g.global_index >= self.stop_at] = 0
        return active

    def _viewed_as_fp32(self, g):
        return self.fp32_view and g.master is not None

    def kernel_mode(self, g):
        """The mode a pass over ``g`` runs in (fp32 on the master in the fp32 view)."""
        return abi.MODE_FLOAT32 if self._viewed_as_fp32(g) else g.mode

    # --- layout ---
    def bind(self, named_params):
        """Take the (name, param, rule) triples of a new setup."""
        members = [Entry(n, p, r) for n, p, r in named_params]
        for e in members:
            array = e.array()
            if array is not None and array_device(array) is None:
                raise TypeError("parameter {!r} holds a {}, not a NumPy or CuPy array".format(
                    e.name, type(array).__name__))
        self.members = members
        self._regroup()

    def _layout_key(self, entry):
        rule, array = entry.rule, entry.array()
        dtype = array.dtype
        use_master = rule.uses_fp32_update and dtype == F16
        hp = rule.hyperparam
        return (array_device(array), dtype_mode(dtype, use_master, self.semantics), str(dtype),
                type(rule), rule.kernel_id(hp), tuple(rule.state_names(hp)), array.ndim == 0)

    def _regroup(self):
        """Lay out every member that has an array, carrying every value over."""
        carried = {id(e): (e.rule.slot.detached(), e.array()) for e in self.members if e.array() is not None}
        entries = [e for e in self.members if id(e) in carried]
        for i, e in enumerate(entries):
            e.index = i
        buckets = {}
        for e in entries:
            buckets.setdefault(self._layout_key(e), []).append(e)
        groups = []
        for (_, mode, dtype, rule_cls, kernel_id, names, _), members in buckets.items():
            backend = backends.for_array(members[0].array())
            storage = self.scope.parameter_storage(members, numpy.dtype(dtype))
            g = Group(backend, rule_cls, kernel_id, mode, numpy.dtype(dtype), names, members, storage)
            for i, e in enumerate(members):
                values, data = carried[id(e)]
                g.fill(i, e, values, data)
                e.group, e.position = g, i
                e.rule.attach(GroupSlot(g, i), settle=self.settle)
            groups.append(g)
        self.entries, self.groups = entries, groups
        self.keys = [self._layout_key(e) for e in entries]
        # what sync_parameters must look at: parameters without arrays yet, and those whose
        # array can be replaced from outside; and the entries whose gradients may carry
        # another loss scale than the optimizer's
        self._watched = [e for e in self.members if e.group is None or e.kind.replaceable]
        self._own_scales = [e for e in entries if not e.kind.carries_optimizer_scale(e.param)]
        self._scales = (object(), None)
        for g in groups:
            g.refresh_hparams()
        self.seen_generation = hyperparameter.generation()

    def sync_parameters(self):
        """Take in what happened to the parameters since the last step: a lazily initialized
        parameter that now has an array joins its group (its rule's values with it); a
        parameter whose array was replaced (``link.W.array = x``, ``to_device``) has its
        new values copied in, and its optimizer state kept."""
        changed = False
        for e in self._watched:
            array = e.array()
            if e.group is None:
                changed = changed or array is not None
            elif array is None:
                raise ValueError("parameter {!r} lost its array after the optimizer was set up".format(e.name))
            elif array is not e.group.views[e.position]:
                changed = True
        if changed:
            self._regroup()

    def sync_hyperparameters(self):
        """Regroup or re-read hyperparameters if any changed since the last step."""
        if self.seen_generation == hyperparameter.generation():
            return
        if [self._layout_key(e) for e in self.entries] != self.keys:
            self._regroup()
            return
        for g in self.groups:
            g.refresh_hparams()
        self.seen_generation = hyperparameter.generation()

    def prepare_masters(self, step_goes_ahead, journal=None):
        """Fill every missing fp32 master from its fp16 values (the fixed profile's hooks read
        masters). A master is kept (marked ready) only for a rule that updates in this step:
        a disabled rule, a rule at or after ``stop_at``, or any rule on a skipped step, gets
        none, as in Chainer, where the master is created by the rule's first update."""
        for g in self.groups:
            if g.master is None:
                continue
            stepping = self.stepping(g)
            for i in numpy.flatnonzero(g.master_ready == 0):
                g.master_view(i)[...] = g.param_view(i)
                if step_goes_ahead and stepping[i]:
                    g.master_ready[i] = 1
                    if journal is not None:
                        journal.masters_marked.append((g, i))

    # --- gradients ---
    def fill_missing_grads(self):
        """Give every parameter without a gradient a zero one (Chainer's
        ``reallocate_cleared_grads``)."""
        for g in self.groups:
            for i, grad in enumerate(self._grads(g)):
                if grad is None:
                    e = g.entries[i]
                    e.set_grad(g.backend.xp.zeros_like(e.array()))

    @staticmethod
    def _grads(g):
        """Every gradient of group ``g``, in order (this runs for every parameter every step:
        one getter mapped over the parameters where the group has one)."""
        if g.grad_getter is not None:
            return list(map(g.grad_getter, g.params))
        return [e.grad() for e in g.entries]

    def loss_scales(self, optimizer_scale):
        """Entry-ordered loss scale each gradient carries (NaN: unscaled), fast.boundary's
        ``loss_scale`` of every parameter."""
        if not self._own_scales:
            if self._scales[0] != optimizer_scale:  # read-only: callers never write it
                default = numpy.nan if optimizer_scale is None else float(optimizer_scale)
                self._scales = (optimizer_scale, numpy.full(len(self.entries), default))
            return self._scales[1]
        out = numpy.full(len(self.entries), numpy.nan if optimizer_scale is None else float(optimizer_scale))
        for e in self._own_scales:
            scale = e.kind.loss_scale(e.param, optimizer_scale)
            out[e.index] = numpy.nan if scale is None else float(scale)
        return out

    def collect_grads(self, missing_as_zero=False):
        """Validate every gradient and gather per-group pointer tables.

        With ``missing_as_zero`` a ``None`` gradient reads as zeros (a shared
        zero buffer) instead of being an error; ``p.grad`` stays None.
        """
        for g in self.groups:
            xp, pointer = g.backend.xp, g.backend.pointer
            ptrs = numpy.empty(len(g.entries), dtype=numpy.uint64)
            keep = []
            fp32_view = self._viewed_as_fp32(g)
            expected_dtype = F32 if fp32_view else g.dtype
            # The same array object as last time has the same address: an array
            # referenced elsewhere (here, by grad_keep) cannot be resized in place.
            previous = g.grad_keep or [None] * len(g.entries)
            for i, grad in enumerate(self._grads(g)):
                e = g.entries[i]
                if grad is None and missing_as_zero:
                    grad = xp.zeros(g.shapes[i], dtype=expected_dtype)
                if type(grad) is not xp.ndarray or grad.dtype != expected_dtype or grad.shape != g.shapes[i]:
                    if fp32_view:
                        raise TypeError("gradient of parameter {!r} must stay a float32 array of shape {} "
                                        "while the hooks run".format(e.name, g.shapes[i]))
                    if grad is None:
                        raise TypeError("gradient of parameter {!r} is None".format(e.name))
                    check_grad(e.name, grad, g.views[i])
                if not grad.flags.c_contiguous:
                    grad = xp.ascontiguousarray(grad)
                keep.append(grad)
                ptrs[i] = g.grad_ptrs[i] if grad is previous[i] else pointer(grad)
            g.grad_ptrs, g.grad_keep = ptrs, keep

    def args(self, g, active=None, hooks=(), grad_ptrs=None, param=None):
        """A StepSpec for group ``g``: buffers by address, small tables as host arrays."""
        spec = StepSpec()
        pointer = g.backend.pointer
        n = len(g.entries)
        if active is None:
            active = numpy.ones(n, dtype=numpy.uint8)
        if param is None:
            param = g.master if self._viewed_as_fp32(g) else g.param
        spec.n_tensors, spec.n_chunks = n, len(g.chunk_tensor)
        for field in ("chunk_tensor", "chunk_begin", "chunk_end"):
            spec.table(field, getattr(g, field))
        spec.table("tensor_offset", g.offsets)
        spec.table("tensor_active", active.astype(numpy.uint8))
        spec.table("grad", g.grad_ptrs if grad_ptrs is None else grad_ptrs)
        spec.grads = g.grad_keep
        spec.pointer("param", pointer(param), param)
        if g.master is not None and not self._viewed_as_fp32(g):
            spec.pointer("master", pointer(g.master), g.master)
        for k, buf in enumerate(g.state):
            spec.args.state[k] = pointer(buf)
        spec.hooks_read_master = int(g.master is not None and self.semantics.hooks_see_masters
                                     and not self._viewed_as_fp32(g))
        self._set_average(spec)
        kinds, ha, hb, noise = self._hook_tables(g, hooks)
        spec.n_hooks = len(hooks)
        for field, table in (("hook_kind", kinds), ("hook_a", ha), ("hook_b", hb), ("hook_noise", noise)):
            spec.table(field, table)
        spec.keep.append(hooks)
        return spec

    @staticmethod
    def _hook_tables(g, hooks):
        if not hooks and g.no_hook_tables is not None:
            return g.no_hook_tables
        n = len(g.entries)
        kinds = numpy.zeros(max(len(hooks), 1), dtype=numpy.int32)
        ha = numpy.zeros((max(len(hooks), 1), n), dtype=numpy.float64)
        hb = numpy.zeros_like(ha)
        noise = numpy.zeros((max(len(hooks), 1), n), dtype=numpy.uint64)
        for k, op in enumerate(hooks):
            kinds[k] = op.kind_for(g)
            ha[k], hb[k], ptrs = op.tables(g)
            if ptrs is not None:
                noise[k] = ptrs
        if not hooks:
            g.no_hook_tables = kinds, ha, hb, noise  # read-only: kernels only read tables
        return kinds, ha, hb, noise

    def _out_array(self, g, n, dtype):
        out = g.backend.xp.zeros(max(n, 1), dtype=dtype)
        return out, g.backend.pointer(out)

    # --- passes ---
    def nonfinite_names(self):
        """Names of the parameters whose gradient holds inf or NaN (read on the host),
        combined over the engine's scope."""
        flags = self.check_finite_on_device(found=None)
        bad = self.to_host_flags([g.backend.to_host(f) for g, f in zip(self.groups, flags)])
        bad = self.scope.combine_flags(bad)
        return [e.name for e in self.entries if bad[e.index]]

    def check_finite_on_device(self, found):
        """Launch the non-finite check of every group. Returns per-group flag arrays
        (group.backend's memory); ``found`` (a device int32 flag or None) is raised
        by any non-finite element."""
        flags = []
        for g in self.groups:
            spec = self.args(g)
            out, address = self._out_array(g, len(g.entries), numpy.uint8)
            spec.pointer("tensor_nonfinite", address, out)
            g.backend.check_finite(g.mode, spec, found)
            flags.append(out)
        return flags

    def to_host_flags(self, host_flags):
        """Entry-ordered booleans from check_finite_on_device's per-group flags, on the host."""
        bad = numpy.zeros(len(self.entries), dtype=bool)
        for g, host in zip(self.groups, host_flags):
            bad[g.global_index] = numpy.asarray(host[:len(g.entries)]).astype(bool)
        return bad

    def sums_of_squares(self, hooks, scales):
        """Per-parameter (sum g^2, sum p^2) of the gradient after ``hooks``, in entry order,
        on the host (a GPU group's sums are copied back: the hooks' rates are formed on the
        host, as Chainer forms them), combined over the engine's scope. ``scales``: the loss
        scales the gradients carry (``loss_scales``), divided out first in the fixed profile."""
        return self.scope.combine_sums(*self._sums_of_squares(hooks, scales, None))

    def nonfinite_names_and_sums_of_squares(self, hooks, scales):
        """``(self.nonfinite_names(), self.sums_of_squares(hooks, scales))``, from one read
        of the gradients where the group's backend can flag non-finite values in its
        reduction pass (the CPU's; other groups make the two passes). The flags are those
        of the raw gradients, before unscaling and ``hooks``."""
        bad = numpy.zeros(len(self.entries), dtype=bool)
        gsq, psq = self._sums_of_squares(hooks, scales, bad)
        bad = self.scope.combine_flags(bad)
        return [e.name for e in self.entries if bad[e.index]], self.scope.combine_sums(gsq, psq)

    def _classes(self, g, scales, active):
        """divisor_classes of ``g``'s ``active`` tensors, at once where every gradient
        carries the optimizer's scale (``scales`` is then loss_scales' cached array)."""
        if scales is self._scales[1]:
            return [(active, self._scales[0])]
        return divisor_classes(scales[g.global_index], active)

    def _unscale_classes(self, g, scales):
        """The classes of ``g``'s tensors for a pass that unscales only in the fixed profile
        (the hooks' view of the gradient)."""
        active = numpy.ones(len(g.entries), dtype=numpy.uint8)
        if not self.semantics.hooks_see_unscaled:
            return [(active, None)]
        return self._classes(g, scales, active)

    def _sums_of_squares(self, hooks, scales, bad):
        """sums_of_squares before combining; with ``bad`` (entry-ordered booleans), the
        non-finite flags too."""
        gsq = numpy.zeros(len(self.entries))
        psq = numpy.zeros(len(self.entries))
        for g in self.groups:
            n = len(g.entries)
            for mask, scale in self._unscale_classes(g, scales):
                spec = self.args(g, active=mask, hooks=hooks)
                self._set_unscale(spec, g, scale, hooks_only=True)
                out_g, address_g = self._out_array(g, n, numpy.float64)
                out_p, address_p = self._out_array(g, n, numpy.float64)
                spec.pointer("tensor_gsq", address_g, out_g)
                spec.pointer("tensor_psq", address_p, out_p)
                flags = None
                if bad is not None:
                    flags, address_f = self._out_array(g, n, numpy.uint8)
                    if getattr(g.backend, "reduce_checks_finite", False) and not self._viewed_as_fp32(g):
                        spec.pointer("tensor_nonfinite", address_f, flags)
                    else:
                        check = self.args(g)
                        check.pointer("tensor_nonfinite", address_f, flags)
                        g.backend.check_finite(g.mode, check)
                g.backend.reduce(self.kernel_mode(g), spec)
                chosen = mask.astype(bool)
                gsq[g.global_index[chosen]] = g.backend.to_host(out_g)[:n][chosen]
                psq[g.global_index[chosen]] = g.backend.to_host(out_p)[:n][chosen]
                if flags is not None:
                    bad[g.global_index] |= numpy.asarray(g.backend.to_host(flags)[:n]).astype(bool)
        return gsq, psq

    def materialize_in_place(self, hooks, scales=None):
        """Apply ``hooks`` to every ``p.grad`` in place (used around custom hooks); in the
        fixed profile, with ``scales`` given, each gradient's loss scale is divided out
        first (not for gradients in the fp32 view, which are unscaled already)."""
        if self.average_factor is not None:
            raise RuntimeError("the gradients hold sums to be averaged as the kernels read them "
                               "(average_factor); they cannot be rewritten in place")
        for g in self.groups:
            if scales is not None and self._viewed_as_fp32(g):
                continue
            classes = self._unscale_classes(g, scales) if scales is not None else [(None, None)]
            for mask, scale in classes:
                spec = self.args(g, active=mask, hooks=hooks)
                self._set_unscale(spec, g, scale, hooks_only=True)
                spec.table("grad_out", spec.tables["grad"])
                spec.out_param_dtype = 1
                g.backend.materialize(self.kernel_mode(g), spec)

    def _set_average(self, spec):
        """The mean over ranks read into the gradient load (``average_factor``)."""
        spec.average = int(self.average_factor is not None)
        spec.average_factor = 0.0 if self.average_factor is None else float(self.average_factor)

    def _set_unscale(self, spec, g, loss_scale, hooks_only=False):
        """Loss-scale division: before the hooks where the profile has them see unscaled
        gradients, else after them (in the update)."""
        spec.unscale = 0
        if loss_scale is None:
            return
        first = self.semantics.hooks_see_unscaled
        if hooks_only and not first:
            return
        spec.unscale = 1
        spec.unscale_first = int(first)
        divide_dtype = F32 if g.master is not None else g.dtype
        if first:
            divide_dtype = hook_dtype(g.mode, g.dtype)
        if g.zero_d:
            # NumPy 1.x: a 0-d gradient and the scale are both scalars, so the
            # quotient is float64 (the scale is not rounded to the gradient's dtype).
            divide_dtype = F64
        spec.unscale_divisor = float(divide_dtype.type(loss_scale))

    @staticmethod
    def _kernel_table(g):
        update_dtype = F32 if g.master is not None else g.dtype
        table = g.rule_cls.kernel_table(g.raw, g.t.astype(numpy.float64), g.extras, update_dtype)
        return numpy.ascontiguousarray(table, dtype=numpy.float64)

    def _update_spec(self, g, active, hooks):
        """The StepSpec of ``g``'s update. Without hook ops, the last one is reused when
        the same tensors step on the same gradient addresses: its tables then stay
        placed, and only the scalars change."""
        if hooks:
            return self.args(g, active=active, hooks=hooks)
        key = (active.tobytes(), g.grad_ptrs.tobytes(), self._viewed_as_fp32(g))
        if g.update_spec is not None and g.update_spec[0] == key:
            spec = g.update_spec[1]
            spec.grads = g.grad_keep  # same addresses; the current arrays are kept
            return spec
        spec = self.args(g, active=active)
        g.update_spec = key, spec
        return spec

    def update(self, hooks, scales, hooked_rules_path, skip=None):
        """One fused step of every group. Returns a Journal of the host bookkeeping done.

        ``scales``: the loss scale each gradient carries (``loss_scales``), divided out.
        ``skip`` (a device flag, asynchronous backends only): the kernels read it and do
        nothing when it is set; the host does its bookkeeping as if the step went ahead
        and undoes it with ``Journal.roll_back`` once the flag is known to be set.
        """
        journal = Journal()
        for g in self.groups:
            active = self.stepping(g)
            slow = numpy.flatnonzero(active if self._viewed_as_fp32(g) else active & g.hooked)
            if len(slow) and skip is not None:
                raise RuntimeError("rules with their own hooks need the skip decision on the host")
            active[slow] = 0
            stepped = numpy.flatnonzero(active)
            if len(stepped):
                if skip is not None:  # only a step the device may skip can need undoing
                    journal.record(g, stepped)
                for i in stepped[g.initialized[stepped] == 0]:
                    g.initialize(i)
                if g.master is not None:
                    for i in stepped[g.master_ready[stepped] == 0]:
                        g.prepare_master(i)
                g.t[stepped] += 1
                table = self._kernel_table(g)
                for mask, scale in self._classes(g, scales, active):
                    spec = self._update_spec(g, mask, hooks)
                    self._set_average(spec)
                    self._set_unscale(spec, g, scale)
                    spec.refill("hparams", table)
                    g.backend.update(g.kernel_id, g.mode, spec, skip)
                g.rule_cls.after_step(g.raw, g.extras, active.astype(bool))
            for i in slow.tolist():
                hooked_rules_path(self, g, i, hooks, scales[g.global_index[i]])
        return journal

    def update_one_from_gradient(self, g, i, grad):
        """Step tensor ``i`` of ``g`` from a ready gradient (hooked, unscaled, in
        the update's dtype: fp32 with a master, else the parameter dtype)."""
        n = len(g.entries)
        active = numpy.zeros(n, dtype=numpy.uint8)
        active[i] = 1
        grad = g.backend.xp.ascontiguousarray(grad)
        ptrs = numpy.zeros(n, dtype=numpy.uint64)
        ptrs[i] = g.backend.pointer(grad)
        if g.master is not None:
            spec = self.args(g, active=active, grad_ptrs=ptrs, param=g.master)
            spec.master = None
            mode = abi.MODE_FLOAT32
        else:
            spec = self.args(g, active=active, grad_ptrs=ptrs)
            mode = g.mode
        spec.unscale = spec.average = 0
        spec.table("hparams", self._kernel_table(g))
        spec.keep.append(grad)
        g.backend.update(g.kernel_id, mode, spec)
        if g.master is not None:
            g.param_view(i)[...] = g.master_view(i)
        g.rule_cls.after_step(g.raw, g.extras, active.astype(bool))

    def enter_fp32_view(self, scales, step_goes_ahead):
        """Fixed profile, custom optimizer hooks: every fp16 parameter with an fp32 master
        shows its master as its array and its unscaled gradient in fp32 (the working
        parameter the hooks act on). Returns what to restore (``leave_fp32_view``)."""
        originals = []
        for g in self.groups:
            if g.master is None:
                continue
            self.prepare_masters(step_goes_ahead)
            for i, e in enumerate(g.entries):
                grad32 = self.gradient_for_rule(g, i, (), scales[e.index])
                originals.append((e, e.grad()))
                e.kind.adopt(e.param, g.master_view(i))
                e.set_grad(grad32)
        self.fp32_view = bool(originals)
        if self.fp32_view:
            self.collect_grads()
        return originals

    def leave_fp32_view(self, originals):
        self.fp32_view = False
        for e, grad in originals:
            e.kind.adopt(e.param, e.group.views[e.position])
            e.set_grad(grad)

    def gradient_for_rule(self, g, i, hooks, loss_scale):
        """Tensor ``i``'s gradient as its rule sees it: hooked, unscaled, fp32 with a master.
        ``loss_scale``: the scale it carries (NaN or None: unscaled)."""
        n = len(g.entries)
        active = numpy.zeros(n, dtype=numpy.uint8)
        active[i] = 1
        out_dtype = F32 if g.master is not None else g.dtype
        out = g.backend.xp.empty(g.shapes[i], dtype=out_dtype)
        outs = numpy.zeros(n, dtype=numpy.uint64)
        outs[i] = g.backend.pointer(out)
        spec = self.args(g, active=active, hooks=hooks)
        scale = None if loss_scale is None or numpy.isnan(loss_scale) else float(loss_scale)
        self._set_unscale(spec, g, scale)
        spec.table("grad_out", outs)
        spec.out_param_dtype = int(g.master is None)
        spec.keep.append(out)
        g.backend.materialize(g.mode, spec)
        return out


class Journal(object):
    """The host bookkeeping of one Engine.update, so that a step the device skipped
    can be undone: per group, the tensors stepped and what they held before."""

    def __init__(self):
        self.records = []
        self.masters_marked = []  # (group, index) marked ready by prepare_masters

    def record(self, g, stepped):
        self.records.append((g, stepped, g.initialized[stepped].copy(), g.master_ready[stepped].copy(),
                             {name: values.copy() for name, values in g.extras.items()}))

    def roll_back(self):
        """Undo the counters, first-update marks and per-rule scalars (the kernels,
        having read the skip flag, changed no buffer)."""
        for g, stepped, initialized, master_ready, extras in self.records:
            g.t[stepped] -= 1
            g.initialized[stepped] = initialized
            g.master_ready[stepped] = master_ready
            for name, values in extras.items():
                g.extras[name][...] = values
        for g, i in self.masters_marked:
            g.master_ready[i] = 0
