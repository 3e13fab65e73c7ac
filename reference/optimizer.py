"""Optimizer and GradientMethod: Chainer's control flow around the update rules."""

import copy

import numpy

from reference import profiles
from reference.arithmetic import Float64, check_arithmetic
from reference.hookable import Hookable
from reference.hyperparameter import Hyperparameter
from reference.loss_scaling import LossScaling, LossScalingState
from reference.serializers import ABSENT, MissingKeyError, serialize_optional
from reference.targets import Target
from reference.update_rule import _check_counter, _counter_from_file, \
    divide_grad_by_loss_scale

__all__ = ["Optimizer", "GradientMethod"]


class Optimizer:
    """Base class: target, counters, optimizer hooks, loss scaling, serialization.

    Keyword-only ``profile`` ('chainer' or 'fixed') and ``arithmetic`` (an
    :class:`reference.arithmetic.Arithmetic`, default ``Float64()``) are fixed at
    construction.
    """

    def __init__(self, *, profile=profiles.CHAINER, arithmetic=None):
        self._profile = profiles.check_profile(profile)
        self._arithmetic = check_arithmetic(Float64() if arithmetic is None else arithmetic)
        self.target = None
        self._t = 0
        self._epoch = 0
        self.use_auto_new_epoch = False
        self._hookable = None
        self._loss_scaling = LossScaling()

    # --- read-only configuration -----------------------------------------------------------
    @property
    def profile(self):
        return self._profile

    @property
    def arithmetic(self):
        return self._arithmetic

    # --- counters ------------------------------------------------------------------------
    @property
    def t(self):
        """Number of ``update`` calls since ``setup`` (advances on skipped steps too)."""
        return self._t

    @t.setter
    def t(self, value):
        self._t = _check_counter(value, "t")

    @property
    def epoch(self):
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        self._epoch = _check_counter(value, "epoch")

    # --- set-up ----------------------------------------------------------------------------
    def setup(self, target):
        """Sets the target (see :class:`reference.targets.Target`), resets t, epoch and hooks."""
        self.target = Target(target)
        self._t = 0
        self._epoch = 0
        self._hookable = Hookable(invalid_timing_fallback=True)
        return self

    def _check_set_up(self):
        if self._hookable is None:
            raise RuntimeError("Optimizer is not set up. Call `setup` method.")

    def update(self, lossfun=None, *args, **kwds):
        raise NotImplementedError

    def new_epoch(self, auto=False):
        """Advances ``epoch``; ``auto=True`` is for updaters that set use_auto_new_epoch."""
        if auto:
            if not self.use_auto_new_epoch:
                raise RuntimeError("invalid new_epoch call with auto=True.\nFix the updater "
                                   "to set optimizer.use_auto_new_epoch = True.")
        elif self.use_auto_new_epoch:
            raise RuntimeError("duplicated new_epoch with the updater.\nPass "
                               "auto_new_epoch=False to the updater or stop calling "
                               "new_epoch outside the updater.")
        self._epoch += 1

    # --- hooks -----------------------------------------------------------------------------
    def add_hook(self, hook, name=None, timing="auto"):
        """Adds an optimizer hook: ``hook(opt)``, or ``hook(rule, param)`` per parameter
        when ``hook.call_for_each_param`` is true."""
        self._check_set_up()
        self._hookable.add_hook(hook, name, timing)

    def remove_hook(self, name):
        self._check_set_up()
        self._hookable.remove_hook(name)

    def call_hooks(self, timing="pre"):
        """Runs the optimizer hooks registered for ``timing`` now."""
        self._check_set_up()
        self.target.pull()
        try:
            self._run_hooks(timing)
        finally:
            self.target.push()

    def _run_hooks(self, timing):
        for hook in self._hookable.hooks(timing):
            self.call_hook(hook)

    def call_hook(self, hook):
        if getattr(hook, "call_for_each_param", False):
            for param in self.hook_params():
                hook(self._rule_of(param), param)
        else:
            hook(self)

    def hook_params(self):
        """The parameters optimizer hooks act on: the target's parameters, except during a
        ``fixed``-profile update, where they are the working parameters (unscaled
        gradients; the fp32 master with an fp32 gradient when the master is in use)."""
        return list(self.target.params())

    def _rule_of(self, param):
        return param.update_rule

    # --- loss scaling ------------------------------------------------------------------------
    def loss_scaling(self, interval=1000, scale=None):
        """Dynamic (``scale=None``, starting at 1.0) or static loss scaling."""
        self._loss_scaling.configure(interval, scale)

    def set_loss_scale(self, loss_scale):
        self.loss_scaling(scale=loss_scale)

    @property
    def loss_scale(self):
        """The current loss scale (a float), or None when loss scaling is off."""
        return self._loss_scaling.scale

    @property
    def loss_scaling_state(self):
        """Reference-only: LossScalingState(scale, dynamic, multiplier, isnan_ever)."""
        return self._loss_scaling.state

    @loss_scaling_state.setter
    def loss_scaling_state(self, state):
        self._loss_scaling.state = LossScalingState(*state)

    def check_nan_in_grads(self):
        """Dynamic scaling only: records (and warns) whether any gradient is non-finite."""
        self._loss_scaling.check(self._grads_finite(), self._t)

    def _grads_finite(self):
        """[(name, whether its gradient is finite)]; a missing gradient counts as finite
        (it becomes zeros before Chainer looks)."""
        ctx = self._arithmetic
        return [(name, param.grad_value is None
                 or bool(numpy.all(ctx.isfinite(param.grad_value))))
                for name, param in self.target.namedparams()]

    def is_safe_to_update(self):
        return self._loss_scaling.is_safe_to_update()

    def update_loss_scale(self):
        self._loss_scaling.update_scale()

    # --- serialization ------------------------------------------------------------------------
    def serialize(self, serializer):
        """Chainer's keys ``t``, ``epoch``, ``<name>/...``; ``fixed`` adds ``loss_scaling/*``.

        Chainer's protocol: every value is replaced by what ``serializer(key, value)``
        returns, whatever the serializer's class. If anything fails (a missing key, a bad
        shape, dtype or counter), everything is restored as it was before the call.
        """
        self._check_set_up()
        snapshot = self.snapshot()
        try:
            self._serialize(serializer)
        except BaseException:
            self.restore(snapshot)
            raise

    def _serialize(self, serializer):
        self._t = _counter_from_file(serializer("t", self._t), "t")
        self._epoch = _counter_from_file(serializer("epoch", self._epoch), "epoch")
        for name, param in self.target.namedparams():
            rule = getattr(param, "update_rule", None)
            if rule is not None:
                rule.serialize(serializer[name])
        if self._profile == profiles.FIXED:
            self._serialize_loss_scaling(serializer["loss_scaling"])

    def _serialize_loss_scaling(self, serializer):
        """``fixed`` only: ``loss_scaling/{scale,dynamic,multiplier,isnan_ever}``.

        The keys are always written; "off" is ``scale`` NaN with ``dynamic`` False, and a
        multiplier never set is NaN. A checkpoint with none of the keys (one written in the
        ``chainer`` profile) says nothing about loss scaling: the optimizer keeps its own
        configuration. One with only some of them is damaged (MissingKeyError).
        """
        encoded = _encode_loss_scaling(self._loss_scaling.state)
        answers = {key: serialize_optional(serializer, key, encoded[key])
                   for key in LOSS_SCALING_KEYS}
        missing = [key for key in LOSS_SCALING_KEYS if answers[key] is ABSENT]
        if len(missing) == len(LOSS_SCALING_KEYS):
            return
        if missing:
            raise MissingKeyError("{}: key 'loss_scaling/{}' is missing".format(
                getattr(serializer, "source", "checkpoint"), missing[0]))
        self._loss_scaling.state = _decode_loss_scaling(answers)

    def snapshot(self):
        """Everything serialization can change, for :meth:`restore` (used by serialize)."""
        rules = [_snapshot_rule(param.update_rule) for param in self.target.params()]
        return (self._t, self._epoch, self._loss_scaling.state, rules)

    def restore(self, snapshot):
        t, epoch, loss_scaling_state, rules = snapshot
        self._t, self._epoch = t, epoch
        self._loss_scaling.state = loss_scaling_state
        for param, saved in zip(self.target.params(), rules):
            _restore_rule(param.update_rule, saved)


class GradientMethod(Optimizer):
    """An optimizer that updates each parameter with its own :class:`UpdateRule`.

    ``update()`` runs Chainer's ``GradientMethod.update`` (the ``chainer`` profile):

    1. with ``lossfun``: ``loss = lossfun(*args, **kwds)``, clear grads,
       ``loss.backward(loss_scale=opt.loss_scale)``;
    2. missing grads become zeros;
    3. dynamic scaling: look for non-finite gradients;
    4. optimizer 'pre' hooks on the still-scaled gradients;
    5. ``t += 1`` (even when the step is skipped);
    6. unless a non-finite gradient was found, every rule's ``update`` (which divides by the
       loss scale, see :class:`reference.update_rule.UpdateRule`);
    7. missing grads become zeros; optimizer 'post' hooks;
    8. update the loss scale.

    The ``fixed`` profile differs in one place: between steps 3 and 4 every gradient is
    unscaled once into its working parameter (the fp32 master with an fp32 gradient copy
    when the master is in use), hooks act on those, and the rules do not divide again.

    Everything that can be rejected is checked before step 2, so a failed update changes
    nothing: a gradient of the wrong shape always; what ``update_core`` rejects (eps too
    small for the dtype, a non-number hyperparameter) only for the enabled rules of a step
    that is not skipped (Chainer raises it inside ``update_core``, which a skipped step never
    reaches).
    """

    def __init__(self, *, profile=profiles.CHAINER, arithmetic=None):
        super().__init__(profile=profile, arithmetic=arithmetic)
        self.hyperparam = Hyperparameter()
        self._use_fp32_update = False
        self._working = None  # fixed profile, during update: [(param, working param)]
        self._working_rules = None

    def create_update_rule(self):
        raise NotImplementedError

    def setup(self, target):
        super().setup(target)
        for param in self.target.params():
            param.bind(self._arithmetic)
            rule = self.create_update_rule()
            rule.bind(self._arithmetic, self._profile, param)
            if self._use_fp32_update:
                rule.use_fp32_update()
            param.update_rule = rule
        return self

    def use_fp32_update(self, flag=True):
        """Keep fp32 master weights for fp16 parameters (applies to existing rules too)."""
        self._use_fp32_update = flag
        if self.target is not None:
            for param in self.target.params():
                param.update_rule.use_fp32_update()

    def reallocate_cleared_grads(self):
        """Replaces every missing gradient with zeros (Chainer's cleared-grad handling)."""
        for param in self.target.params():
            if param.grad_value is None:
                param.zerograd()
        for working in self._working_params():
            if working.grad_value is None:
                working.zerograd()

    def call_hook(self, hook):
        super().call_hook(hook)
        self.reallocate_cleared_grads()

    def hook_params(self):
        if self._working is None:
            return super().hook_params()
        return self._working_params()

    def _rule_of(self, param):
        if self._working is None:
            return param.update_rule
        return self._working_rules[id(param)]

    def _working_params(self):
        return [] if self._working is None else [working for _, working in self._working]

    def update(self, lossfun=None, *args, **kwds):
        self._check_set_up()
        if lossfun is not None:
            loss = lossfun(*args, **kwds)
            self.target.cleargrads()
            loss.backward(loss_scale=self.loss_scale)
            del loss
        self.target.pull()
        try:
            grads_finite = self._grads_finite()
            self._check_gradients()
            with numpy.errstate(all="ignore"):
                self.reallocate_cleared_grads()
                for param in self.target.params():
                    param._loss_scale = self.loss_scale
                if self._profile == profiles.FIXED:
                    self._update_fixed(grads_finite)
                else:
                    self._update_chainer(grads_finite)
        finally:
            self.target.push()

    def _check_gradients(self):
        """Every enabled rule's gradient shape, before anything changes (bad input, beyond
        Chainer). What a rule's ``update_core`` rejects (eps too small, ...) raises later,
        where Chainer raises it: inside that rule's update, after ``opt.t``, the rules
        before it and the rule's own ``t``, state and master have changed."""
        for param in self.target.params():
            rule = param.update_rule
            if rule is not None and rule.enabled:
                rule.check_gradient(param)

    def _update_chainer(self, grads_finite):
        self._loss_scaling.check(grads_finite, self._t)
        self._run_hooks("pre")
        self._t += 1
        if self.is_safe_to_update():
            for param in self.target.params():
                if param.update_rule is not None:
                    param.update_rule.update(param)
        self.reallocate_cleared_grads()
        self._run_hooks("post")
        self.update_loss_scale()

    def _update_fixed(self, grads_finite):
        self._loss_scaling.check(grads_finite, self._t)
        self._working = [(param, param.update_rule.working_param(param))
                         for param in self.target.params() if param.update_rule is not None]
        self._working_rules = {id(working): param.update_rule
                               for param, working in self._working}
        try:
            for param, working in self._working:
                if param._loss_scale is not None:
                    divide_grad_by_loss_scale(working, param._loss_scale)
                param._loss_scale = None
                working._loss_scale = None
            self._run_hooks("pre")
            self._t += 1
            if self.is_safe_to_update():
                for param, working in self._working:
                    param.update_rule.update(param, working=working)
            self.reallocate_cleared_grads()
            self._run_hooks("post")
        finally:
            for param, working in self._working:
                if working is not param:
                    working.grad_value = None
            self._working = None
            self._working_rules = None
        self.update_loss_scale()


LOSS_SCALING_KEYS = ("scale", "dynamic", "multiplier", "isnan_ever")


def _encode_loss_scaling(state):
    """The ``fixed`` checkpoint's loss-scaling values (None written as NaN)."""
    return {"scale": numpy.float64(numpy.nan if state.scale is None else state.scale),
            "dynamic": numpy.bool_(state.dynamic),
            "multiplier": numpy.float64(
                numpy.nan if state.multiplier is None else state.multiplier),
            "isnan_ever": numpy.bool_(state.isnan_ever)}


def _decode_loss_scaling(values):
    """Inverse of :func:`_encode_loss_scaling` (the state setter checks the values)."""
    numbers = {}
    for key in LOSS_SCALING_KEYS:
        array = numpy.asarray(values[key])
        if array.shape != () or array.dtype.kind not in "biuf":
            raise ValueError("key 'loss_scaling/{}': expected a scalar number, found {!r}"
                             .format(key, values[key]))
        numbers[key] = array.item()
    scale, multiplier = float(numbers["scale"]), float(numbers["multiplier"])
    return LossScalingState(None if numpy.isnan(scale) else scale, bool(numbers["dynamic"]),
                            None if numpy.isnan(multiplier) else multiplier,
                            bool(numbers["isnan_ever"]))


def _snapshot_rule(rule):
    if rule is None:
        return None
    attributes = dict(rule.__dict__)
    attributes["state_values"] = None if rule.state_values is None else dict(rule.state_values)
    attributes["state_dtypes"] = dict(rule.state_dtypes)
    attributes["_fp32_param"] = copy.copy(rule._fp32_param)
    return attributes


def _restore_rule(rule, attributes):
    if rule is None:
        return
    rule.__dict__.clear()
    rule.__dict__.update(attributes)
