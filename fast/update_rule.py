"""``UpdateRule``: the per-parameter face of the engine.

A rule owns no arrays. Its counters (``t``, ``enabled``), its state and its
fp32 master live in its group's flat buffers; the properties below read and
write them there, so what the conformance harness writes through
``rule.state[name][...]`` or ``rule.t`` is what the next fused step uses.
Each optimizer family subclasses it with the family's layout and host-side
scalar schedule (see fast/optimizers/).
"""
import numpy

from fast import hyperparameter
from fast.hookable import Hookable


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
    - ``kernel_id(hp)``: which kernel of cpu_driver.cpp runs the family;
    - ``raw_hparams(hp, rule)``: the hyperparameters the schedule needs;
    - ``kernel_table(raw, t, extras)``: per-tensor kernel scalars (vectorised);
    - ``extras``: per-rule floating scalars kept by the engine (e.g. beta_power).
    """

    state_fill = {}
    extras = ()
    N_RAW = 0

    def __init__(self, parent_hyperparam=None, profile="chainer"):
        self.hyperparam = hyperparameter.Hyperparameter(parent_hyperparam)
        self._profile = profile
        self._hookable = Hookable()
        self._use_fp32_update = False
        self._group = None
        self._index = -1
        self._unbound = {"t": 0, "enabled": True}
        self._unbound_extras = {}

    # --- counters, read and written in the group's arrays ---
    def _settled_group(self):
        """The group, after settling a step whose skip decision is still on the device."""
        if self._group is not None:
            self._group.engine.settle()
        return self._group

    def _get(self, field):
        if self._settled_group() is None:
            return self._unbound[field]
        return getattr(self._group, field)[self._index]

    def _set(self, field, value):
        if self._settled_group() is None:
            self._unbound[field] = value
        else:
            getattr(self._group, field)[self._index] = value

    @property
    def profile(self):
        """The owning optimizer's profile, 'chainer' or 'fixed' (read-only)."""
        return self._profile

    @property
    def t(self):
        """Number of updates this rule has made."""
        return int(self._get("t"))

    @t.setter
    def t(self, value):
        if int(value) != value or value < 0:
            raise ValueError("rule.t must be a non-negative integer, got {!r}".format(value))
        self._set("t", int(value))

    @property
    def enabled(self):
        """False: the rule leaves its parameter alone."""
        return bool(self._get("enabled"))

    @enabled.setter
    def enabled(self, value):
        self._set("enabled", bool(value))
        hyperparameter._bump()  # an enabled rule's hyperparameters must be checked again

    def _get_extra(self, name):
        if self._settled_group() is None:
            return self._unbound_extras[name]
        return float(self._group.extras[name][self._index])

    def _set_extra(self, name, value):
        if self._settled_group() is None:
            self._unbound_extras[name] = float(value)
        else:
            self._group.extras[name][self._index] = value

    # --- arrays ---
    @property
    def state(self):
        """name -> view of the state buffer, or None before the first update."""
        if self._settled_group() is None or not self._group.initialized[self._index]:
            return None
        return StateView(self._group.state_views(self._index))

    @property
    def fp32_param(self):
        """The fp32 master (a view), or None unless the master is in use."""
        group = self._settled_group()
        if group is None or group.master is None or not group.master_ready[self._index]:
            return None
        return self._group.master_view(self._index)

    def use_fp32_update(self, flag=True):
        """Keep an fp32 master for an fp16 parameter and update it in fp32."""
        self._use_fp32_update = bool(flag)
        hyperparameter._bump()

    # --- hooks ---
    def add_hook(self, hook, name=None, timing="auto"):
        """Call ``hook(rule, param)`` before ('pre') or after ('post') the update."""
        self._hookable.add(hook, name, timing)

    def remove_hook(self, name):
        self._hookable.remove(name)

    def serialize(self, serializer):
        """Chainer's UpdateRule.serialize: ``t`` and the state (and, in the
        fixed profile, the master and the family's extra scalars)."""
        from fast.serializers import serialize_rule
        serialize_rule(self, serializer)

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
