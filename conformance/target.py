"""What the suite runs against: an implementation module on a device.

The command line, its worker processes and the pytest plugin all load the implementation
through `Target.load`, so each of them sees the same module and the same array module.
Importing this module is cheap (no NumPy, no implementation): the pytest plugin imports it
at start-up.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

#: The suite levels (conformance.generators.LEVELS; a test keeps the two equal).
LEVEL_NAMES = ("smoke", "ci", "full")
DEVICES = ("cpu", "gpu", "gpu-emulated")
FP16_COMPUTE = ("float32", "float16")


class UsageError(Exception):
    """Bad input from the user (a command-line option, a module that cannot be used)."""


@dataclass(frozen=True)
class Target:
    """An implementation module (by import name) on a device.

    `fp16_compute` is the dtype the implementation computes in for float16 storage without a
    master: a declared property of the implementation, never read from it. `params`: how the
    case's parameters are made and given their gradients (conformance.params: the
    implementation's own `Parameter`, or Chainer's, on a link, through `backward`).
    """
    impl: str = "fast"
    device: str = "cpu"
    fp16_compute: str = "float32"
    params: str = "impl"

    def load(self):
        """(implementation module, array module); UsageError when either cannot be had."""
        from .adapter import load_impl
        try:
            impl = load_impl(self.impl)
        except ImportError as exc:
            raise UsageError(f"--impl {self.impl}: {exc}") from exc
        if self.params == "chainer":
            if self.device != "cpu":
                raise UsageError("--params chainer runs on the CPU (Chainer's links hold NumPy arrays here)")
            try:
                import chainer  # noqa: F401
            except ImportError as exc:
                raise UsageError(f"--params chainer needs Chainer 7.8.1 installed ({exc}); the "
                                 f"Makefile's .venv-chainer has it") from exc
        return impl, array_module(self.device, self.impl)


def array_module(device: str, impl_name: str = "fast"):
    """The array module the case's arrays are made in. ``gpu-emulated``: NumPy arrays that
    the implementation runs through its GPU code path on the host (it must offer
    ``<impl>.backends.emulate_cuda_on_host``, as fast does)."""
    import numpy
    if device == "cpu":
        return numpy
    if device == "gpu-emulated":
        try:
            backends = importlib.import_module(impl_name + ".backends")
            backends.emulate_cuda_on_host()
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"--device gpu-emulated needs {impl_name}.backends.emulate_cuda_on_host "
                             f"({exc})") from exc
        return numpy
    if device != "gpu":
        raise UsageError(f"unknown device {device!r}; expected one of {DEVICES}")
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise UsageError(f"--device gpu needs CuPy and a CUDA device ({exc})") from exc
    if count == 0:
        raise UsageError("--device gpu needs a CUDA device; CuPy sees none")
    return cupy


def describe_device(device: str) -> dict:
    """What a report names about the device: for a GPU its name, compute capability and the
    driver's, CUDA runtime's and CuPy's versions; for the others the host."""
    import platform
    if device != "gpu":
        return {"device": device, "host": platform.processor() or platform.machine()}
    import cupy
    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"device": "gpu", "gpu": name, "compute_capability": f"{props['major']}.{props['minor']}",
            "driver": _cuda_version(runtime.driverGetVersion()),
            "cuda_runtime": _cuda_version(runtime.runtimeGetVersion()), "cupy": cupy.__version__}


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"
