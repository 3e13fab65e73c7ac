"""Backends of the engine: where a group's buffers live and how its kernels run.

Every backend offers the same small interface, so that fast.engine has one
code path for every device:

- ``xp``: the array module of its buffers (NumPy or CuPy);
- ``allocate(n, dtype, slot, beside=None)``, ``pointer(array)``, ``to_host(array)``;
- ``update``, ``reduce``, ``materialize``, ``check_finite``: one launch (or
  one compiled call) over a group's chunk table, taking a ``StepSpec``;
- ``asynchronous``: True where kernels run behind the host's back (CUDA), so
  the skip decision of dynamic loss scaling stays on the device and the host
  settles its bookkeeping later (see fast.optimizer).

``cpu`` compiles fast/kernels/cpu_driver.cpp with the system C++ compiler and
calls it through ctypes. ``cuda`` runs cuda_driver.cu (the same update math),
compiled by the project's NVRTC build (``nvrtc``) and loaded by CuPy;
``cuda_emulator`` runs that same driver on the host, so CI (which has no GPU)
executes the device code path. ``abi`` holds the numbers all of them share with
the kernels.
"""
import numpy


_host_override = None


def emulate_cuda_on_host(enabled=True):
    """Give NumPy parameters set up from now on to the emulated CUDA backend
    (fast.backends.cuda_emulator) instead of the CPU one: the GPU code path, run on
    the host, for tests and ``python -m conformance run --device gpu-emulated``."""
    global _host_override
    if enabled:
        from fast.backends.cuda_emulator import EmulatedCudaBackend
        _host_override = EmulatedCudaBackend()
    else:
        _host_override = None


def for_array(array):
    """The backend that owns arrays like ``array`` (NumPy: cpu, CuPy: cuda)."""
    if isinstance(array, numpy.ndarray):
        if _host_override is not None:
            return _host_override
        from fast.backends.cpu import CPU
        return CPU
    if type(array).__module__.startswith("cupy"):
        from fast.backends.cuda import cuda_backend
        return cuda_backend(array.device.id)
    raise TypeError("no backend for arrays of type {}".format(type(array).__name__))
