"""``GradientMethod``: Chainer's optimizer control flow over the fused engine.

One ``update()`` does, in Chainer's order (docs/fast.md):
 1. (lossfun given) compute the loss, clear the grads, backward with the scale;
 2. take in what happened to the parameters (a lazily initialized Chainer parameter that
    now has an array joins the engine; a replaced array is copied in); fill missing grads
    with zeros; validate every grad (shape, dtype, device);
 3. dynamic loss scaling: one compiled pass flags non-finite gradients (the
    reduction pass of GradientClipping or GradientLARS where one of them is
    planned: see DeferredCheck);
 4. 'pre' optimizer hooks: fast's own hooks are planned into ops the update
    kernel applies as it loads each gradient (their reductions run first, one
    pass each); any other hook is called as Chainer calls it, on the grads;
 5. ``t += 1`` (also on a skipped step);
 6. unless skipped: one fused kernel call per group (unscale, hooks, update,
    master -> fp16 cast); rules with their own hooks take a per-parameter path; the rule
    of a parameter that still has no array counts the step (Chainer's ``rule.t += 1``)
    and runs its hooks, and nothing else;
 7. 'post' hooks; 8. the loss-scale schedule.
What Chainer's ``update_core`` rejects (eps too small for the dtype) is found
before the step and raised where Chainer raises it: after step 5, once the
rules before the rejected one have updated and the rejected rule's ``t``,
state and master have changed (``GradientMethod._rejected_rule``). Every
other error (a bad gradient, a non-finite hyperparameter) is raised before
anything changes.

Each gradient is divided by the loss scale it carries (fast.boundary): a fast.Parameter's
by the optimizer's loss scale, a chainer.Parameter's by the scale ``backward(loss_scale=)``
recorded on it, as Chainer's update rule does.

On a GPU with dynamic loss scaling the host does not wait for step 3: the
check raises a device flag that the update kernels read (they do nothing
when it is set), the host does the step's bookkeeping (rule counters, state
creation, the masters) as if the step went ahead, and it settles the step
(undoing that bookkeeping if the step was skipped, the warnings, the
loss-scale schedule) from an asynchronous copy of the flags the next time
anything depends on the outcome: the next ``update``, ``loss_scale``,
``rule.t``, ``rule.state``, serialization. Steps whose control flow needs
the outcome on the host (rule-level hooks, custom 'pre' hooks, a parameter
still without an array) settle at once.
"""
import warnings

import numpy

from fast import boundary, hyperparameter, profiles, serializers
from fast.engine import Engine, F16, F32, Journal, LocalScope
from fast.hook_ops import PlanContext
from fast.hookable import Hookable
from fast.loss_scaling import LossScaling
from fast.optimizer_hooks import is_fused
from fast.parameter import array_device



def named_parameters(target):
    """(name, parameter) pairs of a mapping, a Link-like object or an iterable. A Chainer
    parameter may still have no array (a lazily initialized link)."""
    if isinstance(target, (str, bytes)) or not (hasattr(target, "namedparams") or hasattr(target, "items")
                                                or hasattr(target, "__iter__")):
        raise TypeError("optimization target must be a link (an object with namedparams()), a mapping of "
                        "Parameters or an iterable of Parameters; got {}".format(type(target).__name__))
    if hasattr(target, "namedparams"):
        pairs = list(target.namedparams())
    elif hasattr(target, "items"):
        pairs = [("/" + str(k).lstrip("/"), p) for k, p in target.items()]
    else:
        pairs = [("/{}".format(i), p) for i, p in enumerate(target)]
    names = set()
    for name, p in pairs:
        if not boundary.is_parameter(p):
            raise TypeError("target entry {!r} is not a Parameter (got {})".format(name, type(p).__name__))
        array = boundary.array(p)
        if array is not None and array_device(array) is None:
            raise TypeError("parameter {!r} holds a {}, not a NumPy or CuPy array".format(name, type(array).__name__))
        if name in names:
            raise ValueError("duplicate parameter name {!r}".format(name))
        names.add(name)
    if len({id(p) for _, p in pairs}) != len(pairs):
        raise ValueError("the same Parameter appears twice in the target")
    return pairs


def warn_nonfinite(name, iteration, loss_scale):
    """Chainer's warning for a non-finite gradient found by dynamic loss scaling."""
    warnings.warn("Non finite number found in param.grad of {} (iteration: {}, loss_scale: {})".format(
        name, iteration, loss_scale))


class RuleParam(object):
    """What a rule's own hooks see: ``data`` (master or parameter), ``grad``
    (unscaled) and ``_loss_scale``, the scale Chainer's parameter would carry
    (set by ``backward``; None on an fp32 master, which Chainer creates
    untagged, and always None in the ``fixed`` profile)."""

    def __init__(self, name, data, grad, rule, loss_scale=None):
        self.name, self.data, self.grad, self.update_rule = name, data, grad, rule
        self._loss_scale = loss_scale

    @property
    def array(self):
        return self.data


def _unscaled(scales):
    return numpy.full_like(scales, numpy.nan)


class GradientMethod(object):
    """Base class of the optimizers (Chainer's GradientMethod)."""

    rule_class = None

    def __init__(self, profile="chainer"):
        self._semantics = profiles.named(profile)
        self.hyperparam = hyperparameter.Hyperparameter()
        self.target = None
        self.t = 0
        self.epoch = 0
        self.use_auto_new_epoch = False
        self._hookable = None
        self._use_fp32_update = False
        self._loss = LossScaling()
        self._engine = None
        self._rejection = (None, None)

    @property
    def profile(self):
        """'chainer' (Chainer 7.8.1, quirks included) or 'fixed' (read-only)."""
        return self._semantics.name

    @property
    def semantics(self):
        """What the profile decides (fast.profiles.Profile)."""
        return self._semantics

    def _set_hyperparameters(self, **values):
        for name, value in values.items():
            if isinstance(value, float) and not numpy.isfinite(value):
                raise ValueError("{} must be finite, got {}".format(name, value))
        for name, value in values.items():
            setattr(self.hyperparam, name, value)

    # --- the internal interface (fast.serializers, fast.distributed; docs/fast.md) ---
    @property
    def engine(self):
        """The engine (fast.engine.Engine) holding the parameters, after setup; else None."""
        return self._engine

    @property
    def scaling(self):
        """The loss-scaling state (fast.loss_scaling.LossScaling), after settling a step
        the device may still skip; change it only through its methods."""
        self._settle()
        return self._loss

    def named_parameters(self):
        """(name, parameter) of every parameter set up, in the target's order."""
        self._check_set_up()
        return [(e.name, e.param) for e in self._engine.members]

    def named_hooks(self):
        """(timing, name, hook) of every optimizer hook, in the order they run."""
        self._check_set_up()
        return [(timing, name, hook) for timing in ("pre", "post")
                for name, hook in self._hookable.hooks[timing].items()]

    def state_nbytes(self):
        """Bytes of fp32 master and optimizer state the engine holds (a multi-node
        optimizer's: this rank's)."""
        self._check_set_up()
        return sum((g.master.nbytes if g.master is not None else 0) + sum(b.nbytes for b in g.state)
                   for g in self._engine.groups)

    # --- Chainer's attributes that wrappers and extensions read ---
    @property
    def _loss_scale(self):
        """The loss scale (None when off): Chainer's attribute, read by ChainerMN's
        multi-node optimizer to backward with it."""
        return self.loss_scale

    # --- set-up ---
    def create_update_rule(self):
        return self.rule_class(self.hyperparam, profile=self.profile)

    def setup(self, target, *, scope=None):
        """Create a rule per parameter and move the parameters into flat buffers.

        ``scope`` (fast.engine.LocalScope by default): what the engine's tensors are part
        of; fast.distributed's ZeRO passes a scope whose tensors are pieces of the ranks'
        parameters."""
        pairs = named_parameters(target)
        triples = []
        for name, p in pairs:
            rule = self.create_update_rule()
            if self._use_fp32_update:
                rule.use_fp32_update()
            triples.append((name, p, rule))
        self._settle()
        engine = Engine(self._semantics, scope)
        engine.bind(triples)
        for name, p, rule in triples:
            p.update_rule = rule
        self._engine, self.target = engine, target
        self.t = 0
        self.epoch = 0
        self._hookable = Hookable(invalid_timing_fallback=True)
        return self

    def _check_set_up(self):
        if self._hookable is None:
            raise RuntimeError("Optimizer is not set up. Call `setup` method.")

    def use_fp32_update(self, flag=True):
        """Use fp32 masters for fp16 parameters (from the next step)."""
        self._settle()
        self._use_fp32_update = flag
        if self._engine is not None:
            for e in self._engine.members:
                e.rule.use_fp32_update(flag)
            self._engine.sync_hyperparameters()

    # --- pickling and copying: the engine is rebuilt from the parameters and rules ---
    def __getstate__(self):
        self._settle()
        state = self.__dict__.copy()
        engine = state.pop("_engine")
        state["_rejection"] = (None, None)
        members = None
        if engine is not None:
            if not isinstance(engine.scope, LocalScope):
                raise TypeError("the optimizer of a fast.distributed multi-node optimizer holds one rank's "
                                "pieces and cannot be pickled or copied; save it with fast.serializers.save_npz")
            members = [(e.name, e.param, e.rule) for e in engine.members]
        state["_members"] = members
        return state

    def __setstate__(self, state):
        members = state.pop("_members")
        self.__dict__.update(state)
        self._engine = None
        if members is not None:
            engine = Engine(self._semantics)
            engine.bind(members)
            self._engine = engine

    # --- hooks ---
    def add_hook(self, hook, name=None, timing="auto"):
        self._check_set_up()
        self._hookable.add(hook, name, timing)

    def remove_hook(self, name):
        self._check_set_up()
        self._hookable.remove(name)

    def call_hooks(self, timing="pre"):
        """Run the hooks of ``timing`` on the current gradients (in place)."""
        self._check_set_up()
        self._settle()
        engine = self._engine
        engine.sync_parameters()
        engine.sync_hyperparameters()
        engine.fill_missing_grads()
        engine.collect_grads()
        self._run_hooks_in_place(self._hookable.get(timing), engine.loss_scales(self._loss.scale))

    def call_hook(self, hook):
        """Call one hook as Chainer does: per parameter (``hook(rule, param)``) when it has
        ``call_for_each_param``, else ``hook(optimizer)``."""
        if getattr(hook, "call_for_each_param", False):
            for e in self._engine.members:
                hook(e.rule, e.param)
        else:
            hook(self)

    def _run_hooks_in_place(self, hooks, scales):
        """Hooks one at a time on the gradients themselves (Chainer's way). ``scales``: the
        loss scale each gradient carries (NaN: already unscaled)."""
        for hook in hooks:
            if is_fused(hook):
                ctx = PlanContext(self, scales)
                hook.plan(ctx)
                if ctx.ops:
                    self._engine.materialize_in_place(ctx.ops)
            else:
                self.call_hook(hook)
            self._engine.fill_missing_grads()
            self._engine.collect_grads()

    # --- the step ---
    def reallocate_cleared_grads(self):
        """Give every parameter without a gradient a zero one (Chainer's name)."""
        self._check_set_up()
        self._engine.fill_missing_grads()

    def _rejected_rule(self):
        """The position of the first enabled rule, in the target's order, whose update
        Chainer's ``update_core`` would reject, or None. A non-finite hyperparameter (fast's
        own check) raises at once, before anything changes. Computed again only after a
        hyperparameter, the fp32 update or ``enabled`` changed."""
        key = hyperparameter.generation()
        if self._rejection[0] == key:
            return self._rejection[1]
        for e in self._engine.entries:
            if e.rule.enabled:
                e.rule.check_hyperparameters()
        rejected = None
        for e in self._engine.entries:
            if e.rule.enabled:
                try:
                    self._check_update(e)
                except (ValueError, AttributeError):
                    rejected = e.index
                    break
        self._rejection = key, rejected
        return rejected

    @staticmethod
    def _check_update(entry):
        """Raise what Chainer's ``update_core`` raises for the entry's rule (eps too small)."""
        rule, dtype = entry.rule, entry.group.dtype
        master = rule.uses_fp32_update and dtype == F16
        rule.check_update(dtype, F32 if master else dtype)

    def _stop_at_rejected_rule(self):
        """Make this step stop where Chainer's would raise: the rules before the rejected one
        update, it and the rules after it do not (the engine's ``stop_at``)."""
        self._engine.stop_at = self._rejected_rule()

    def _raise_rejected(self, ops, scales):
        """Chainer's rejected rule, midway: the rules of parameters still without arrays
        before it count the step, its ``t`` advances, its state and master are created and its
        'pre' hooks run, then ``update_core`` raises."""
        engine = self._engine
        entry = engine.entries[engine.stop_at]
        self._count_rules_without_arrays(before=entry)
        group, i = entry.group, entry.position
        self._begin_rule_step(engine, group, i, ops, scales[entry.index])
        self._check_update(entry)
        raise RuntimeError("rule {} was rejected before the step and passes now".format(entry.name))

    def update(self, lossfun=None, *args, **kwds):
        """One optimization step from the current (loss-scaled) gradients."""
        self._check_set_up()
        self._settle()
        if lossfun is not None:
            loss = lossfun(*args, **kwds)
            boundary.clear_grads(self.target, [e.param for e in self._engine.members])
            loss.backward(loss_scale=self._loss.scale)
            del loss
        engine = self._engine
        engine.sync_parameters()
        engine.sync_hyperparameters()
        engine.fill_missing_grads()
        engine.collect_grads()
        scales = engine.loss_scales(self._loss.scale)
        if self._skip_stays_on_device() and self._update_deciding_on_device(scales):
            return
        try:
            self._update_on_host(scales)
        finally:
            engine.stop_at = None

    def _update_on_host(self, scales):
        """Steps 3-8 of ``update`` with the skip decision taken on the host."""
        engine = self._engine
        pending = self._check_joining_hooks()
        if pending is None:
            self._flag_nonfinite_grads()
            if self.is_safe_to_update():
                self._stop_at_rejected_rule()
        ops, update_scales, originals = self._pre_hooks(scales, pending_check=pending)
        try:
            self.t += 1
            if self.is_safe_to_update():
                engine.update(ops, update_scales, self._hooked_rule_step)
                if engine.stop_at is not None:
                    self._raise_rejected(ops, update_scales)
                self._count_rules_without_arrays()
            engine.fill_missing_grads()
            post = self._hookable.get("post")
            if post:
                engine.collect_grads()
                self._run_hooks_in_place(post, scales if originals is None else _unscaled(scales))
        finally:
            if originals is not None:
                engine.leave_fp32_view(originals)
        self.update_loss_scale()

    def reads_gradients_only_in_kernels(self):
        """Whether the next ``update()`` reads every gradient through the engine's kernels
        alone: every 'pre' hook is one of fast's built-in (planned) hooks, there is no
        'post' hook, no rule has hooks of its own and every parameter has its array. Then
        nothing outside the kernels sees ``p.grad`` during the step, and the engine may read
        the gradients through a transformation of its own (``Engine.average_factor``)."""
        self._check_set_up()
        engine = self._engine
        return (all(is_fused(h) for h in self._hookable.get("pre")) and not self._hookable.get("post")
                and all(e.group is not None and not e.rule.has_hooks for e in engine.members))

    def _count_rules_without_arrays(self, before=None):
        """Chainer's rule update of a parameter that has no array yet: ``t`` advances and the
        rule's hooks run; nothing else happens. ``before``: only the parameters ahead of
        that entry in the target's order (a step Chainer stops midway)."""
        for e in self._engine.members:
            if e is before:
                break
            if e.group is None and e.rule.enabled:
                e.rule.t += 1
                for hook in e.rule.hooks("pre") + e.rule.hooks("post"):
                    hook(e.rule, e.param)

    def _skip_stays_on_device(self):
        """Whether this step can leave the skip decision to the device (see the module doc)."""
        engine = self._engine
        return (self._loss.dynamic and bool(engine.groups) and not engine.decides_skip_on_host
                and all(g.backend.asynchronous for g in engine.groups)
                and all(e.group is not None for e in engine.members)
                and not any(e.rule.has_hooks for e in engine.members)
                and all(is_fused(h) for h in self._hookable.get("pre")))

    def _update_deciding_on_device(self, scales):
        """Steps 3-7 of ``update`` with the non-finite check's outcome left on the device.
        False (nothing done) when a hyperparameter check fails: whether Chainer would raise
        depends on the outcome, so the caller takes the host path."""
        engine = self._engine
        backend = engine.groups[0].backend
        found = backend.xp.zeros(1, dtype=numpy.int32)
        flags = engine.check_finite_on_device(found)
        copies = [g.backend.start_copy_to_host(f) for g, f in zip(engine.groups, flags)]
        pending = PendingStep(engine, copies, self.t, self._loss.scale)
        try:
            if self._rejected_rule() is not None:
                return False
        except ValueError:
            return False
        ops, update_scales, _ = self._pre_hooks(scales, step_goes_ahead=True, journal=pending.journal)
        self.t += 1
        pending.journal.records += engine.update(ops, update_scales, self._hooked_rule_step, skip=found).records
        engine.hold(lambda: self._settle_step(pending))
        engine.fill_missing_grads()
        post = self._hookable.get("post")
        if post:
            engine.collect_grads()
            self._run_hooks_in_place(post, scales)
        return True

    def _settle(self):
        """Settle a step whose skip decision was left on the device, if there is one."""
        if self._engine is not None:
            self._engine.settle()

    def _settle_step(self, pending):
        """What a step whose skip decision was left on the device did, once its outcome is
        known (see the module doc)."""
        bad = pending.nonfinite()
        if bad.any():
            pending.journal.roll_back()
            self._loss.found_nonfinite()
            for e in pending.engine.entries:
                if bad[e.index]:
                    warn_nonfinite(e.name, pending.t, pending.scale)
        else:
            self._loss.begin_check()
        self.update_loss_scale()

    def _check_joining_hooks(self):
        """A DeferredCheck when dynamic loss scaling's non-finite check can be made in the
        reduction pass of a planned 'pre' hook (GradientClipping, GradientLARS), else None."""
        if not self._loss.dynamic:
            return None
        pre = self._hookable.get("pre")
        if not (all(is_fused(h) for h in pre) and any(h.plan_reads_gradients for h in pre)):
            return None
        return DeferredCheck(self)

    def _pre_hooks(self, scales, step_goes_ahead=None, journal=None, pending_check=None):
        """Run or plan the 'pre' optimizer hooks.

        Returns (ops for the fused pass, the loss scales the update still has to divide
        out, the views to restore after the step or None). All fused: nothing is run, the
        hooks become ops. Otherwise the hooks run one by one on the gradients, as in
        Chainer; in the fixed profile the gradients are unscaled first (fp16 parameters
        with a master show it, with an fp32 gradient).

        ``pending_check`` (a DeferredCheck, all hooks fused): the non-finite check
        is still to be made; the first reduction a hook asks for makes it in the same
        pass, and it is settled before a hook whose planning is not pure, or at the end.
        """
        engine, pre = self._engine, self._hookable.get("pre")
        if pending_check is not None:
            pending_check.journal = journal
            if self._semantics.hooks_see_masters and pre:
                engine.prepare_masters(False)  # the values the hooks read; marked once settled
            ctx = PlanContext(self, scales, pending_check)
            try:
                for hook in pre:
                    if not pending_check.done and not hook.plan_is_pure:
                        pending_check.settle()
                    hook.plan(ctx)
            finally:
                if not pending_check.done:
                    pending_check.settle()
            return ctx.ops, scales, None
        if step_goes_ahead is None:
            step_goes_ahead = self.is_safe_to_update()
        if self._semantics.hooks_see_masters and pre:
            engine.prepare_masters(step_goes_ahead, journal)
        if all(is_fused(h) for h in pre):
            ctx = PlanContext(self, scales)
            for hook in pre:
                hook.plan(ctx)
            return ctx.ops, scales, None
        originals = None
        if self._semantics.hooks_see_masters:
            originals = engine.enter_fp32_view(scales, self.is_safe_to_update())
        if self._semantics.hooks_see_unscaled:
            engine.materialize_in_place([], scales)
            engine.collect_grads()
            scales = _unscaled(scales)
        self._run_hooks_in_place(pre, scales)
        return [], scales, originals

    @staticmethod
    def _begin_rule_step(engine, group, i, ops, scale):
        """Chainer's per-rule sequence up to ``update_core``: ``t += 1``, the state and the
        master created on first use, the rule's 'pre' hooks on its hooked, unscaled gradient
        (fp32 with a master). ``scale``: the loss scale the gradient carries (NaN: unscaled).
        Returns what the hooks saw."""
        entry = group.entries[i]
        rule = entry.rule
        if not group.initialized[i]:
            group.initialize(i)
        group.prepare_master(i)
        group.t[i] += 1
        if engine.fp32_view and group.master is not None:
            grad = entry.grad()  # already unscaled fp32 and hooked
        else:
            grad = engine.gradient_for_rule(group, i, ops, scale)
        data = group.master_view(i) if group.master is not None else group.param_view(i)
        carried = None if numpy.isnan(scale) else float(scale)
        tagged_scale = carried if engine.semantics.weight_decay_scales_rate and group.master is None else None
        view = RuleParam(entry.param.name, data, grad, rule, tagged_scale)
        for hook in rule.hooks("pre"):
            hook(rule, view)
        return view

    @staticmethod
    def _hooked_rule_step(engine, group, i, ops, scale):
        """A parameter whose rule has hooks (or that the fp32 view steps one at a time):
        Chainer's per-rule sequence."""
        rule = group.entries[i].rule
        view = GradientMethod._begin_rule_step(engine, group, i, ops, scale)
        engine.update_one_from_gradient(group, i, view.grad)
        for hook in rule.hooks("post"):
            hook(rule, view)

    # --- loss scaling ---
    def loss_scaling(self, interval=1000, scale=None):
        """Dynamic (scale=None) or static loss scaling."""
        self._settle()
        self._loss.configure(interval, scale)

    def set_loss_scale(self, loss_scale):
        self.loss_scaling(scale=loss_scale)

    @property
    def loss_scale(self):
        """The current loss scale, or None when loss scaling is off."""
        self._settle()
        return self._loss.scale

    def check_nan_in_grads(self):
        """Dynamic loss scaling: look for inf/NaN in every gradient.

        Callable on its own: it reads the current gradients (a gradient that is None
        counts as zeros and is left None).
        """
        self._settle()
        self._loss.begin_check()
        if not self._loss.dynamic:
            return
        self._check_set_up()
        self._engine.sync_parameters()
        self._engine.collect_grads(missing_as_zero=True)
        self._flag_nonfinite_grads()

    def _flag_nonfinite_grads(self, names=None):
        """check_nan_in_grads on the gradient tables ``update`` has just collected (``names``:
        the check's outcome, Engine.nonfinite_names(), when it was made already)."""
        self._loss.begin_check()
        if not self._loss.dynamic:
            return
        for name in self._engine.nonfinite_names() if names is None else names:
            self._loss.found_nonfinite()
            warn_nonfinite(name, self.t, self._loss.scale)

    def is_safe_to_update(self):
        self._settle()
        return not self._loss.isnan

    def update_loss_scale(self):
        self._loss.next_scale()

    # --- epochs ---
    def new_epoch(self, auto=False):
        if auto:
            if not self.use_auto_new_epoch:
                raise RuntimeError("invalid new_epoch call with auto=True.\nFix the updater to set "
                                   "optimizer.use_auto_new_epoch = True.")
        elif self.use_auto_new_epoch:
            raise RuntimeError("duplicated new_epoch with the updater.\nPass auto_new_epoch=False to the "
                               "updater or stop calling new_epoch outside the updater.")
        self.epoch += 1

    # --- serialization ---
    def serialize(self, serializer):
        """Chainer's protocol: ``t``, ``epoch`` and every rule under its name."""
        self._settle()
        serializers.serialize_optimizer(self, serializer)


class DeferredCheck(object):
    """Dynamic loss scaling's non-finite check of a host step, left to the reduction pass
    that the first planned GradientClipping or GradientLARS asks for, so that the gradients
    are read once for both (Engine.nonfinite_names_and_sums_of_squares).

    Nothing observable moves: the hooks planned before it (``plan_is_pure``) only add ops,
    the raw gradients the check reads are the same, and ``settle`` does what ``update``
    does without a deferral (the warnings, the skip decision, the rules' checks, which may
    raise, and, in the fixed profile, marking the masters the step keeps) before the
    reduction's result reaches the hook. It is settled on its own before a hook whose
    planning is not pure (GradientNoise draws random numbers), when planning raised, or
    after the last hook."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.journal = None
        self.done = False

    def settle(self, names=None):
        self.done = True
        opt = self.optimizer
        opt._flag_nonfinite_grads(names)
        goes_ahead = opt.is_safe_to_update()
        if goes_ahead:
            opt._stop_at_rejected_rule()
        if opt.semantics.hooks_see_masters and opt._hookable.get("pre"):
            opt.engine.prepare_masters(goes_ahead, self.journal)


class PendingStep(object):
    """A step whose non-finite check is still on the device: the asynchronous copies
    of its per-group flags, the host bookkeeping to undo if it was skipped, and the
    iteration and loss scale Chainer's warning names."""

    def __init__(self, engine, copies, t, scale):
        self.engine, self.copies, self.t, self.scale = engine, copies, t, scale
        self.journal = Journal()
        self._bad = None

    def nonfinite(self):
        """Entry-ordered flags (waits for the copies)."""
        if self._bad is None:
            self._bad = self.engine.to_host_flags([c.wait() for c in self.copies])
        return self._bad
