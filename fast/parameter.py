"""``fast.Parameter``: an array to optimize, its gradient and its update rule.

After ``opt.setup``, the engine moves the array into its group's flat buffer
and ``p.data`` becomes a view of that buffer. Assigning ``p.data = x`` copies
``x`` into the view (same shape; values cast to the parameter's dtype), so
the flat buffer, the master and the state stay where the kernels find them.
Gradients are read where the user puts them: ``p.grad`` may be any array of
the parameter's shape and dtype on the parameter's device, or None (zeros).
"""
import numpy

FLOAT_DTYPES = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def array_device(array):
    """'cpu' for NumPy arrays, 'cuda:<id>' for CuPy arrays, None otherwise."""
    if isinstance(array, numpy.ndarray):
        return "cpu"
    device = getattr(array, "device", None)
    if device is not None and type(array).__module__.startswith("cupy"):
        return "cuda:{}".format(getattr(device, "id", 0))
    return None


class Parameter(object):
    """A floating-point array updated by an optimizer."""

    def __init__(self, array, name=None):
        device = array_device(array)
        if device is None:
            raise TypeError("Parameter needs a NumPy or CuPy array, got {}".format(type(array).__name__))
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError("Parameter dtype must be float16, float32 or float64, got {}".format(array.dtype))
        self._data = array
        self._grad = None
        self.name = name
        self.update_rule = None

    # --- the value ---
    @property
    def data(self):
        """The parameter array (a view of the engine's flat buffer after setup)."""
        return self._data

    @data.setter
    def data(self, value):
        """Copy ``value`` into the parameter (same shape; cast to its dtype)."""
        shape = tuple(numpy.shape(value))
        if shape != self.shape:
            raise ValueError("cannot assign an array of shape {} to parameter {!r} of shape {}".format(
                shape, self.name, self.shape))
        self._data[...] = value

    array = data

    def adopt_storage(self, view):
        """Make ``view`` (already holding the parameter's values, same shape) the
        parameter's storage. The engine calls this (through fast.boundary, the only caller)
        at setup with a view of its flat buffer, and, in the fixed profile while custom
        hooks run, with the view of an fp16 parameter's fp32 master."""
        if tuple(view.shape) != self.shape:
            raise ValueError("cannot adopt an array of shape {} as the storage of parameter {!r} "
                             "of shape {}".format(tuple(view.shape), self.name, self.shape))
        self._data = view

    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return int(self._data.size)

    @property
    def device(self):
        return array_device(self._data)

    # --- the gradient ---
    @property
    def grad(self):
        """The gradient (already multiplied by the loss scale), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            check_grad(self.name, value, self._data)
        self._grad = value

    def carried_loss_scale(self, optimizer_scale):
        """The loss scale this parameter's gradient carries: the optimizer's, since
        gradients handed to ``fast`` are multiplied by it (fast.boundary)."""
        return optimizer_scale

    def cleargrad(self):
        self._grad = None

    def zerograd(self):
        self._grad = self._data * 0 if self.device != "cpu" else numpy.zeros(self.shape, dtype=self.dtype)

    def __repr__(self):
        return "fast.Parameter(name={!r}, shape={}, dtype={})".format(self.name, self.shape, self.dtype)


def check_grad(name, grad, array):
    """Raise a clear error unless ``grad`` can serve as the gradient of the parameter
    ``name`` whose array is ``array``."""
    label = name or "<unnamed>"
    device = array_device(grad)
    if device is None:
        raise TypeError("gradient of parameter {!r} must be an array, got {}".format(label, type(grad).__name__))
    pdevice = array_device(array)
    if device != pdevice:
        raise ValueError("gradient of parameter {!r} is on {} but the parameter is on {}".format(label, device, pdevice))
    if tuple(grad.shape) != tuple(array.shape):
        raise ValueError("gradient of parameter {!r} has shape {}, expected {}".format(
            label, tuple(grad.shape), tuple(array.shape)))
    if grad.dtype != array.dtype:
        raise TypeError("gradient of parameter {!r} has dtype {}, expected {}".format(label, grad.dtype, array.dtype))
