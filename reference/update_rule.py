"""UpdateRule: one parameter's update, its state, hooks and fp32 master weights."""

import collections.abc
import numbers

import numpy

from reference import profiles
from reference.arithmetic import FLOAT_DTYPES, Float64
from reference.hookable import Hookable
from reference.hyperparameter import Hyperparameter
from reference.optimizer_hooks._numpy_ops import divide_in_place
from reference.parameter import Parameter, read_only_storage_array
from reference.serializers import ABSENT, is_deserializer, same_bits, serialize_optional

__all__ = ["UpdateRule", "StateView"]


class StateView(collections.abc.MutableMapping):
    """``rule.state``: state name -> read-only numpy array of the state's storage dtype (a
    copy; an in-place write raises ValueError instead of being lost).

    Assigning a numpy array converts it into the rule's arithmetic, keeping the state's
    storage dtype (Chainer copies into the existing array).
    """

    def __init__(self, rule):
        self._rule = rule

    def __getitem__(self, name):
        rule = self._rule
        return read_only_storage_array(rule.arithmetic, rule.state_values[name],
                                       rule.state_dtypes[name])

    def __setitem__(self, name, array):
        rule = self._rule
        array = numpy.asarray(array)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError("state {!r} must be a float16/32/64 array, not {}"
                            .format(name, array.dtype))
        old = rule.state_values.get(name)
        if old is not None and numpy.shape(old) != array.shape:
            raise ValueError("state {!r} must have shape {}, not {}"
                             .format(name, numpy.shape(old), array.shape))
        dtype = rule.state_dtypes.get(name, array.dtype)
        rule.state_values[name] = rule.arithmetic.round_to(rule.arithmetic.array(array), dtype)
        rule.state_dtypes[name] = dtype

    def __delitem__(self, name):
        del self._rule.state_values[name]
        del self._rule.state_dtypes[name]

    def __iter__(self):
        return iter(list(self._rule.state_values))

    def __len__(self):
        return len(self._rule.state_values)

    def __repr__(self):
        return "StateView({})".format({name: self[name] for name in self})


class UpdateRule:
    """Base class of the per-parameter update rules.

    ``update(param)`` follows Chainer's ``UpdateRule.update`` (CPU path), in order:

    1. return at once when ``enabled`` is False;
    2. ``t += 1``;
    3. fp32 update of an fp16 parameter: create the fp32 master from the fp16 values on first
       use, and work on it with an fp32 copy of the gradient;
    4. initialise the state on first use (:meth:`init_state`);
    5. divide the gradient by the loss scale it carries (``param._loss_scale``), stored in
       the gradient's dtype;
    6. rule 'pre' hooks ``hook(rule, param)``; what ``update_core`` rejects
       (:meth:`check_update_core`: eps too small, ...) raises here, with steps 2-5 done;
       :meth:`update_core`; rule 'post' hooks;
    7. cast the master back into the fp16 parameter and drop the fp32 gradient.

    Subclasses implement :meth:`init_state` (via :meth:`init_zeros` / :meth:`init_ones`) and
    :meth:`update_core` against ``self.arithmetic``; they write state with
    :meth:`store_state` and the parameter with ``param.store`` (both round to the storage
    dtype, which is where Chainer stores into arrays).
    """

    is_elementwise = True

    def __init__(self, parent_hyperparam=None):
        self.hyperparam = Hyperparameter(parent_hyperparam)
        self.enabled = True
        self._t = 0
        self.state_values = None
        self.state_dtypes = {}
        self._use_fp32_update = False
        self._fp32_param = None
        self._hookable = Hookable()
        self.arithmetic = Float64()
        self._profile = profiles.CHAINER
        self._param_shape = None

    # --- configuration ------------------------------------------------------------------
    def bind(self, arithmetic, profile, param=None):
        """Attaches the optimizer's arithmetic and profile (called by ``setup``)."""
        self.arithmetic = arithmetic
        self._profile = profiles.check_profile(profile)
        if param is not None:
            self._param_shape = param.shape

    @property
    def profile(self):
        return self._profile

    def use_fp32_update(self, flag=True):
        """Update fp16 parameters through an fp32 master copy."""
        self._use_fp32_update = bool(flag)

    def add_hook(self, hook, name=None, timing="auto"):
        """Adds a rule hook ``hook(rule, param)`` run before/after :meth:`update_core`."""
        self._hookable.add_hook(hook, name, timing)

    def remove_hook(self, name):
        self._hookable.remove_hook(name)

    # --- counters and state ---------------------------------------------------------------
    @property
    def t(self):
        """Number of updates this rule has applied (settable, a non-negative int)."""
        return self._t

    @t.setter
    def t(self, value):
        self._t = _check_counter(value, "t")

    @property
    def state(self):
        """Mapping state name -> numpy array (storage dtype), or None before the first update."""
        return None if self.state_values is None else StateView(self)

    @property
    def fp32_param(self):
        """The fp32 master as a read-only float32 numpy array, or None when there is none."""
        return None if self._fp32_param is None else self._fp32_param.data

    @property
    def fp32_value(self):
        """The fp32 master in the arithmetic's representation, or None (settable)."""
        return None if self._fp32_param is None else self._fp32_param.value

    @fp32_value.setter
    def fp32_value(self, values):
        if values is None:
            self._fp32_param = None
            return
        if self._fp32_param is None:
            master = Parameter(numpy.zeros(numpy.shape(values), numpy.float32))
            master.bind(self.arithmetic)
            master.value = values
            self._fp32_param = master
        else:
            self._fp32_param.value = values

    def initialize_state(self, param):
        """Creates the state for ``param`` now if there is none (as the first update would,
        on the working parameter); for teacher forcing before the first step."""
        if self.state_values is None:
            self.state_values, self.state_dtypes = {}, {}
            dtype = self.working_dtype(param)
            shaped = Parameter(numpy.zeros(param.shape, dtype), name=param.label)
            shaped.bind(self.arithmetic)
            self.init_state(shaped)

    def init_state(self, param):
        """Creates the state arrays for ``param`` (none by default)."""

    def init_zeros(self, name, param):
        self.state_values[name] = self.arithmetic.zeros_like(param.value)
        self.state_dtypes[name] = param.dtype

    def init_ones(self, name, param):
        self.state_values[name] = self.arithmetic.ones_like(param.value)
        self.state_dtypes[name] = param.dtype

    def store_state(self, name, values):
        """Writes state ``name``, rounded to its storage dtype."""
        self.state_values[name] = self.arithmetic.round_to(values, self.state_dtypes[name])

    # --- the update ------------------------------------------------------------------------
    def uses_master_for(self, param):
        return self._use_fp32_update and param.dtype == numpy.float16

    def working_dtype(self, param):
        """The dtype the update works on: float32 with a master, else the parameter's."""
        return numpy.dtype(numpy.float32) if self.uses_master_for(param) else param.dtype

    def check_gradient(self, param):
        """Raises ValueError when the gradient's shape is not the parameter's (bad input,
        rejected whether or not the rule runs)."""
        if param.grad_value is not None and numpy.shape(param.grad_value) != param.shape:
            raise ValueError("gradient of {} has shape {}, expected {}"
                             .format(param.describe(), numpy.shape(param.grad_value), param.shape))

    def check_update_core(self, param):
        """Raises what :meth:`update_core` would raise on ``param``: every hyperparameter
        must be a real number (subclasses add their checks, e.g. eps too small). Called
        where Chainer's ``update_core`` raises them: after the rule's ``t`` advanced, its
        state and master were created, its gradient unscaled and its 'pre' hooks ran; never
        for a rule that does not run (a step skipped by dynamic loss scaling, a disabled
        rule, no gradient)."""
        for name, value in self.hyperparam.get_dict().items():
            if not isinstance(value, numbers.Real):
                raise TypeError("hyperparameter {} of {} must be a real number, not {!r}"
                                .format(name, param.describe(), value))

    def working_param(self, param):
        """The parameter the update math acts on: the fp32 master (existing, or a fresh
        fp32 copy of the fp16 values) with an fp32 copy of the gradient, or ``param``."""
        if not self.uses_master_for(param):
            return param
        if self._fp32_param is not None:
            master = self._fp32_param
        else:
            master = Parameter(numpy.zeros(param.shape, numpy.float32), name=param.label)
            master.bind(self.arithmetic)
            master.store(param.value)
        if param.grad_value is not None:
            master.store_grad(param.grad_value)
        return master

    def update(self, param, working=None):
        """Updates ``param`` (see the class docstring for the order of operations).

        ``working`` is the ``fixed`` profile's already-unscaled working parameter (from
        :meth:`working_param`); when given, the loss scale is not divided out again.
        """
        if not self.enabled:
            return
        self.check_gradient(param)
        self.t += 1
        with numpy.errstate(all="ignore"):
            self._update(param, working)

    def _update(self, param, working):
        master_in_use = self.uses_master_for(param)
        supplied = working is not None
        if not supplied:
            working = self.working_param(param)
        loss_scale = None if supplied else param._loss_scale
        if master_in_use and self._fp32_param is None:
            self._fp32_param = working
        if self.state_values is None:
            self.state_values = {}
            self.state_dtypes = {}
            self.init_state(working)
        if loss_scale is not None and working.grad_value is not None:
            divide_grad_by_loss_scale(working, loss_scale)
        for hook in self._hookable.hooks("pre"):
            hook(self, working)
        if working.grad_value is not None:
            self.check_update_core(param)
            self.update_core(working)
        for hook in self._hookable.hooks("post"):
            hook(self, working)
        if master_in_use:
            param.store(working.value)
            if not supplied:  # the fixed profile drops it after the optimizer 'post' hooks
                working.grad_value = None

    def update_core(self, param):
        """Applies the update to ``param`` (whose gradient is not None)."""
        raise NotImplementedError

    # --- serialization ---------------------------------------------------------------------
    def serialize(self, serializer):
        """Chainer's protocol: ``t`` and every state key; ``fixed`` adds ``fp32_param``.

        Every value is replaced by what ``serializer(key, value)`` returns, whatever the
        serializer's class (an answer identical bit for bit to the value passed is not stored
        back, see :func:`reference.serializers.same_bits`). State arrays are passed as
        writable copies, since Chainer's NpzDeserializer copies into the array it is given.
        """
        self.t = _counter_from_file(serializer("t", self.t), _key(serializer, "t"))
        if self.state_values is None:
            if is_deserializer(serializer):
                self._deserialize_missing_state(serializer)
        else:
            for name in list(self.state_values):
                current = self.state[name]
                answer = serializer(name, numpy.array(current))
                if not same_bits(answer, current):
                    array = self._checked_loaded_array(_key(serializer, name), answer)
                    self.store_state(name, self.arithmetic.array(array))
        if self._profile == profiles.FIXED:
            self.serialize_fixed_extras(serializer)

    def serialize_fixed_extras(self, serializer):
        """The ``fixed`` profile's extra keys (the fp32 master; subclasses add theirs).

        A reader whose file has no ``fp32_param`` leaves the rule without a master.
        """
        current = self.fp32_param
        answer = serialize_optional(serializer, "fp32_param",
                                    None if current is None else numpy.array(current))
        if answer is ABSENT:
            if is_deserializer(serializer):
                self._fp32_param = None
        elif not same_bits(answer, current):
            master = self._checked_loaded_array(_key(serializer, "fp32_param"), answer)
            if master.dtype != numpy.float32:
                raise ValueError("key {!r}: the fp32 master must be float32, not {}".format(
                    _key(serializer, "fp32_param"), master.dtype))
            self.fp32_value = self.arithmetic.array(master)

    def _deserialize_missing_state(self, serializer):
        """Chainer quirk (UpdateRule.serialize): a rule whose state is None takes the keys to
        load from init_state on a dummy float32 parameter of shape (1,); the loaded arrays
        keep the file's dtype; a key missing (KeyError) for a disabled rule, or saved as
        None, leaves the state None; a key missing for an enabled rule raises."""
        loaded = {}
        for name in self._state_names_of_dummy():
            try:
                value = serializer(name, None)
            except KeyError:
                if self.enabled:
                    raise
                value = None
            if value is None:
                loaded = None
                break
            loaded[name] = self._checked_loaded_array(_key(serializer, name), value)
        if loaded is None:
            self.state_values, self.state_dtypes = None, {}
        else:
            self.state_values = {name: self.arithmetic.array(array)
                                 for name, array in loaded.items()}
            self.state_dtypes = {name: array.dtype for name, array in loaded.items()}

    def _state_names_of_dummy(self):
        saved = self.state_values, self.state_dtypes
        self.state_values, self.state_dtypes = {}, {}
        try:
            dummy = Parameter(numpy.empty(1, dtype=numpy.float32))
            dummy.bind(self.arithmetic)
            self.init_state(dummy)
            return list(self.state_values)
        finally:
            self.state_values, self.state_dtypes = saved

    def _checked_loaded_array(self, name, value):
        array = numpy.asarray(value)
        if array.dtype not in FLOAT_DTYPES:
            raise ValueError("key {!r}: expected a float16/32/64 array, found dtype {}"
                             .format(name, array.dtype))
        if self._param_shape is not None and array.shape != self._param_shape:
            raise ValueError("key {!r}: expected shape {}, found {}"
                             .format(name, self._param_shape, array.shape))
        return array


def divide_grad_by_loss_scale(param, loss_scale):
    """``grad /= loss_scale`` as NumPy 1.x evaluates it (Chainer's CPU path): the scale
    converted to the operation's dtype by value-based casting (the gradient's dtype, or
    float32 for an fp16 gradient and a scale of 65000 or more), the quotient rounded to it
    and stored in the gradient's dtype.

    An fp16 gradient without a master is thus divided by ``float16(loss_scale)``, which
    differs from the scale itself once dynamic scaling leaves the powers of two
    (``scale * 2**(1/interval)`` after a skipped step).
    """
    ctx = param.arithmetic
    param.store_grad(divide_in_place(ctx, param.grad_value, param.dtype, ctx.scalar(loss_scale)))


def _check_counter(value, what):
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, (int, numpy.integer)):
        raise TypeError("{} must be an int, not {!r}".format(what, value))
    if value < 0:
        raise ValueError("{} must be non-negative, not {}".format(what, value))
    return int(value)


def _key(serializer, name):
    """The full checkpoint key of ``name`` under ``serializer`` (for error messages)."""
    return getattr(serializer, "path", "") + name


def _counter_from_file(value, what):
    array = numpy.asarray(value)
    if array.shape != () or array.dtype.kind not in "iuf":
        raise ValueError("counter {!r}: expected a number, found {!r}".format(what, value))
    number = array.item()
    if isinstance(number, float):
        if not numpy.isfinite(number) or number != int(number):
            raise ValueError("counter {!r}: expected a non-negative integer, found {}"
                             .format(what, number))
        number = int(number)
    if number < 0:
        raise ValueError("counter {!r}: expected a non-negative integer, found {}"
                         .format(what, number))
    return number

