"""``StepSpec``: the argument block of one kernel call, before it is placed.

The engine fills the large buffers' addresses (parameter, master, state,
gradients) itself and hands every small per-call table (chunk table, active
flags, pointer tables, hyperparameters, hook scalars) as a host array; the
backend then places the tables where its kernels can read them: in place on
the CPU, packed with the argument block into one upload on the GPU.
"""
import numpy

from fast.backends.abi import StepArgs


TABLE_FIELDS = ("chunk_tensor", "chunk_begin", "chunk_end", "tensor_offset", "tensor_active", "grad",
                "hparams", "hook_kind", "hook_a", "hook_b", "hook_noise", "grad_out")


class StepSpec(object):
    """A StepArgs whose table fields are still host arrays (see the module doc)."""

    def __init__(self):
        self.args = StepArgs()
        self.tables = {}
        self.keep = []
        #: the gradient arrays the ``grad`` table points into (kept alive with the spec)
        self.grads = None
        #: what the backend made of the tables at its last call (None: nothing yet,
        #: or a table was set since); see the backends' ``_place``
        self.placed = None

    def table(self, field, host_array):
        """Set table ``field`` to a (small) host array."""
        if field not in TABLE_FIELDS:
            raise KeyError("{} is not a table field of FastStepArgs".format(field))
        self.tables[field] = numpy.ascontiguousarray(host_array)
        self.placed = None

    def refill(self, field, values):
        """Write ``values`` into table ``field`` in place (same shape and dtype), so the
        table keeps its address; sets the table if it has none of that shape yet."""
        current = self.tables.get(field)
        if current is None or current.shape != numpy.shape(values):
            self.table(field, numpy.asarray(values, dtype=numpy.float64 if current is None else current.dtype))
        else:
            current[...] = values

    def pointer(self, field, address, owner=None):
        """Set a buffer field to a device address (``owner`` is kept alive)."""
        setattr(self.args, field, address)
        if owner is not None:
            self.keep.append(owner)

    def __getattr__(self, name):
        return getattr(self.__dict__["args"], name)

    def __setattr__(self, name, value):
        if name in ("args", "tables", "keep", "grads", "placed"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.args, name, value)
