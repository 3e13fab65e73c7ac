"""optax behind the conformance contract (`--impl conformance.adapters.optax`).

The module's `Parameter`, `optimizers` and `optimizer_hooks` are the table's optax mappings
(conformance.adapters.mappings, kind "mapping"); `contract_for(selection)` gives any other
choice. Each parameter has its own gradient transformation, built by the mapping's code, and
its update is jitted (`jax.jit(tx.update)`), as a training step is. A hook is a gradient
transformation applied to the tree of the gradients it acts on (every parameter's for an
optimizer hook, so `clip_by_global_norm` takes the global norm), as `optax.chain(hook,
optimizer)` would. float64 parameters are computed with `jax.enable_x64(True)` (JAX computes
float64 arrays in float32 by default); float32 ones without it, as a float32 training run is.

optax has no loss scaling, no fp32 master and no `profile`: those cases are not applicable.
Checkpoints keep each parameter's state pytree, leaf by leaf, with Chainer's counters
(conformance.adapters.counterpart.save_npz).
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .counterpart import HostParameter, contract
from .mappings import default_selection


def _precision(dtype):
    """float64 arrays need JAX's x64 mode; anything else runs in JAX's default mode."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


class Parameter(HostParameter):
    """A NumPy array (written back after every step) and its gradient."""


def _named_fields(tree, out: dict) -> dict:
    """Every array field of the named tuples in an optax state, first occurrence per name."""
    if hasattr(tree, "_fields"):
        for name in tree._fields:
            value = getattr(tree, name)
            if hasattr(value, "shape") and name not in out:
                out[name] = value
            else:
                _named_fields(value, out)
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _named_fields(item, out)
    elif isinstance(tree, dict):
        for item in tree.values():
            _named_fields(item, out)
    return out


class OptaxCounterpart:
    """One parameter's gradient transformation, built by the mapping's code."""

    def __init__(self, mapping, hyperparameters: dict, param: Parameter):
        self.dtype = param.data.dtype
        with _precision(self.dtype):
            self.transformation = eval(mapping.build, dict(hyperparameters, optax=optax,
                                                           jax=jax, jnp=jnp))
            self.opt_state = self.transformation.init(jnp.asarray(param.data))
            self.update = jax.jit(self.transformation.update)

    def step(self, param: Parameter, t: int) -> None:
        with _precision(self.dtype):
            value = jnp.asarray(param.data)
            updates, self.opt_state = self.update(jnp.asarray(param.grad), self.opt_state, value)
            param.data[...] = np.asarray(optax.apply_updates(value, updates))

    def state(self) -> dict:
        """The transformation's state arrays, by optax's field names (`count` aside)."""
        fields = _named_fields(self.opt_state, {})
        return {k: np.asarray(v) for k, v in fields.items() if k != "count"}

    def export(self) -> dict:
        """Every leaf of the state pytree, keyed by its path (`[0].mu`, ...)."""
        leaves, _ = jax.tree_util.tree_flatten_with_path(self.opt_state)
        return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}

    def restore(self, native: dict, t: int) -> None:
        """Install saved leaves; every `count` becomes `t`."""
        with _precision(self.dtype):
            leaves, treedef = jax.tree_util.tree_flatten_with_path(self.opt_state)
            restored = []
            for path, leaf in leaves:
                key = jax.tree_util.keystr(path)
                if key.endswith("count"):
                    restored.append(jnp.asarray(t, dtype=leaf.dtype))
                else:
                    restored.append(jnp.asarray(native[key]) if key in native else leaf)
            self.opt_state = jax.tree_util.tree_unflatten(treedef, restored)

    def step_count(self):
        count = _named_fields(self.opt_state, {}).get("count")
        return None if count is None else int(count)


class OptaxLibrary:
    """optax as `conformance.adapters.counterpart` uses a library."""

    name = "optax"
    Parameter = Parameter

    def counterpart(self, mapping, hyperparameters, param):
        return OptaxCounterpart(mapping, hyperparameters, param)

    def run_hook(self, hook, params, optimizer) -> None:
        """Apply the hook's transformation to the tree of `params`' gradients."""
        if not params:
            return
        names = [f"p{i}" for i in range(len(params))]
        dtype = params[0].data.dtype
        with _precision(dtype):
            values = {n: jnp.asarray(p.data) for n, p in zip(names, params)}
            grads = {n: jnp.asarray(p.grad) for n, p in zip(names, params)}
            draws = {}
            if hook.mapping.chainer == "GradientNoise":
                draws = {id(values[n]): jnp.asarray(hook.noise_func(
                    np, p.data.shape, p.data.dtype, hook, p.update_rule))
                    for n, p in zip(names, params)}
            transformation = eval(hook.mapping.build, dict(hook.values(), optax=optax, jax=jax,
                                                           jnp=jnp, noise=lambda p: draws[id(p)]))
            updates, _ = transformation.update(grads, transformation.init(values), values)
            for name, param in zip(names, params):
                param.grad = np.asarray(updates[name]).astype(param.data.dtype)


def contract_for(selection: dict | None = None):
    """The contract namespace for `selection` (Chainer name -> Mapping; default: the table's
    optax mappings)."""
    return contract(OptaxLibrary(), selection or default_selection("optax"))


def versions() -> dict:
    """The versions a result holds for."""
    import jaxlib
    return {"optax": optax.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__}


_default = contract_for()
optimizers = _default.optimizers
optimizer_hooks = _default.optimizer_hooks
serializers = _default.serializers
