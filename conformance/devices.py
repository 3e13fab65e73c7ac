"""The devices a suite runs on: the array module of each, and what a report says about it.

``cpu``: NumPy arrays. ``gpu``: CuPy arrays on the current CUDA device. ``gpu-emulated``: NumPy
arrays that the implementation runs through its GPU code path on the host (the implementation
must offer ``<impl>.backends.emulate_cuda_on_host``, as fast does).
"""
from __future__ import annotations

import importlib
import platform

DEVICES = ("cpu", "gpu", "gpu-emulated")


class DeviceError(Exception):
    """The device asked for is not available here (a usage error: exit code 2)."""


def array_module(device: str, impl_name: str = "fast"):
    """The array module the cases' arrays are made in, with the device prepared."""
    import numpy
    if device == "cpu":
        return numpy
    if device == "gpu-emulated":
        try:
            backends = importlib.import_module(impl_name + ".backends")
            backends.emulate_cuda_on_host()
        except (ImportError, AttributeError) as exc:
            raise DeviceError(f"--device gpu-emulated needs {impl_name}.backends.emulate_cuda_on_host "
                              f"({exc})") from exc
        return numpy
    if device == "gpu":
        try:
            import cupy
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise DeviceError(f"--device gpu needs CuPy and a CUDA device ({exc})") from exc
        if count == 0:
            raise DeviceError("--device gpu needs a CUDA device; CuPy sees none")
        return cupy
    raise DeviceError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def describe(device: str) -> dict:
    """What a report names about the device: for a GPU its name, compute capability, the
    driver's, CUDA runtime's and CuPy's versions; for the others the host."""
    if device != "gpu":
        return {"device": device, "host": platform.processor() or platform.machine()}
    import cupy
    runtime = cupy.cuda.runtime
    device_id = cupy.cuda.Device().id
    props = runtime.getDeviceProperties(device_id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"device": "gpu", "gpu": name, "compute_capability": f"{props['major']}.{props['minor']}",
            "driver": _cuda_version(runtime.driverGetVersion()),
            "cuda_runtime": _cuda_version(runtime.runtimeGetVersion()), "cupy": cupy.__version__}


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"
