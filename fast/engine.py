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

from fast import backends, hyperparameter
from fast.backends import cpu as cpu_backend
from fast.backends.step import StepSpec
from fast.parameter import array_device, check_grad

CHUNK = 1 << 15
F16, F32, F64 = numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)


def dtype_mode(dtype, use_master, profile):
    """Kernel mode for a parameter dtype (see cpu_driver.cpp)."""
    if dtype == F64:
        return cpu_backend.MODE_FLOAT64
    if dtype == F32:
        return cpu_backend.MODE_FLOAT32
    if use_master:
        return cpu_backend.MODE_FP16_MASTER_FIXED if profile == "fixed" else cpu_backend.MODE_FP16_MASTER
    return cpu_backend.MODE_FP16


def has_master(mode):
    return mode in (cpu_backend.MODE_FP16_MASTER, cpu_backend.MODE_FP16_MASTER_FIXED)


def hook_dtype(mode, dtype):
    """The dtype optimizer hooks see the gradient in (the dtype noise is drawn in)."""
    return F32 if mode == cpu_backend.MODE_FP16_MASTER_FIXED else dtype


class Entry(object):
    """One parameter known to the engine, with its global position."""
    __slots__ = ("index", "name", "param", "rule")

    def __init__(self, index, name, param, rule):
        self.index, self.name, self.param, self.rule = index, name, param, rule


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

    def __init__(self, backend, rule_cls, kernel_id, mode, dtype, state_names, entries):
        self.backend = backend
        self.rule_cls = rule_cls
        self.kernel_id = kernel_id
        self.mode = mode
        self.dtype = dtype
        self.state_names = tuple(state_names)
        self.entries = entries
        self.global_index = numpy.asarray([e.index for e in entries], dtype=numpy.int64)
        self.shapes = [tuple(e.param.data.shape) for e in entries]
        #: every tensor is 0-d (the engine groups 0-d parameters apart: NumPy 1.x
        #: divides them by the loss scale in float64)
        self.zero_d = all(len(shape) == 0 for shape in self.shapes)
        self.sizes = [int(numpy.prod(s, dtype=numpy.int64)) for s in self.shapes]
        self.offsets = numpy.zeros(len(entries), dtype=numpy.int64)
        if entries:
            self.offsets[1:] = numpy.cumsum(self.sizes)[:-1]
        total = int(sum(self.sizes))
        self.param = backend.allocate(total, dtype, 0)
        self.master = backend.allocate(total, F32, 1) if has_master(mode) else None
        self.state_dtype = F32 if self.master is not None else dtype
        self.state = [backend.allocate(total, self.state_dtype, 2 + k) for k in range(len(self.state_names))]
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
        self.engine = None

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
        self.hooked = numpy.asarray([bool(e.rule._hookable) for e in self.entries], dtype=bool)

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


def _snapshot(entry):
    """Everything the engine holds for one rule, as copies."""
    rule = entry.rule
    snap = {"t": rule.t, "enabled": rule.enabled, "extras": {}}
    group = rule._group
    if group is not None:
        i = rule._index
        snap["initialized"] = bool(group.initialized[i])
        snap["state"] = {k: v.copy() for k, v in group.state_views(i).items()}
        ready = group.master is not None and group.master_ready[i]
        snap["master"] = group.master_view(i).copy() if ready else None
        snap["extras"] = {k: float(v[i]) for k, v in group.extras.items()}
    else:
        snap["initialized"] = False
        snap["extras"] = dict(rule._unbound_extras)
    snap["data"] = entry.param.data.copy()
    return snap


def _restore(group, i, entry, snap):
    view = group.param_view(i)
    view[...] = snap["data"]
    param = entry.param
    if hasattr(param, "_adopt_storage"):
        param._adopt_storage(view)
    else:
        param.array = view
    group.t[i] = snap["t"]
    group.enabled[i] = snap["enabled"]
    for k, v in snap["extras"].items():
        if k in group.extras:
            group.extras[k][i] = v
    if snap["initialized"]:
        for k, v in group.state_views(i).items():
            old = snap["state"].get(k)
            v[...] = old if old is not None else group.rule_cls.state_fill.get(k, 0)
        if group.master is not None and snap["master"] is not None:
            group.master_view(i)[...] = snap["master"]
            group.master_ready[i] = 1
        group.initialized[i] = 1
    entry.rule._group, entry.rule._index = group, i


def _set_grad_unchecked(param, grad):
    if hasattr(param, "_grad"):
        param._grad = grad
    else:
        param.grad = grad


class Engine(object):
    """Owns the groups of one optimizer and runs their kernels."""

    #: whether the optimizer must decide a dynamic loss-scaling skip on the host (an engine
    #: whose non-finite check is combined over processes cannot leave it on the device)
    decides_skip_on_host = False

    def __init__(self, profile):
        self.profile = profile
        self.entries = []
        self.groups = []
        self.seen_generation = None
        # fixed profile with a custom optimizer hook: fp16-master groups expose
        # unscaled fp32 gradients, and their kernels run on the master as fp32.
        self.fp32_view = False
        #: the position of the entry where this step stops (Chainer raises in its rule's
        #: update_core: the entries before it update, it and those after it do not), or None
        self.stop_at = None

    def settle(self):
        """Settle a step whose skip decision is still on the device (the optimizer
        installs its own; an engine alone has nothing pending)."""

    def stepping(self, g):
        """Which of ``g``'s tensors this step updates: the enabled ones before ``stop_at``."""
        active = g.enabled.copy()
        if self.stop_at is not None:
            active[g.global_index >= self.stop_at] = 0
        return active

    def locate(self, position):
        """(group, index in the group) of the entry at ``position``."""
        for g in self.groups:
            found = numpy.flatnonzero(g.global_index == position)
            if len(found):
                return g, int(found[0])
        raise IndexError("no entry at position {}".format(position))

    def _viewed_as_fp32(self, g):
        return self.fp32_view and g.master is not None

    def kernel_mode(self, g):
        """The mode a pass over ``g`` runs in (fp32 on the master in the fp32 view)."""
        return cpu_backend.MODE_FLOAT32 if self._viewed_as_fp32(g) else g.mode

    # --- layout ---
    def bind(self, named_params):
        """Take the (name, param, rule) triples of a new setup."""
        self.entries = [Entry(i, n, p, r) for i, (n, p, r) in enumerate(named_params)]
        for e in self.entries:
            if array_device(e.param.data) is None:
                raise TypeError("parameter {!r} holds a {}, not a NumPy or CuPy array".format(
                    e.name, type(e.param.data).__name__))
        self._regroup()

    def _layout_key(self, entry):
        rule, dtype = entry.rule, entry.param.data.dtype
        use_master = rule._use_fp32_update and dtype == F16
        hp = rule.hyperparam
        return (array_device(entry.param.data), dtype_mode(dtype, use_master, self.profile), str(dtype),
                type(rule), rule.kernel_id(hp), tuple(rule.state_names(hp)), entry.param.data.ndim == 0)

    def _regroup(self):
        snaps = [_snapshot(e) for e in self.entries]
        buckets = {}
        for e in self.entries:
            buckets.setdefault(self._layout_key(e), []).append(e)
        groups = []
        for (_, mode, dtype, rule_cls, kernel_id, names, _), members in buckets.items():
            backend = backends.for_array(members[0].param.data)
            g = Group(backend, rule_cls, kernel_id, mode, numpy.dtype(dtype), names, members)
            g.engine = self
            for i, e in enumerate(members):
                _restore(g, i, e, snaps[e.index])
            groups.append(g)
        self.groups = groups
        self.keys = [self._layout_key(e) for e in self.entries]
        for g in groups:
            g.refresh_hparams()
        self.seen_generation = hyperparameter.generation()

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
            for i, e in enumerate(g.entries):
                grad = e.param.grad
                if grad is None and missing_as_zero:
                    grad = xp.zeros(g.shapes[i], dtype=expected_dtype)
                if type(grad) is not xp.ndarray or grad.dtype != expected_dtype or grad.shape != g.shapes[i]:
                    if fp32_view:
                        raise TypeError("gradient of parameter {!r} must stay a float32 array of shape {} "
                                        "while the hooks run".format(e.name, g.shapes[i]))
                    check_grad(e.param, grad, e.name)
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
        spec.table("tensor_active", active)
        spec.table("grad", g.grad_ptrs if grad_ptrs is None else grad_ptrs)
        spec.grads = g.grad_keep
        spec.pointer("param", pointer(param), param)
        if g.master is not None and not self._viewed_as_fp32(g):
            spec.pointer("master", pointer(g.master), g.master)
        for k, buf in enumerate(g.state):
            spec.args.state[k] = pointer(buf)
        spec.hooks_read_master = int(g.master is not None and self.profile == "fixed"
                                     and not self._viewed_as_fp32(g))
        kinds, ha, hb, noise = self._hook_tables(g, hooks)
        spec.n_hooks = len(hooks)
        for field, table in (("hook_kind", kinds), ("hook_a", ha), ("hook_b", hb), ("hook_noise", noise)):
            spec.table(field, table)
        spec.keep.append(hooks)
        return spec

    def _hook_tables(self, g, hooks):
        from fast import hook_ops  # hook_ops imports this module
        if not hooks and g.no_hook_tables is not None:
            return g.no_hook_tables
        n = len(g.entries)
        kinds = numpy.zeros(max(len(hooks), 1), dtype=numpy.int32)
        ha = numpy.zeros((max(len(hooks), 1), n), dtype=numpy.float64)
        hb = numpy.zeros_like(ha)
        noise = numpy.zeros((max(len(hooks), 1), n), dtype=numpy.uint64)
        for k, op in enumerate(hooks):
            kinds[k] = hook_ops.kind_for(op, g)
            ha[k], hb[k], ptrs = op.tables(g)
            if ptrs is not None:
                noise[k] = ptrs
        if not hooks:
            g.no_hook_tables = kinds, ha, hb, noise  # read-only: kernels only read tables
        return kinds, ha, hb, noise

    # --- what hooks see of a parameter (an engine over pieces of parameters overrides these) ---
    def hook_shape(self, entry):
        """The shape of the parameter a hook draws per-parameter values for (noise)."""
        return tuple(entry.param.data.shape)

    def local_part(self, entry, whole):
        """The part of ``whole`` (an array of ``hook_shape(entry)``) this engine's tensor
        holds, contiguous."""
        return whole

    def _out_array(self, g, n, dtype):
        out = g.backend.xp.zeros(max(n, 1), dtype=dtype)
        return out, g.backend.pointer(out)

    # --- passes ---
    def nonfinite_names(self):
        """Names of the parameters whose gradient holds inf or NaN (read on the host)."""
        flags = self.check_finite_on_device(found=None)
        bad = self.to_host_flags([g.backend.to_host(f) for g, f in zip(self.groups, flags)])
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

    def sums_of_squares(self, hooks, unscale):
        """Per-parameter (sum g^2, sum p^2) of the gradient after ``hooks``, in entry order,
        on the host (a GPU group's sums are copied back: the hooks' rates are formed on the
        host, as Chainer forms them)."""
        return self._sums_of_squares(hooks, unscale, None)

    def nonfinite_names_and_sums_of_squares(self, hooks, unscale):
        """``(self.nonfinite_names(), self.sums_of_squares(hooks, unscale))``, from one read
        of the gradients where the group's backend can flag non-finite values in its
        reduction pass (the CPU's; other groups make the two passes). The flags are those
        of the raw gradients, before unscaling and ``hooks``.

        A subclass that overrides ``nonfinite_names`` or ``sums_of_squares`` (to combine
        their results over processes, say) and not this method gets its two overrides
        called, in that order; an override of this method returns the same pair."""
        cls = type(self)
        if (cls.nonfinite_names_and_sums_of_squares is Engine.nonfinite_names_and_sums_of_squares
                and (cls.nonfinite_names is not Engine.nonfinite_names
                     or cls.sums_of_squares is not Engine.sums_of_squares)):
            return self.nonfinite_names(), self.sums_of_squares(hooks, unscale)
        bad = numpy.zeros(len(self.entries), dtype=bool)
        sums = self._sums_of_squares(hooks, unscale, bad)
        return [e.name for e in self.entries if bad[e.index]], sums

    def _sums_of_squares(self, hooks, unscale, bad):
        """sums_of_squares; with ``bad`` (entry-ordered booleans), the non-finite flags too."""
        gsq = numpy.zeros(len(self.entries))
        psq = numpy.zeros(len(self.entries))
        for g in self.groups:
            spec = self.args(g, hooks=hooks)
            self._set_unscale(spec, g, unscale, hooks_only=True)
            out_g, address_g = self._out_array(g, len(g.entries), numpy.float64)
            out_p, address_p = self._out_array(g, len(g.entries), numpy.float64)
            spec.pointer("tensor_gsq", address_g, out_g)
            spec.pointer("tensor_psq", address_p, out_p)
            flags = None
            if bad is not None:
                flags, address_f = self._out_array(g, len(g.entries), numpy.uint8)
                if getattr(g.backend, "reduce_checks_finite", False) and not self._viewed_as_fp32(g):
                    spec.pointer("tensor_nonfinite", address_f, flags)
                else:
                    check = self.args(g)
                    check.pointer("tensor_nonfinite", address_f, flags)
                    g.backend.check_finite(g.mode, check)
            g.backend.reduce(self.kernel_mode(g), spec)
            gsq[g.global_index] = g.backend.to_host(out_g)[:len(g.entries)]
            psq[g.global_index] = g.backend.to_host(out_p)[:len(g.entries)]
            if flags is not None:
                bad[g.global_index] = numpy.asarray(g.backend.to_host(flags)[:len(g.entries)]).astype(bool)
        return gsq, psq

    def materialize_in_place(self, hooks, loss_scale=None):
        """Apply ``hooks`` to every ``p.grad`` in place (used around custom hooks);
        in the fixed profile a loss scale given here is divided out first (not
        for gradients in the fp32 view, which are unscaled already)."""
        for g in self.groups:
            if loss_scale is not None and self._viewed_as_fp32(g):
                continue
            spec = self.args(g, hooks=hooks)
            self._set_unscale(spec, g, loss_scale, hooks_only=True)
            spec.table("grad_out", spec.tables["grad"])
            spec.out_param_dtype = 1
            g.backend.materialize(self.kernel_mode(g), spec)

    def _set_unscale(self, spec, g, loss_scale, hooks_only=False):
        """Loss-scale division: before the hooks (fixed) or after them (chainer)."""
        spec.unscale = 0
        if loss_scale is None:
            return
        fixed = self.profile == "fixed"
        if hooks_only and not fixed:
            return
        spec.unscale = 1
        spec.unscale_first = int(fixed)
        divide_dtype = F32 if g.master is not None else g.dtype
        if fixed:
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

    def update(self, hooks, loss_scale, hooked_rules_path, skip=None):
        """One fused step of every group. Returns a Journal of the host bookkeeping done.

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
                spec = self._update_spec(g, active, hooks)
                self._set_unscale(spec, g, loss_scale)
                spec.refill("hparams", self._kernel_table(g))
                g.backend.update(g.kernel_id, g.mode, spec, skip)
                g.rule_cls.after_step(g.raw, g.extras, active.astype(bool))
            for i in slow.tolist():
                hooked_rules_path(self, g, i, hooks, loss_scale)
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
            mode = cpu_backend.MODE_FLOAT32
        else:
            spec = self.args(g, active=active, grad_ptrs=ptrs)
            mode = g.mode
        spec.unscale = 0
        spec.table("hparams", self._kernel_table(g))
        spec.keep.append(grad)
        g.backend.update(g.kernel_id, mode, spec)
        if g.master is not None:
            g.param_view(i)[...] = g.master_view(i)
        g.rule_cls.after_step(g.raw, g.extras, active.astype(bool))

    def enter_fp32_view(self, loss_scale, step_goes_ahead):
        """Fixed profile, custom optimizer hooks: give every fp16-master parameter an
        unscaled fp32 gradient (returned: the original gradients, to restore)."""
        originals = []
        for g in self.groups:
            if g.master is None:
                continue
            self.prepare_masters(step_goes_ahead)
            for i, e in enumerate(g.entries):
                grad32 = self.gradient_for_rule(g, i, (), loss_scale)
                originals.append((e.param, e.param.grad))
                _set_grad_unchecked(e.param, grad32)
        self.fp32_view = bool(originals)
        if self.fp32_view:
            self.collect_grads()
        return originals

    def leave_fp32_view(self, originals):
        self.fp32_view = False
        for param, grad in originals:
            _set_grad_unchecked(param, grad)

    def gradient_for_rule(self, g, i, hooks, loss_scale):
        """Tensor ``i``'s gradient as its rule sees it: hooked, unscaled, fp32 with a master."""
        n = len(g.entries)
        active = numpy.zeros(n, dtype=numpy.uint8)
        active[i] = 1
        out_dtype = F32 if g.master is not None else g.dtype
        out = g.backend.xp.empty(g.shapes[i], dtype=out_dtype)
        outs = numpy.zeros(n, dtype=numpy.uint64)
        outs[i] = g.backend.pointer(out)
        spec = self.args(g, active=active, hooks=hooks)
        self._set_unscale(spec, g, loss_scale)
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
