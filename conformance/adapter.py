"""Drive any implementation module through the public API (README.md) from a `Case`.

The adapter knows nothing about a particular implementation: it builds parameters, the
optimizer, hooks and loss scaling; hands gradients (already multiplied by the loss scale);
steps; saves and loads checkpoints; and reads or writes the full state as float64 arrays.
The same code drives the implementation under test and the reference.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
import traceback
from dataclasses import dataclass

import numpy as np

from . import streams
from .cases import Case
from .params import parameter_mode

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_impl(name: str):
    """Import the implementation module named on the command line.

    'chainer' selects the adapter over real Chainer (conformance.adapters.chainer). Only
    `Parameter` and `optimizers` are required; what else a case needs is optional
    (conformance.applicability).
    """
    if name == "chainer":
        name = "conformance.adapters.chainer"
    module = importlib.import_module(name)
    missing = [a for a in ("Parameter", "optimizers") if not hasattr(module, a)]
    if missing:
        raise ImportError(f"module {name!r} does not expose the public API: missing {missing}")
    return module


class ContractError(Exception):
    """A part of the public API that a case uses is missing from the implementation, or
    misbehaves when read or written (an attribute it lacks, a state that is not a mapping, a
    property that raises): a failing case that names the part, never an error of the harness.

    `side` is the driver's ("implementation" or "reference": the reference meets the
    contract, so there it is a bug of the harness); `frames` holds the formatted frames of the
    code that raised, outside the harness's own modules.
    """

    def __init__(self, message: str, side: str = "implementation", frames: str = ""):
        super().__init__(message)
        self.side, self.frames = side, frames


class CalledCodeRaised(Exception):
    """An exception raised inside a call the adapter made into the driven module (a
    constructor, `setup`, `update`, `save_npz`, ...): that module's own behaviour, which the
    comparison loop compares between the sides. The original exception is `__cause__`."""


def foreign_frames(exc: BaseException) -> str:
    """The traceback of `exc` without the frames of the harness's own modules
    (conformance/*.py): the frames of the code under test, formatted."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) != _HERE]
    return "".join(traceback.format_list(frames))


@contextlib.contextmanager
def contract(what: str, side: str = "implementation"):
    """Run the block's reads and writes of the driven module's objects: any exception they
    raise (an attribute missing, a value of another form, a property that raises) becomes a
    ContractError naming `what`, the part of the contract in use."""
    try:
        yield
    except (ContractError, CalledCodeRaised):
        raise
    except Exception as exc:
        raise ContractError(f"{what}: {type(exc).__name__}: {exc}", side,
                            foreign_frames(exc)) from None


def to_host(array) -> np.ndarray | None:
    """A NumPy copy of an array that may live on a GPU (CuPy's `.get()`)."""
    if array is None:
        return None
    if hasattr(array, "get") and not isinstance(array, np.ndarray):
        array = array.get()
    return np.array(array, copy=True)


@dataclass
class ParamState:
    """One parameter's full state after a step, on the host, in its own dtypes.

    `state_bounds`: for a state the implementation presents through an inexact translation
    (`rule.state_bounds`, optional in the contract), the bound of that translation's rounding.
    """
    param: np.ndarray
    master: np.ndarray | None
    state: dict | None
    t: int
    grad: np.ndarray | None
    state_bounds: dict | None = None


@dataclass
class Snapshot:
    """The full observable state of one optimizer."""
    params: dict
    t: int
    epoch: int
    loss_scale: float | None


def rewrite_npz(path: str, entries: dict) -> None:
    """Replace the values of those `entries` keys that the npz file at `path` holds."""
    with np.load(path) as f:
        arrays = {key: f[key] for key in f.files}
    for key, value in entries.items():
        if key in arrays:
            arrays[key] = np.asarray(value, dtype=arrays[key].dtype)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class Driver:
    """One optimizer built from a case, on one implementation module, its parameters made
    and given their gradients the way `params` says (conformance.params).

    Calls into the driven module go through `_call`: what they raise is that module's
    behaviour (CalledCodeRaised), which the comparison loop compares between the sides. Reads
    and writes of its objects run inside `_contract(what)`: what they raise fails the case as
    a ContractError naming the part of the public API in use, never stops the harness. `side`
    says whose driver it is ("implementation" or "reference").
    """

    #: whether a parameter mode that can (`--params chainer`) makes some parameters lazily
    lazy_parameters = True

    def __init__(self, impl, case: Case, xp=np, optimizer_kwargs=None, side="implementation",
                 params: str = "impl"):
        self.impl = impl
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.case = case
        self.xp = xp
        self.side = side
        self.mode = parameter_mode(params, impl)
        self.params = {spec.name: self._parameter(xp.asarray(streams.initial_value(case, i, spec)),
                                                  spec.name, lazy=self.lazy_parameters)
                       for i, spec in enumerate(case.params)}
        self.optimizer = self._build_optimizer()
        if case.resume is not None:
            self.resume()

    def _contract(self, what: str):
        return contract(what, self.side)

    @staticmethod
    def _call(function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ContractError, CalledCodeRaised):
            raise
        except Exception as exc:
            raise CalledCodeRaised(getattr(function, "__qualname__", repr(function))) from exc

    def _parameter(self, array, name, lazy=False):
        with self._contract("Parameter"):
            make = self.mode.constructor()
        return self._call(make, array, name, lazy)

    # -- construction -------------------------------------------------------------------
    def _build_optimizer(self):
        case = self.case
        with self._contract(f"optimizers.{case.optimizer}"):
            cls = getattr(self.impl.optimizers, case.optimizer)
        # `profile` is passed only when it is not the default, so an implementation without
        # profiles runs the chainer-profile cases (conformance.applicability).
        profile = {} if case.profile == "chainer" else {"profile": case.profile}
        opt = self._call(self._wrap, self._call(cls, **dict(case.hyperparams), **profile,
                                                **self.optimizer_kwargs))
        self._call(self._method(opt, "setup"), self.mode.target(self.params))
        if case.uses_master:
            self._call(self._method(opt, "use_fp32_update"))
        ls = case.loss_scaling
        if ls.mode == "static":
            if not self.mode.static_scale_by_backward(ls.scale):
                self._call(self._method(opt, "loss_scaling"), scale=ls.scale)
        elif ls.mode == "dynamic":
            self._call(self._method(opt, "loss_scaling"), interval=ls.interval, scale=None)
        for name, hp, value in case.overrides:
            with self._contract(f"/{name}: p.update_rule.hyperparam.{hp} = {value!r} (a "
                                f"per-rule override)"):
                setattr(self.params[name].update_rule.hyperparam, hp, value)
        for name in case.disabled:
            with self._contract(f"/{name}: p.update_rule.enabled = False"):
                self.params[name].update_rule.enabled = False
        for position, spec in enumerate(case.hooks):
            hook = self._build_hook(spec)
            hook_name = f"{spec.kind}_{position}"
            if spec.param is None:
                self._call(self._method(opt, "add_hook"), hook, name=hook_name, timing=spec.timing)
            else:
                with self._contract(f"/{spec.param}: p.update_rule"):
                    rule = self.params[spec.param].update_rule
                self._call(self._method(rule, "add_hook", "p.update_rule"), hook, name=hook_name,
                           timing=spec.timing)
        self.mode.after_setup(self.params)
        return opt

    def _method(self, obj, name: str, owner: str = "opt"):
        """`obj.name`, looked up under the contract."""
        with self._contract(f"{owner}.{name}"):
            return getattr(obj, name)

    def _wrap(self, optimizer):
        """The optimizer the case drives (conformance.ranks wraps it in a multi-node one)."""
        return optimizer

    def _build_hook(self, spec):
        with self._contract(f"optimizer_hooks.{spec.kind}"):
            cls = getattr(self.impl.optimizer_hooks, spec.kind)
        if spec.kind == "GradientNoise":
            return self._call(cls, *spec.args, noise_func=streams.deterministic_noise)
        return self._call(cls, *spec.args)

    # -- stepping -----------------------------------------------------------------------
    def gradient(self, i: int, spec, step: int, scale):
        """Parameter ``i``'s gradient at ``step``, already multiplied by the loss scale."""
        return streams.gradient(self.case, i, spec, step, scale)

    def loss_scale(self):
        """The loss scale the case's gradients are multiplied by (None: off)."""
        return self.mode.loss_scale(self.optimizer)

    def set_grads(self, step: int) -> None:
        with self._contract("opt.loss_scale"):
            scale = self.loss_scale()
        grads = {}
        for i, spec in enumerate(self.case.params):
            grad = self.gradient(i, spec, step, scale)
            grads[spec.name] = None if grad is None else self.xp.asarray(grad)
        self.mode.hand_gradients(self.params, grads, self.optimizer, self._contract)

    def step(self, step: int) -> None:
        self.set_grads(step)
        self._call(self._method(self.optimizer, "update"))

    def resume(self) -> None:
        """Start from a checkpoint with the case's large counters (cases.Resume): one update
        on the step-0 gradients, then save, write the counters into the file, and load."""
        self.step(0)
        self.checkpoint(self.case.resume.file_entries([spec.name for spec in self.case.params]))

    def checkpoint(self, rewrite=None) -> None:
        """Save the optimizer to npz and load it into a freshly built optimizer.

        The parameters (the model) keep their arrays, as a model checkpoint would restore them.
        `rewrite` (npz key -> value) replaces those of its keys the saved file holds, in the
        file's dtype, before loading.
        """
        handle, path = tempfile.mkstemp(suffix=".npz")
        os.close(handle)
        try:
            self.save_and_reload(path, rewrite)
        finally:
            os.unlink(path)

    def save_and_reload(self, path: str, rewrite=None, rewrites_here: bool = True) -> None:
        """Save to `path`, rewrite the counters there (when `rewrites_here`), and load the file
        into a freshly built optimizer over fresh Parameters holding the same arrays."""
        with self._contract("serializers.save_npz and serializers.load_npz"):
            save, load = self.impl.serializers.save_npz, self.impl.serializers.load_npz
        self._call(save, path, self.optimizer)
        if rewrite and rewrites_here:
            rewrite_npz(path, rewrite)
        for name, p in self.params.items():
            with self._contract(f"/{name}: p.data"):
                data = p.data
            self.params[name] = self._parameter(data, name)
        self.optimizer = self._build_optimizer()
        self._call(load, path, self.optimizer)

    # -- state --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        params = {}
        for name, p in self.params.items():
            with self._contract(f"/{name}: p.update_rule"):
                rule = p.update_rule
            with self._contract(f"/{name}: p.update_rule.state (None, or a mapping state name "
                                f"-> array)"):
                state = None if rule.state is None else {k: to_host(rule.state[k]) for k in rule.state}
            with self._contract(f"/{name}: p.update_rule.state_bounds (optional: None, or a "
                                f"mapping state name -> bound array)"):
                bounds = getattr(rule, "state_bounds", None)
                bounds = {k: to_host(v) for k, v in bounds.items()} if bounds else None
            with self._contract(f"/{name}: p.update_rule.fp32_param (None unless an fp32 master "
                                f"is in use)"):
                master = to_host(rule.fp32_param)
            with self._contract(f"/{name}: p.update_rule.t (an int)"):
                t = int(rule.t)
            with self._contract(f"/{name}: p.data and p.grad"):
                params[name] = ParamState(param=to_host(p.data), master=master, state=state, t=t,
                                          grad=to_host(p.grad), state_bounds=bounds)
        opt = self.optimizer
        with self._contract("opt.t and opt.epoch (ints) and opt.loss_scale (None or a number)"):
            scale = self.loss_scale()
            return Snapshot(params=params, t=int(opt.t), epoch=int(opt.epoch),
                            loss_scale=None if scale is None else float(scale))

    def force(self, snap: Snapshot) -> None:
        """Overwrite this optimizer's continuous state (params, masters, rule state) in place.

        Discrete state (counters, loss scale) is not forced: it must agree exactly anyway and
        is compared as a discrete event.
        """
        for name, ps in snap.params.items():
            p = self.params[name]
            with self._contract(f"/{name}: p.data[...] = array"):
                p.data[...] = self.xp.asarray(ps.param)
            rule = p.update_rule
            if ps.master is not None and rule.fp32_param is not None:
                with self._contract(f"/{name}: p.update_rule.fp32_param[...] = array"):
                    rule.fp32_param[...] = self.xp.asarray(ps.master)
            if ps.state is not None and rule.state is not None:
                for key, value in ps.state.items():
                    if key in rule.state:
                        with self._contract(f"/{name}: p.update_rule.state[{key!r}][...] = array"):
                            rule.state[key][...] = self.xp.asarray(value)
