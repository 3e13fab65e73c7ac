"""Real Chainer 7.8.1 behind the public API of README.md (`--impl chainer`).

Chainer lacks four things the contract names; this module supplies them and changes
nothing else:

- `optimizers.X(..., profile="chainer")`: Chainer has only its own semantics, so any other
  profile raises ValueError.
- `opt.setup(mapping)`: the mapping is registered on a `chainer.Link` under its names.
- `opt.update()` with hand-set gradients: Chainer learns the loss scale of a gradient from
  `loss.backward(loss_scale=...)`, which marks every leaf parameter with it
  (`param._loss_scale`); the adapter marks the parameters the same way before updating.
- read-only `rule.fp32_param` (the master's array) and `opt.loss_scale`.
"""
from __future__ import annotations

import types

import chainer
import chainer.optimizer as _optimizer
from chainer import optimizer_hooks, serializers  # noqa: F401  (part of the public API)

__all__ = ["Parameter", "optimizers", "optimizer_hooks", "serializers"]

OPTIMIZER_NAMES = ("SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad",
                   "AdaDelta", "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad",
                   "AdaBound", "AMSBound", "MSVAG", "SMORMS3")


def Parameter(array, name=None):
    return chainer.Parameter(array, name=name)


def _fp32_param(rule):
    master = rule._fp32_param
    return None if master is None else master.array


_optimizer.UpdateRule.fp32_param = property(_fp32_param)
_optimizer.Optimizer.loss_scale = property(lambda opt: opt._loss_scale)


def _setup(opt, target):
    if isinstance(target, dict):
        link = chainer.Link()
        with link.init_scope():
            for name, param in target.items():
                setattr(link, name, param)
        target = link
    return type(opt).setup(opt, target)


def _update(opt, lossfun=None, *args, **kwds):
    if lossfun is None:
        for param in opt.target.params():
            param._loss_scale = opt._loss_scale
    return type(opt).update(opt, lossfun, *args, **kwds)


def _factory(name):
    cls = getattr(chainer.optimizers, name)

    def build(*args, profile="chainer", **kwargs):
        if profile != "chainer":
            raise ValueError(f"Chainer has only the 'chainer' profile, not {profile!r}")
        opt = cls(*args, **kwargs)
        opt.setup = types.MethodType(_setup, opt)
        opt.update = types.MethodType(_update, opt)
        return opt
    build.__name__ = name
    return build


optimizers = types.SimpleNamespace(**{name: _factory(name) for name in OPTIMIZER_NAMES})
