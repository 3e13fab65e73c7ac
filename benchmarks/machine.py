"""A description of the machine a run measured, for the report's header and file name."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from .devices import Device, cpu_core_count

_PACKAGES = ("numpy", "pytest-benchmark", "torch", "cupy-cuda13x", "cupy-cuda12x", "cupy")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gpu_name(device: Device) -> str | None:
    """The GPU's name, with its compute capability and the driver's, CUDA runtime's and NVRTC's
    versions (the report must say which stack produced its figures)."""
    if not device.is_gpu:
        return None
    from conformance.target import describe_device
    from fast.backends.nvrtc import nvrtc_version
    gpu = describe_device("gpu")
    return (f"{gpu['gpu']}, compute capability {gpu['compute_capability']}, driver {gpu['driver']}, "
            f"CUDA runtime {gpu['cuda_runtime']}, NVRTC {'.'.join(map(str, nvrtc_version()))}")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), where the OS tells."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe(device: Device, repo: Path) -> dict:
    """What the report states about the run: machine, cores, versions, date, commit."""
    return {
        "load_average_end": load_average(),
        "device": device.kind,
        "cpu": cpu_model(),
        "cpu_cores": cpu_core_count(),
        "threads": device.threads,
        "memory_bytes": memory_total_bytes(),
        "omp_env": {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "gpu": gpu_name(device),
        "platform": platform.platform(),
        "versions": package_versions(),
        "commit": git_commit(repo),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_slug(description: dict) -> str:
    """A file-name-safe machine name: `cpu-amd-epyc-2c` or `gpu-nvidia-h100-80gb-hbm3`."""
    if description["device"] == "gpu":
        label = "gpu-" + description["gpu"].split(",")[0]
    else:
        label = f"cpu-{description['cpu']}-{description['cpu_cores']}c"
    label = re.sub(r"\((r|tm)\)|cpu @.*|processor", "", label.lower())
    return re.sub(r"[^a-z0-9]+", "-", label).strip("-")
