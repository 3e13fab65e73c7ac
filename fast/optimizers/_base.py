"""Helpers shared by the optimizer families."""
import numpy

from fast.backends.abi import N_HPARAMS
from fast.engine import F32
from fast.update_rule import UpdateRule


def table(n):
    """An empty per-tensor kernel scalar table."""
    return numpy.zeros((n, N_HPARAMS), dtype=numpy.float64)


def hp_values(hp, names):
    """The rule's current values of ``names`` (through the parent chain) as floats."""
    return [float(getattr(hp, name)) for name in names]


class FamilyRule(UpdateRule):
    """A rule whose raw hyperparameters are the names in ``hparam_names``."""

    hparam_names = ()

    def raw_hparams(self):
        return hp_values(self.hyperparam, self.hparam_names)

    @classmethod
    def kernel_table(cls, raw, t, extras, update_dtype):
        """The kernel's per-tensor scalars. By default the raw hyperparameters, in the order
        of ``hparam_names``; families whose kernel needs derived scalars override this."""
        out = table(len(raw))
        out[:, :raw.shape[1]] = raw
        return out

    @classmethod
    def after_step(cls, raw, extras, stepped):
        """Advance per-rule scalars of the tensors just stepped."""


def check_eps_for(optimizer_name, eps, dtype):
    """Chainer's check: eps must not round to zero in ``dtype``."""
    if eps != 0 and numpy.dtype(dtype).type(eps) == 0:
        raise ValueError("eps of {} optimizer is too small for {} ({})".format(
            optimizer_name, numpy.dtype(dtype).name, eps))


def intermediate_dtype(dtype):
    """Adam's compute dtype: float32 for float16 parameters."""
    return F32 if numpy.dtype(dtype) == numpy.float16 else numpy.dtype(dtype)
