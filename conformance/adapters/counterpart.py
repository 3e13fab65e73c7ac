"""Another library's optimizers behind the conformance contract, from the table of mappings.

`contract(library, selection)` returns a namespace that meets the contract for an `--impl`
module (docs/conformance.md): `Parameter`, `optimizers` (one class per Chainer optimizer the
selection maps, taking the Chainer hyperparameters the mapping expresses, with Chainer's
defaults) and `optimizer_hooks` (one class per mapped hook). What the library computes is
the mapping's own code (conformance.adapters.mappings); this module supplies Chainer's control
flow around it, and nothing else:

    opt.update():  opt.t += 1
                   a None gradient becomes zeros (mapping.none_grads == "zeros")
                   optimizer hooks, 'pre', in the order they were added
                   per parameter whose rule is enabled and that has a gradient:
                       rule hooks 'pre'; the counterpart's step; rule hooks 'post'
                   optimizer hooks, 'post'

Each parameter has a counterpart of its own (built at its first step from its rule's
hyperparameters, so per-rule overrides are that parameter's). `rule.t` is the counterpart's own
step count where it keeps one (torch's `step`, optax's `count`), else the steps it was given.
Checkpoints (`serializers.save_npz` / `load_npz`) keep Chainer's counters and the
counterpart's own state under its own names, so a reload is exact. `rule.state` is the
counterpart's state under Chainer's names (`Mapping.state`); a state
translated by a factor other than 1 or -1 is rounded, and `rule.state_bounds` gives, per
element, the bound of that rounding: |presented - factor * s| plus |factor| half a spacing of
the counterpart's stored s (its own rounding of s), which the comparison adds to the
reference's bound (docs/conformance.md).

A library supplies a `Library` object: its arrays, how it builds and steps a counterpart, how
it runs a hook's code.
"""
from __future__ import annotations

import inspect
import types

import numpy as np

import reference

from .mappings import HOOKS, OPTIMIZERS, Mapping


class HostParameter:
    """A NumPy array and its gradient, as the library adapters hold them: a gradient is
    copied in the parameter's dtype and must have its shape. A library whose optimizer reads
    the gradient elsewhere (torch: the tensor's `grad`) hands it on in `on_gradient`."""

    def __init__(self, array, name=None):
        self.data = np.array(array, copy=True)
        self.name = name
        self.update_rule = None
        self._grad = None

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            value = np.array(value, dtype=self.data.dtype, copy=True)
            if value.shape != self.data.shape:
                raise ValueError(f"gradient of shape {value.shape} for a parameter of shape "
                                 f"{self.data.shape}")
        self._grad = value
        self.on_gradient(value)

    def on_gradient(self, array) -> None:
        """Called with each gradient set (None: cleared); nothing by default."""


class Hyperparameters:
    """A rule's hyperparameters: the optimizer's values, each settable for this rule alone."""

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def chainer_defaults(chainer_name: str) -> dict:
    """Chainer's defaults for an optimizer's hyperparameters or a hook's arguments, from the
    reference (the specification of Chainer 7.8.1)."""
    source = getattr(reference.optimizers, chainer_name, None) or \
        getattr(reference.optimizer_hooks, chainer_name)
    return {name: p.default for name, p in inspect.signature(source).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD}


def _signature(mapping: Mapping, keyword_only: bool) -> inspect.Signature:
    """The constructor's signature: the mapping's arguments with Chainer's defaults."""
    defaults = chainer_defaults(mapping.chainer)
    kind = inspect.Parameter.KEYWORD_ONLY if keyword_only else \
        inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(name, kind, default=defaults.get(name, inspect.Parameter.empty))
              for name in defaults if name in mapping.arguments]
    return inspect.Signature(params)


def translate(native: np.ndarray, factor: float, dtype) -> tuple:
    """(Chainer's state, its rounding bound or None when exact) from the counterpart's state s.

    Chainer's state is factor * s; for factor 1 or -1 that is exact. Otherwise the product is
    formed in float64 (error <= u64 |y|) and rounded to `dtype`; the bound is
    |presented - y| + 2 u64 |y| (the product's rounding and that of the subtraction) plus
    |factor| times half the spacing of s in its own dtype (the counterpart rounded s when it
    stored it, so its exact result lies that far from the stored s).
    """
    if factor == 1.0:
        return native, None
    if factor == -1.0:
        return -native, None
    exact = native.astype(np.float64) * factor
    presented = exact.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        own = np.abs(factor) * np.spacing(np.abs(native)).astype(np.float64) / 2.0
        bound = np.abs(presented.astype(np.float64) - exact) + 2.0 ** -52 * np.abs(exact) + own
    # A non-finite value is matched by its class (NaN by NaN, inf by the same inf), so its
    # bound is 0: an infinite one would accept any value.
    return presented, np.where(np.isfinite(bound) & np.isfinite(presented), bound, 0.0)


class Rule:
    """`p.update_rule`: Chainer's rule over one parameter's counterpart."""

    def __init__(self, optimizer, param):
        self._optimizer = optimizer
        self._param = param
        self._counterpart = None
        self._steps = 0
        self._hooks = {"pre": [], "post": []}
        self.enabled = True
        self.hyperparam = Hyperparameters(optimizer.hyperparameters)
        self.fp32_param = None

    # -- the contract ---------------------------------------------------------------------
    @property
    def t(self) -> int:
        count = None if self._counterpart is None else self._counterpart.step_count()
        return self._steps if count is None else count

    @property
    def state(self):
        translated = self._translated()
        return None if translated is None else {k: v for k, (v, _) in translated.items()}

    @property
    def state_bounds(self) -> dict:
        """Chainer state name -> the bound of an inexact translation (see `translate`)."""
        translated = self._translated() or {}
        return {k: b for k, (_, b) in translated.items() if b is not None}

    def add_hook(self, hook, name=None, timing="auto"):
        timing = hook.timing if timing == "auto" else timing
        self._hooks["post" if timing == "post" else "pre"].append(hook)

    # -- stepping -----------------------------------------------------------------------------
    def update(self, param) -> None:
        if not self.enabled or param.grad is None:
            return
        library = self._optimizer.library
        for hook in self._hooks["pre"]:
            library.run_hook(hook, [param], self._optimizer)
        if self._counterpart is None:
            self._counterpart = library.counterpart(self._optimizer.mapping,
                                                    self.hyperparam.as_dict(), param)
        self._counterpart.step(param, self.t + 1)
        self._steps += 1
        for hook in self._hooks["post"]:
            library.run_hook(hook, [param], self._optimizer)

    def restore(self, param, t: int, native: dict) -> None:
        """Take the step count and the counterpart's own state from a checkpoint."""
        self._steps = t
        self._counterpart = None
        if native:
            self._counterpart = self._optimizer.library.counterpart(
                self._optimizer.mapping, self.hyperparam.as_dict(), param)
            self._counterpart.restore(native, t)

    def export(self) -> dict:
        """The counterpart's own state (its names), for a checkpoint; empty before a step."""
        if self._counterpart is None or not self._steps:
            return {}
        return self._counterpart.export()

    def _translated(self):
        if self._counterpart is None or not self._steps:
            return None
        native = self._counterpart.state()
        values = self.hyperparam.as_dict()
        out = {}
        for chainer_name, native_name, factor in self._optimizer.mapping.state:
            if native_name in native:
                factor_value = float(eval(factor, {"__builtins__": {}}, values))
                out[chainer_name] = translate(native[native_name], factor_value,
                                              self._param.data.dtype)
        return out


class Optimizer:
    """A Chainer optimizer whose rules step the mapping's counterpart."""

    library = None      # set per contract
    mapping = None
    chainer_name = ""

    def __init__(self, **hyperparameters):
        bound = type(self).__signature__.bind(**hyperparameters)
        bound.apply_defaults()
        self.hyperparameters = dict(bound.arguments)
        self.params = {}
        self.t = 0
        self.epoch = 0
        self.loss_scale = None
        self._hooks = {"pre": [], "post": []}

    def setup(self, target):
        if not isinstance(target, dict):
            raise TypeError(f"{self.chainer_name}.setup takes a mapping name -> Parameter, "
                            f"not {type(target).__name__}")
        self.params = dict(target)
        for param in self.params.values():
            param.update_rule = Rule(self, param)
        return self

    def add_hook(self, hook, name=None, timing="auto"):
        timing = hook.timing if timing == "auto" else timing
        self._hooks["post" if timing == "post" else "pre"].append(hook)

    def update(self):
        if self.mapping.none_grads == "zeros":
            for param in self.params.values():
                if param.grad is None:
                    param.grad = np.zeros_like(param.data)
        self.t += 1
        with_grads = [p for p in self.params.values() if p.grad is not None]
        for hook in self._hooks["pre"]:
            self.library.run_hook(hook, with_grads, self)
        for param in self.params.values():
            param.update_rule.update(param)
        for hook in self._hooks["post"]:
            self.library.run_hook(hook, with_grads, self)


class Hook:
    """A Chainer optimizer hook whose effect is the mapping's code."""

    mapping = None      # set per contract
    timing = "pre"

    def __init__(self, *args, **kwargs):
        self.arguments = self.__signature__.bind(*args, **kwargs)
        self.arguments.apply_defaults()
        self.name = self.mapping.chainer
        for name, value in self.arguments.arguments.items():
            setattr(self, name, value)

    def values(self) -> dict:
        return dict(self.arguments.arguments)


def save_npz(path, optimizer) -> None:
    """Save to npz with Chainer's counters (`t`, `epoch`, `<name>/t`) and each parameter's
    counterpart state under the counterpart's own names (`<name>/exp_avg`, ...), so loading
    restores exactly what the library keeps (its state_dict / state pytree)."""
    entries = {"t": np.asarray(optimizer.t), "epoch": np.asarray(optimizer.epoch)}
    for name, param in optimizer.params.items():
        entries[f"{name}/t"] = np.asarray(param.update_rule.t)
        for key, value in param.update_rule.export().items():
            entries[f"{name}/{key}"] = np.asarray(value)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def load_npz(path, optimizer) -> None:
    """Load what `save_npz` wrote (its counters possibly rewritten) into `optimizer`; a missing
    counter raises KeyError before anything changes."""
    with np.load(path) as f:
        data = {key: f[key] for key in f.files}
    names = ["t", "epoch"] + [f"{name}/t" for name in optimizer.params]
    missing = [key for key in names if key not in data]
    if missing:
        raise KeyError(f"{path}: no {', '.join(missing)} in the checkpoint")
    optimizer.t, optimizer.epoch = int(data["t"]), int(data["epoch"])
    for name, param in optimizer.params.items():
        prefix = f"{name}/"
        native = {key[len(prefix):]: value for key, value in data.items()
                  if key.startswith(prefix) and key != f"{name}/t"}
        param.update_rule.restore(param, int(data[f"{name}/t"]), native)


def contract(library, selection: dict) -> types.SimpleNamespace:
    """A namespace meeting the `--impl` contract: `library`'s counterparts of the Chainer
    optimizers and hooks in `selection` (Chainer name -> Mapping)."""
    optimizers, hooks = {}, {}
    for chainer_name, mapping in selection.items():
        if mapping.library != library.name or mapping.chainer != chainer_name:
            raise ValueError(f"mapping {mapping.name} ({mapping.library}, {mapping.chainer}) "
                             f"cannot stand for {library.name} {chainer_name}")
        if chainer_name in OPTIMIZERS:
            cls = type(chainer_name, (Optimizer,), {"library": library, "mapping": mapping,
                                                    "chainer_name": chainer_name})
            cls.__signature__ = _signature(mapping, keyword_only=True)
            optimizers[chainer_name] = cls
        elif chainer_name in HOOKS:
            cls = type(chainer_name, (Hook,), {"mapping": mapping})
            cls.__signature__ = _signature(mapping, keyword_only=False)
            hooks[chainer_name] = cls
        else:
            raise ValueError(f"{chainer_name} is neither a Chainer optimizer nor a hook")
    return types.SimpleNamespace(Parameter=library.Parameter,
                                 optimizers=types.SimpleNamespace(**optimizers),
                                 optimizer_hooks=types.SimpleNamespace(**hooks),
                                 serializers=types.SimpleNamespace(save_npz=save_npz,
                                                                   load_npz=load_npz))
