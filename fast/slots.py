"""Where an update rule's values live: the rule's side of the engine's internal interface.

A rule owns no arrays. Its counters (``t``, ``enabled``), its family's per-rule scalars
(``extras``: MSVAG's ``beta_power``, AdaBound's ``initial_alpha``), its optimizer state and
its fp32 master live in a slot, one of two kinds with the same interface:

- ``GroupSlot``: position ``index`` of an engine group, whose flat buffers and per-tensor
  tables hold the values (``rule.state[k]`` and ``rule.fp32_param`` are views into them);
- ``DetachedSlot``: the values held by the rule itself, host copies, while it belongs to
  no group: before ``setup``, while its parameter has no array yet (a lazily initialized
  Chainer link), and inside a pickle or a deep copy.

``slot.detached()`` copies any slot's values into a new ``DetachedSlot``; the engine fills a
group position from one (``Group.fill``) and gives the rule its ``GroupSlot``, so regrouping,
joining a lazily initialized parameter and unpickling all move values the same way.
"""
import numpy


class DetachedSlot(object):
    """A rule's values held outside any engine.

    ``state`` is None until the rule's state exists (its first update, or a snapshot loaded
    into it); ``master`` is None unless an fp32 master exists.
    """

    bound = False

    def __init__(self, t=0, enabled=True, extras=None, state=None, master=None):
        self.t = int(t)
        self.enabled = bool(enabled)
        self.extras = dict(extras or {})
        self.state = state
        self.master = master

    def extra(self, name):
        return self.extras[name]

    def set_extra(self, name, value):
        self.extras[name] = float(value)

    def state_views(self):
        return self.state

    def take_state(self, values):
        """Hold ``values`` (name -> host array) as the rule's state."""
        self.state = dict(values)

    def master_view(self):
        return self.master

    def detached(self):
        return DetachedSlot(self.t, self.enabled, self.extras,
                            None if self.state is None else {k: numpy.array(v) for k, v in self.state.items()},
                            None if self.master is None else numpy.array(self.master))


class GroupSlot(object):
    """Position ``index`` of an engine group (fast.engine.Group)."""

    bound = True

    def __init__(self, group, index):
        self.group, self.index = group, index

    @property
    def t(self):
        return int(self.group.t[self.index])

    @t.setter
    def t(self, value):
        self.group.t[self.index] = value

    @property
    def enabled(self):
        return bool(self.group.enabled[self.index])

    @enabled.setter
    def enabled(self, value):
        self.group.enabled[self.index] = value

    def extra(self, name):
        return float(self.group.extras[name][self.index])

    def set_extra(self, name, value):
        self.group.extras[name][self.index] = value

    def state_views(self):
        """name -> view of the state buffers, or None before the state exists."""
        if not self.group.initialized[self.index]:
            return None
        return self.group.state_views(self.index)

    def take_state(self, values):
        """Copy ``values`` (name -> host array of the tensor's shape) into the state buffers:
        the rule's state exists from now on."""
        g = self.group
        for name, view in g.state_views(self.index).items():
            view[...] = g.backend.xp.asarray(values[name])
        g.initialized[self.index] = 1

    def master_view(self):
        """The fp32 master (a view), or None unless it exists."""
        g = self.group
        if g.master is None or not g.master_ready[self.index]:
            return None
        return g.master_view(self.index)

    def detached(self):
        host = self.group.backend.to_host
        state = self.state_views()
        master = self.master_view()
        return DetachedSlot(self.t, self.enabled, {k: self.extra(k) for k in self.group.extras},
                            None if state is None else {k: numpy.array(host(v)) for k, v in state.items()},
                            None if master is None else numpy.array(host(master)))
