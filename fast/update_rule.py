"""``UpdateRule``: the per-parameter face of the engine.

A rule owns no arrays: its counters, per-rule scalars, state and fp32 master live in its
slot (fast.slots), a position in an engine group once its parameter is set up and has an
array, or values held by the rule itself before that. The properties below read and write
the slot, so what the conformance harness writes through ``rule.state[name][...]`` or
``rule.t`` is what the next fused step uses. Each optimizer family subclasses the rule with
the family's layout and host-side scalar schedule (see fast/optimizers/).

The engine's side of the interface: ``slot``/``attach`` (where the values live),
``uses_fp32_update``, ``has_hooks``/``hooks(timing)`` (a rule with hooks of its own takes
the per-parameter path), ``extra``/``set_extra`` (the family's per-rule scalars), and the
family interface at the end of the class.
"""
import numpy

from fast import hyperparameter, profiles, serializers
from fast.hookable import Hookable
from fast.slots import DetachedSlot


class StateView(dict):
    """``rule.state``: name -> view of the flat state buffer.

    Assigning ``state[name] = x`` copies ``x`` into the view.
    """

    def __setitem__(self, key, value):
        if key not in self:
            raise KeyError("rule has no state {!r}; it has {}".format(key, sorted(self)))
        view = dict.__getitem__(self, key)
        if numpy.shape(value) != view.shape:
            raise ValueError("state {!r} has shape {}, got {}".format(key, view.shape, numpy.shape(value)))
        view[...] = value


class UpdateRule(object):
    """Base class of the update rules. Family subclasses define:

    - ``state_names(hp)``: the state arrays, in kernel order;
    - ``state_fill``: initial value per state name (default 0);
    - ``kernel_id(hp)``: which kernel of the fused update runs the family;
    - ``raw_hparams()``: the hyperparameters the schedule needs;
    - ``kernel_table(raw, t, extras, update_dtype)``: per-tensor kernel scalars (vectorised);
    - ``extras``: names of per-rule floating scalars the engine keeps (e.g. beta_power),
      with their initial values from ``initial_extras()``.
    """

    state_fill = {}
    extras = ()

    def __init__(self, parent_hyperparam=None, profile="chainer"):
        self.hyperparam = hyperparameter.Hyperparameter(parent_hyperparam)
        self._semantics = profiles.named(profile)
        self._hookable = Hookable()
        self._use_fp32_update = False
        self._slot = DetachedSlot()
        self._settle = None

    # --- the engine's interface ---
    @property
    def slot(self):
        """Where the rule's values live (fast.slots), after settling a step whose skip
        decision is still on the device."""
        if self._settle is not None:
            self._settle()
        return self._slot

    def attach(self, slot, settle=None):
        """Keep the rule's values in ``slot`` from now on (the engine calls this with a
        GroupSlot it has filled, or a DetachedSlot). ``settle``: called before any read,
        so that a step the device may still skip is decided first."""
        self._slot = slot
        self._settle = settle

    @property
    def uses_fp32_update(self):
        """Whether an fp16 parameter of this rule is updated through an fp32 master."""
        return self._use_fp32_update

    @property
    def has_hooks(self):
        return bool(self._hookable)

    def hooks(self, timing):
        """The rule's own hooks of ``timing`` ('pre' or 'post'), in registration order."""
        return self._hookable.get(timing)

    def extra(self, name):
        """The family's per-rule scalar ``name`` (see ``extras``)."""
        return self.slot.extra(name)

    def set_extra(self, name, value):
        self.slot.set_extra(name, float(value))

    def initial_extras(self):
        """name -> initial value of each of the family's per-rule scalars."""
        return {}

    # --- pickling: the values travel with the rule, never the engine ---
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_slot"] = self.slot.detached()
        state["_settle"] = None
        return state

    @property
    def profile(self):
        """The owning optimizer's profile, 'chainer' or 'fixed' (read-only)."""
        return self._semantics.name

    @property
    def semantics(self):
        """What the owning optimizer's profile decides (fast.profiles.Profile)."""
        return self._semantics

    # --- counters ---
    @property
    def t(self):
        """Number of updates this rule has made."""
        return self.slot.t

    @t.setter
    def t(self, value):
        if int(value) != value or value < 0:
            raise ValueError("rule.t must be a non-negative integer, got {!r}".format(value))
        self.slot.t = int(value)

    @property
    def enabled(self):
        """False: the rule leaves its parameter alone."""
        return self.slot.enabled

    @enabled.setter
    def enabled(self, value):
        self.slot.enabled = bool(value)
        hyperparameter.bump()  # an enabled rule's hyperparameters must be checked again

    # --- arrays ---
    @property
    def state(self):
        """name -> view of the state buffer, or None before the first update."""
        views = self.slot.state_views()
        return None if views is None else StateView(views)

    @property
    def fp32_param(self):
        """The fp32 master (a view), or None unless the master is in use."""
        return self.slot.master_view()

    def use_fp32_update(self, flag=True):
        """Keep an fp32 master for an fp16 parameter and update it in fp32."""
        self._use_fp32_update = bool(flag)
        hyperparameter.bump()

    # --- hooks ---
    def add_hook(self, hook, name=None, timing="auto"):
        """Call ``hook(rule, param)`` before ('pre') or after ('post') the update."""
        self._hookable.add(hook, name, timing)

    def remove_hook(self, name):
        self._hookable.remove(name)

    def serialize(self, serializer):
        """Chainer's UpdateRule.serialize: ``t`` and the state (and, in the
        fixed profile, the master and the family's extra scalars)."""
        serializers.serialize_rule(self, serializer)

    # --- family interface ---
    @classmethod
    def state_names(cls, hp):
        return ()

    def check_hyperparameters(self):
        """Raise ValueError for a non-finite hyperparameter (fast's own check, made before
        anything changes; Chainer and the reference accept them)."""
        for name, value in self.hyperparam.get_dict().items():
            if isinstance(value, float) and not numpy.isfinite(value):
                raise ValueError("hyperparameter {} must be finite, got {}".format(name, value))

    def check_update(self, param_dtype, update_dtype):
        """Raise what Chainer's ``update_core`` raises for these hyperparameters and dtypes
        (eps too small, ...); the optimizer raises it where Chainer does, midway through the
        step. ``update_dtype``: float32 for an fp16 parameter with a master, else its dtype."""

    def before_first_update(self):
        """Family hook run when the rule's state is created."""

    def saved_extras(self):
        """Names of the per-rule scalars the fixed profile saves (Chainer saves none)."""
        return ()
