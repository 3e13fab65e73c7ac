"""`fast` with the mutant named by $CONFORMANCE_MUTANT planted: an implementation module.

    CONFORMANCE_MUTANT=adam-swapped-betas python -m conformance gate \
        --impl conformance.mutants.planted --case matrix/Adam/float32/nohook/none/chainer

Import it in a fresh process only: planting changes `fast` for the rest of that process.
A distributed mutant runs under mpiexec, where every rank imports this module (and so plants
it) before fast is used:

    CONFORMANCE_MUTANT=mean-not-divided-by-n mpiexec -n 3 python -m conformance gate \
        --impl conformance.mutants.planted --ranks 3 --level ci
"""
import os

from .catalog import by_name

_name = os.environ.get("CONFORMANCE_MUTANT")
if not _name:
    raise ImportError("conformance.mutants.planted needs CONFORMANCE_MUTANT=<mutant name>")
for _patch in by_name(_name).plant:
    _patch.plant()

from fast import Parameter, optimizer_hooks, optimizers, serializers  # noqa: E402
import fast.distributed as distributed  # noqa: E402  (the distributed slice: --ranks N)

__all__ = ["Parameter", "optimizers", "optimizer_hooks", "serializers", "distributed"]
