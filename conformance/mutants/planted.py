"""`fast` with the mutant named by $CONFORMANCE_MUTANT planted: an implementation module.

    CONFORMANCE_MUTANT=adam-swapped-betas python -m conformance gate \
        --impl conformance.mutants.planted --case matrix/Adam/float32/nohook/none/chainer

Import it in a fresh process only: planting changes `fast` for the rest of that process.
"""
import os

from .catalog import by_name

_name = os.environ.get("CONFORMANCE_MUTANT")
if not _name:
    raise ImportError("conformance.mutants.planted needs CONFORMANCE_MUTANT=<mutant name>")
for _patch in by_name(_name).plant:
    _patch.plant()

from fast import Parameter, optimizer_hooks, optimizers, serializers  # noqa: E402

__all__ = ["Parameter", "optimizers", "optimizer_hooks", "serializers"]
