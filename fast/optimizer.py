"""``GradientMethod``: Chainer's optimizer control flow over the fused engine.

One ``update()`` does, in Chainer's order (DESIGN.md):
 1. (lossfun given) compute the loss, clear the grads, backward with the scale;
 2. fill missing grads with zeros; validate every grad (shape, dtype, device);
 3. dynamic loss scaling: one compiled pass flags non-finite gradients (the
    reduction pass of GradientClipping or GradientLARS where one of them is
    planned: see _DeferredCheck);
 4. 'pre' optimizer hooks: built-in hooks are planned into ops the update
    kernel applies as it loads each gradient (their reductions run first, one
    pass each); any other hook is called as Chainer calls it, on the grads;
 5. ``t += 1`` (also on a skipped step);
 6. unless skipped: one fused kernel call per group (unscale, hooks, update,
    master -> fp16 cast); rules with their own hooks take a per-parameter path;
 7. 'post' hooks; 8. the loss-scale schedule.
What Chainer's ``update_core`` rejects (eps too small for the dtype) is found
before the step and raised where Chainer raises it: after step 5, once the
rules before the rejected one have updated and the rejected rule's ``t``,
state and master have changed (``GradientMethod._rejected_rule``). Every
other error (a bad gradient, a non-finite hyperparameter) is raised before
anything changes.

On a GPU with dynamic loss scaling the host does not wait for step 3: the
check raises a device flag that the update kernels read (they do nothing
when it is set), the host does the step's bookkeeping (rule counters, state
creation, the masters) as if the step went ahead, and it settles the step
(undoing that bookkeeping if the step was skipped, the warnings, the
loss-scale schedule) from an asynchronous copy of the flags the next time
anything depends on the outcome: the next ``update``, ``loss_scale``,
``rule.t``, ``rule.state``, serialization. Steps whose control flow needs
the outcome on the host (rule-level hooks, custom 'pre' hooks) settle at
once.
"""
import warnings

import numpy

from fast import backends, hyperparameter
from fast.engine import Engine, F16, F32
from fast.hook_ops import PlanContext
from fast.hookable import Hookable
from fast.loss_scaling import LossScaling
from fast.parameter import array_device

PROFILES = ("chainer", "fixed")


def named_parameters(target):
    """(name, parameter) pairs of a mapping, a Link-like object or an iterable."""
    if hasattr(target, "namedparams"):
        pairs = list(target.namedparams())
    elif hasattr(target, "items"):
        pairs = [("/" + str(k).lstrip("/"), p) for k, p in target.items()]
    else:
        try:
            pairs = [("/{}".format(i), p) for i, p in enumerate(target)]
        except TypeError:
            raise TypeError("optimization target must be a mapping of Parameters, an iterable of "
                            "Parameters or an object with namedparams(); got {}".format(type(target).__name__))
    names = set()
    for name, p in pairs:
        if not hasattr(p, "data") or array_device(getattr(p, "data", None)) is None:
            raise TypeError("target entry {!r} is not a Parameter (got {})".format(name, type(p).__name__))
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


class _RuleParam(object):
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


class GradientMethod(object):
    """Base class of the optimizers (Chainer's GradientMethod)."""

    rule_class = None

    def __init__(self, profile="chainer"):
        if profile not in PROFILES:
            raise ValueError("profile must be 'chainer' or 'fixed', got {!r}".format(profile))
        self._profile = profile
        self.hyperparam = hyperparameter.Hyperparameter()
        self.target = None
        self.t = 0
        self.epoch = 0
        self.use_auto_new_epoch = False
        self._hookable = None
        self._use_fp32_update = False
        self._loss = LossScaling()
        self._engine = None
        #: builds the engine at setup (fast.distributed's ZeRO gives its sharded engine)
        self._engine_factory = Engine
        self._named = []
        self._pending = None

    @property
    def profile(self):
        """'chainer' (Chainer 7.8.1, quirks included) or 'fixed' (read-only)."""
        return self._profile

    def _set_hyperparameters(self, **values):
        for name, value in values.items():
            if isinstance(value, float) and not numpy.isfinite(value):
                raise ValueError("{} must be finite, got {}".format(name, value))
        for name, value in values.items():
            setattr(self.hyperparam, name, value)

    # --- set-up ---
    def create_update_rule(self):
        return self.rule_class(self.hyperparam, profile=self._profile)

    def setup(self, target):
        """Create a rule per parameter and move the parameters into flat buffers."""
        pairs = named_parameters(target)
        triples = []
        for name, p in pairs:
            rule = self.create_update_rule()
            if self._use_fp32_update:
                rule.use_fp32_update()
            triples.append((name, p, rule))
        self._settle()
        engine = self._engine_factory(self._profile)
        engine.settle = self._settle
        engine.bind(triples)
        for name, p, rule in triples:
            p.update_rule = rule
        self._engine, self._named, self.target = engine, [(n, p) for n, p, _ in triples], target
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
        for _, p in self._named:
            p.update_rule.use_fp32_update(flag)
        if self._engine is not None:
            self._engine.sync_hyperparameters()

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
        self._engine.sync_hyperparameters()
        self._reallocate_cleared_grads()
        self._engine.collect_grads()
        self._run_hooks_in_place(self._hookable.get(timing))

    def _call_custom_hook(self, hook):
        if getattr(hook, "call_for_each_param", False):
            for _, p in self._named:
                hook(p.update_rule, p)
        else:
            hook(self)

    def _run_hooks_in_place(self, hooks, unscaled=False):
        """Hooks one at a time on the gradients themselves (Chainer's way)."""
        scale = None if unscaled else self._loss.scale
        for hook in hooks:
            if hasattr(hook, "plan"):
                ctx = PlanContext(self, self._engine, scale)
                hook.plan(ctx)
                if ctx.ops:
                    self._engine.materialize_in_place(ctx.ops)
            else:
                self._call_custom_hook(hook)
            self._reallocate_cleared_grads()
            self._engine.collect_grads()

    # --- the step ---
    def _reallocate_cleared_grads(self):
        for _, p in self._named:
            if p.grad is None:
                p.grad = backends.for_array(p.data).xp.zeros_like(p.data)

    def _rejected_rule(self):
        """The position of the first enabled rule, in the target's order, whose update
        Chainer's ``update_core`` would reject, or None. A non-finite hyperparameter (fast's
        own check) raises at once, before anything changes. Computed again only after a
        hyperparameter, the fp32 update or ``enabled`` changed."""
        key = hyperparameter.generation()
        cached = getattr(self, "_rejection", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        for _, p in self._named:
            if p.update_rule.enabled:
                p.update_rule.check_hyperparameters()
        rejected = None
        for position, (_, p) in enumerate(self._named):
            if p.update_rule.enabled:
                try:
                    self._check_update(p)
                except (ValueError, AttributeError):
                    rejected = position
                    break
        self._rejection = key, rejected
        return rejected

    @staticmethod
    def _check_update(p):
        """Raise what Chainer's ``update_core`` raises for ``p``'s rule (eps too small)."""
        rule = p.update_rule
        master = rule._use_fp32_update and p.data.dtype == F16
        rule.check_update(p.data.dtype, F32 if master else p.data.dtype)

    def _stop_at_rejected_rule(self):
        """Make this step stop where Chainer's would raise: the rules before the rejected one
        update, it and the rules after it do not (the engine's ``stop_at``)."""
        self._engine.stop_at = self._rejected_rule()

    def _raise_rejected(self, ops, scale):
        """Chainer's rejected rule, midway: its ``t`` advances, its state and master are
        created and its 'pre' hooks run, then ``update_core`` raises."""
        engine = self._engine
        group, i = engine.locate(engine.stop_at)
        self._begin_rule_step(engine, group, i, ops, scale)
        self._check_update(group.entries[i].param)
        raise RuntimeError("rule {} was rejected before the step and passes now".format(
            group.entries[i].name))

    def update(self, lossfun=None, *args, **kwds):
        """One optimization step from the current (loss-scaled) gradients."""
        self._check_set_up()
        self._settle()
        if lossfun is not None:
            loss = lossfun(*args, **kwds)
            for _, p in self._named:
                p.grad = None
            loss.backward(loss_scale=self._loss.scale)
            del loss
        engine = self._engine
        engine.sync_hyperparameters()
        self._reallocate_cleared_grads()
        engine.collect_grads()
        if self._skip_stays_on_device() and self._update_deciding_on_device():
            return
        try:
            self._update_on_host()
        finally:
            engine.stop_at = None

    def _update_on_host(self):
        """Steps 3-8 of ``update`` with the skip decision taken on the host."""
        engine = self._engine
        pending = self._check_joining_hooks()
        if pending is None:
            self._flag_nonfinite_grads()
            if self.is_safe_to_update():
                self._stop_at_rejected_rule()
        ops, scale, originals = self._pre_hooks(pending_check=pending)
        try:
            self.t += 1
            if self.is_safe_to_update():
                engine.update(ops, scale, self._hooked_rule_step)
                if engine.stop_at is not None:
                    self._raise_rejected(ops, scale)
            self._reallocate_cleared_grads()
            post = self._hookable.get("post")
            if post:
                engine.collect_grads()
                self._run_hooks_in_place(post, unscaled=originals is not None)
        finally:
            if originals is not None:
                engine.leave_fp32_view(originals)
        self.update_loss_scale()

    def _skip_stays_on_device(self):
        """Whether this step can leave the skip decision to the device (see the module doc)."""
        engine = self._engine
        return (self._loss.dynamic and bool(engine.groups) and not engine.decides_skip_on_host
                and all(g.backend.asynchronous for g in engine.groups)
                and not any(p.update_rule._hookable for _, p in self._named)
                and all(hasattr(h, "plan") for h in self._hookable.get("pre")))

    def _update_deciding_on_device(self):
        """Steps 3-7 of ``update`` with the non-finite check's outcome left on the device.
        False (nothing done) when a hyperparameter check fails: whether Chainer would raise
        depends on the outcome, so the caller takes the host path."""
        engine = self._engine
        backend = engine.groups[0].backend
        found = backend.xp.zeros(1, dtype=numpy.int32)
        flags = engine.check_finite_on_device(found)
        copies = [g.backend.start_copy_to_host(f) for g, f in zip(engine.groups, flags)]
        pending = _PendingStep(engine, copies, self.t, self._loss.scale)
        try:
            if self._rejected_rule() is not None:
                return False
        except ValueError:
            return False
        ops, scale, _ = self._pre_hooks(step_goes_ahead=True, journal=pending.journal)
        self.t += 1
        pending.journal.records += engine.update(ops, scale, self._hooked_rule_step, skip=found).records
        self._pending = pending
        self._reallocate_cleared_grads()
        post = self._hookable.get("post")
        if post:
            engine.collect_grads()
            self._run_hooks_in_place(post)
        return True

    def _settle(self):
        """Settle a step whose skip decision was left on the device (see the module doc)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        bad = pending.nonfinite()
        self._loss.isnan = bool(bad.any())
        if self._loss.isnan:
            pending.journal.roll_back()
            self._loss.isnan_ever = True
            for e in pending.engine.entries:
                if bad[e.index]:
                    warn_nonfinite(e.name, pending.t, pending.scale)
        self.update_loss_scale()

    def _check_joining_hooks(self):
        """A _DeferredCheck when dynamic loss scaling's non-finite check can be made in the
        reduction pass of a planned 'pre' hook (GradientClipping, GradientLARS), else None."""
        if not self._loss.dynamic:
            return None
        pre = self._hookable.get("pre")
        if not (all(hasattr(h, "plan") for h in pre) and any(getattr(h, "plan_reads_gradients", False)
                                                              for h in pre)):
            return None
        return _DeferredCheck(self)

    def _pre_hooks(self, step_goes_ahead=None, journal=None, pending_check=None):
        """Run or plan the 'pre' optimizer hooks.

        Returns (ops for the fused pass, the loss scale the update still has to
        divide out, the gradients to restore after the step or None). All
        built-in: nothing is run, the hooks become ops. Otherwise the hooks run
        one by one on the gradients, as in Chainer; in the fixed profile the
        gradients are unscaled first (fp32 copies for fp16-master parameters).

        ``pending_check`` (a _DeferredCheck, all hooks plannable): the non-finite check
        is still to be made; the first reduction a hook asks for makes it in the same
        pass, and it is settled before a hook whose planning is not pure, or at the end.
        """
        engine, pre, scale = self._engine, self._hookable.get("pre"), self._loss.scale
        if pending_check is not None:
            pending_check.journal = journal
            if self._profile == "fixed" and pre:
                engine.prepare_masters(False)  # the values the hooks read; marked once settled
            ctx = PlanContext(self, engine, scale, pending_check)
            try:
                for hook in pre:
                    if not pending_check.done and not getattr(hook, "plan_is_pure", False):
                        pending_check.settle()
                    hook.plan(ctx)
            finally:
                if not pending_check.done:
                    pending_check.settle()
            return ctx.ops, scale, None
        if step_goes_ahead is None:
            step_goes_ahead = self.is_safe_to_update()
        if self._profile == "fixed" and pre:
            engine.prepare_masters(step_goes_ahead, journal)
        if all(hasattr(h, "plan") for h in pre):
            ctx = PlanContext(self, engine, scale)
            for hook in pre:
                hook.plan(ctx)
            return ctx.ops, scale, None
        originals = None
        if self._profile == "fixed":
            originals = engine.enter_fp32_view(scale, self.is_safe_to_update())
            if scale is not None:
                engine.materialize_in_place([], scale)
                engine.collect_grads()
            scale = None
        self._run_hooks_in_place(pre, unscaled=scale is None)
        return [], scale, originals

    @staticmethod
    def _begin_rule_step(engine, group, i, ops, scale):
        """Chainer's per-rule sequence up to ``update_core``: ``t += 1``, the state and the
        master created on first use, the rule's 'pre' hooks on its hooked, unscaled gradient
        (fp32 with a master). Returns what the hooks saw."""
        entry = group.entries[i]
        rule = entry.rule
        if not group.initialized[i]:
            group.initialize(i)
        group.prepare_master(i)
        group.t[i] += 1
        if engine.fp32_view and group.master is not None:
            grad = entry.param.grad  # already unscaled fp32 and hooked
        else:
            grad = engine.gradient_for_rule(group, i, ops, scale)
        data = group.master_view(i) if group.master is not None else group.param_view(i)
        tagged_scale = scale if engine.profile == "chainer" and group.master is None else None
        view = _RuleParam(entry.param.name, data, grad, rule, tagged_scale)
        for hook in rule._hookable.get("pre"):
            hook(rule, view)
        return view

    @staticmethod
    def _hooked_rule_step(engine, group, i, ops, scale):
        """A parameter whose rule has hooks (or that the fp32 view steps one at a time):
        Chainer's per-rule sequence."""
        rule = group.entries[i].rule
        view = GradientMethod._begin_rule_step(engine, group, i, ops, scale)
        engine.update_one_from_gradient(group, i, view.grad)
        for hook in rule._hookable.get("post"):
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

        Callable on its own: it reads the current ``p.grad`` arrays (a
        gradient that is None counts as zeros and is left None).
        """
        self._settle()
        self._loss.isnan = False
        if not self._loss.dynamic:
            return
        self._check_set_up()
        self._engine.collect_grads(missing_as_zero=True)
        self._flag_nonfinite_grads()

    def _flag_nonfinite_grads(self, names=None):
        """check_nan_in_grads on the gradient tables ``update`` has just collected (``names``:
        the check's outcome, Engine.nonfinite_names(), when it was made already)."""
        self._loss.isnan = False
        if not self._loss.dynamic:
            return
        for name in self._engine.nonfinite_names() if names is None else names:
            self._loss.isnan = True
            self._loss.isnan_ever = True
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
        from fast.serializers import serialize_optimizer
        self._settle()
        serialize_optimizer(self, serializer)


class _DeferredCheck(object):
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
        if opt._profile == "fixed" and opt._hookable.get("pre"):
            opt._engine.prepare_masters(goes_ahead, self.journal)


class _PendingStep(object):
    """A step whose non-finite check is still on the device: the asynchronous copies
    of its per-group flags, the host bookkeeping to undo if it was skipped, and the
    iteration and loss scale Chainer's warning names."""

    def __init__(self, engine, copies, t, scale):
        from fast.engine import Journal
        self.engine, self.copies, self.t, self.scale = engine, copies, t, scale
        self.journal = Journal()
        self._bad = None

    def nonfinite(self):
        """Entry-ordered flags (waits for the copies)."""
        if self._bad is None:
            self._bad = self.engine.to_host_flags([c.wait() for c in self.copies])
        return self._bad
