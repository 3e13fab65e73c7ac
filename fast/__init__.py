"""fast: Chainer 7.8.1's optimizers on a fused multi-tensor engine.

Same public API as ``reference`` (see README.md); design in docs/fast.md.
"""
from fast import optimizer_hooks, optimizers, serializers  # NOQA
from fast.hyperparameter import Hyperparameter, HyperparameterProxy  # NOQA
from fast.optimizer import GradientMethod  # NOQA
from fast.parameter import Parameter  # NOQA
from fast.update_rule import UpdateRule  # NOQA


def set_cpu_threads(count):
    """Run fast's CPU passes (the update kernels and fast.distributed's exchange passes) on
    ``count`` OpenMP threads from now on; None: OpenMP's default (``OMP_NUM_THREADS``, else
    every core). A ``fast.distributed`` communicator gives each rank its share of the node's
    cores instead, unless this was called first (docs/distributed.md, "Threads")."""
    from fast.backends import cpu
    cpu.set_threads(count)


def cpu_threads():
    """The OpenMP threads a large CPU pass of fast runs on now."""
    from fast.backends import cpu
    return cpu.effective_threads()
