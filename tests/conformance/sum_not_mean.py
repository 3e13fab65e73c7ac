"""A deliberately wrong distributed implementation for the negative control of the
distributed conformance mode: `fast`, except that its multi-node optimizer steps on the SUM
of the ranks' gradients instead of their mean (each rank's gradient is multiplied by the
number of ranks before fast averages it), through the public API only.

    mpiexec -n 2 python -m conformance gate --impl tests.conformance.sum_not_mean --ranks 2

must fail (exit 1); tests/conformance/test_distributed_conformance.py checks it.
"""
import types

import numpy

import fast.distributed
from fast import Parameter, optimizer_hooks, optimizers, serializers  # noqa: F401


class _SumNotMean(object):
    def __init__(self, inner, size):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_size", size)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    def setup(self, target):
        object.__setattr__(self, "_params", list(target.values()))  # the harness passes a dict
        self._inner.setup(target)
        return self

    def update(self, *args, **kwargs):
        for p in self._params:
            if p.grad is not None:
                p.grad = numpy.asarray(p.grad * p.grad.dtype.type(self._size))
        return self._inner.update(*args, **kwargs)


def create_multi_node_optimizer(actual_optimizer, communicator, zero=False, allreduce_grad_dtype=None):
    inner = fast.distributed.create_multi_node_optimizer(
        actual_optimizer, communicator, zero=zero, allreduce_grad_dtype=allreduce_grad_dtype)
    return _SumNotMean(inner, communicator.size)


def _unwrap(opt):
    return opt._inner if isinstance(opt, _SumNotMean) else opt


serializers = types.SimpleNamespace(
    save_npz=lambda path, opt, *a, **k: fast.serializers.save_npz(path, _unwrap(opt), *a, **k),
    load_npz=lambda path, opt, *a, **k: fast.serializers.load_npz(path, _unwrap(opt), *a, **k))
distributed = types.SimpleNamespace(create_communicator=fast.distributed.create_communicator,
                                    create_multi_node_optimizer=create_multi_node_optimizer)
