"""``StepSpec``: the argument block of one kernel call, before it is placed.

The engine fills the large buffers' addresses (parameter, master, state,
gradients) itself and hands every small per-call table (chunk table, active
flags, pointer tables, hyperparameters, hook scalars) as a host array; the
backend then places the tables where its kernels can read them: in place on
the CPU, packed with the argument block into one upload on the GPU.
"""
import ctypes

import numpy

MAX_STATE = 3
N_HPARAMS = 12


class StepArgs(ctypes.Structure):
    """ctypes mirror of ``FastStepArgs`` in kernels/step_args.h."""
    _fields_ = [
        ("n_tensors", ctypes.c_int64),
        ("n_chunks", ctypes.c_int64),
        ("chunk_tensor", ctypes.c_void_p),
        ("chunk_begin", ctypes.c_void_p),
        ("chunk_end", ctypes.c_void_p),
        ("tensor_offset", ctypes.c_void_p),
        ("tensor_active", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("param", ctypes.c_void_p),
        ("master", ctypes.c_void_p),
        ("state", ctypes.c_void_p * MAX_STATE),
        ("hparams", ctypes.c_void_p),
        ("unscale_divisor", ctypes.c_double),
        ("unscale", ctypes.c_int32),
        ("unscale_first", ctypes.c_int32),
        ("hooks_read_master", ctypes.c_int32),
        ("n_hooks", ctypes.c_int32),
        ("hook_kind", ctypes.c_void_p),
        ("hook_a", ctypes.c_void_p),
        ("hook_b", ctypes.c_void_p),
        ("hook_noise", ctypes.c_void_p),
        ("tensor_gsq", ctypes.c_void_p),
        ("tensor_psq", ctypes.c_void_p),
        ("tensor_nonfinite", ctypes.c_void_p),
        ("grad_out", ctypes.c_void_p),
        ("out_param_dtype", ctypes.c_int32),
    ]


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
