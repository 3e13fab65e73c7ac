"""The GPU build: cuda_driver.cu compiled by NVRTC with the project's own flags.

CuPy's ``RawModule`` appends ``-ftz=true`` to every compile and leaves NVRTC's
default ``--fmad=true``, so the same source would flush float32 subnormals to zero
and contract ``a * b + c`` into fused multiply-adds on the GPU while the CPU build
rounds every operation on its own. The project therefore calls NVRTC itself, with
exactly ``FLAGS`` (nothing is appended), and hands the cubin to CuPy only to load.

What a build is made of, and so what its cache key hashes: the kernel sources
(read from ``fast.backends.cpu.KERNEL_DIR`` at build time and handed to NVRTC in
memory, so the text compiled is the text hashed), the CUDA headers the kernels
include, ``FLAGS`` and any extra flags, the target architecture, the instance
names and NVRTC's version. Builds are cached as one JSON file each in the CPU
library's cache directory (``FAST_KERNEL_CACHE``, else ``fast/_build``, else
``~/.cache/fast-kernels``), written under a temporary name and renamed into place.

Nothing here needs a GPU or a driver: NVRTC is a library (the ``nvidia-cuda-nvrtc``
wheel), and ``cuda_fp16.h`` comes from ``nvidia-cuda-runtime``.
"""
import base64
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass

from fast.backends import abi_header, cpu

#: The compile flags of every GPU build, and why:
FLAGS = (
    "--std=c++17",
    # IEEE float32: subnormal inputs and results are kept, as on the CPU and in the reference
    # (the error model's absolute term is half the smallest subnormal).
    "-ftz=false",
    # Correctly rounded division and square root (div.rn, sqrt.rn), as IEEE and the CPU have.
    "--prec-div=true",
    "--prec-sqrt=true",
    # No contraction into fused multiply-add: every product and sum rounds on its own, as the
    # CPU build's -ffp-contract=off makes them (NVRTC's default is --fmad=true).
    "--fmad=false",
)
TRANSLATION_UNIT = "cuda_driver.cu"
HEADERS = (abi_header.HEADER, "update_math.h", "element_pipeline.h")
#: The CUDA headers the kernels include (through cuda_fp16.h): part of the cache key.
CUDA_HEADERS = ("cuda_fp16.h", "cuda_fp16.hpp")
_CACHE_FORMAT = 1


class GpuBuildError(RuntimeError):
    """The GPU kernels could not be built (NVRTC missing, or the source does not compile)."""


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # ImportError, or the library itself not found
        raise GpuBuildError(
            "the GPU build needs NVRTC: pip install cupy-cuda13x nvidia-cuda-nvrtc "
            "nvidia-cuda-runtime ({}: {})".format(type(exc).__name__, exc)) from exc
    return nvrtc


def nvrtc_version():
    """NVRTC's (major, minor)."""
    return tuple(_nvrtc().getVersion())


def supported_archs():
    """The SM numbers (75, 80, 90, ...) this NVRTC compiles for."""
    return tuple(int(a) for a in _nvrtc().getSupportedArchs())


def cuda_include_dir():
    """The directory holding cuda_fp16.h: the nvidia-cuda-runtime wheel's, else $CUDA_PATH's."""
    candidates = []
    try:
        from cuda import pathfinder
        candidates.append(pathfinder.find_nvidia_header_directory("cudart"))
    except Exception:  # pathfinder missing, or it found nothing
        pass
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME")):
        if root:
            candidates.append(os.path.join(root, "include"))
    for directory in candidates:
        if directory and os.path.exists(os.path.join(directory, "cuda_fp16.h")):
            return directory
    raise GpuBuildError("cuda_fp16.h not found: pip install nvidia-cuda-runtime (or set CUDA_PATH)")


def _kernel_texts():
    """{file name: text} of the translation unit and the kernel headers, as compiled now
    (abi.h checked against fast.backends.abi's table)."""
    texts = {}
    for name in (TRANSLATION_UNIT,) + HEADERS:
        with open(os.path.join(cpu.KERNEL_DIR, name)) as f:
            texts[name] = f.read()
    abi_header.check_header(texts[abi_header.HEADER])
    return texts


def _arch_flag(arch):
    """``sm_NN`` builds a cubin (and its PTX); ``compute_NN`` builds PTX only."""
    match = re.fullmatch(r"(?:sm|compute)_(\d+)[af]?", arch)
    if match is None:
        raise ValueError("arch must look like sm_90 or compute_90, not {!r}".format(arch))
    number = int(match.group(1))
    if number not in supported_archs():
        raise GpuBuildError("NVRTC {}.{} cannot build for {}; it supports sm_{}".format(
            *nvrtc_version(), arch, ", sm_".join(map(str, supported_archs()))))
    return "-arch=" + arch


def device_arch(compute_capability, supported):
    """The arch to build for a device of ``compute_capability`` ("90"): its own cubin when
    NVRTC knows it; else PTX of the newest older arch, which the driver compiles on load
    (PTX states every rounding and ftz mode, so the driver's JIT cannot change them)."""
    cc = int(compute_capability)
    if cc in supported:
        return "sm_{}".format(cc)
    older = [a for a in supported if a < cc]
    if not older:
        raise GpuBuildError("no NVRTC target for compute capability {} (NVRTC supports sm_{})".format(
            cc, ", sm_".join(map(str, supported))))
    return "compute_{}".format(max(older))


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reports for one kernel."""
    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    shared_memory: int


@dataclass(frozen=True)
class GpuBuild:
    """One NVRTC compile of the driver: its PTX, its cubin (None for a compute_NN arch),
    the lowered (mangled) name of every requested instance and ptxas's verbose log."""
    arch: str
    flags: tuple
    nvrtc_version: tuple
    ptx: str
    cubin: bytes
    lowered_names: dict
    log: str

    def resources(self):
        """{instance name: KernelResources} from ptxas's verbose log (cubin builds only)."""
        by_mangled = _parse_ptxas_log(self.log)
        return {name: by_mangled[mangled] for name, mangled in self.lowered_names.items()
                if mangled in by_mangled}

    def entry_ptx(self, name):
        """The PTX of one instance as a stand-alone module: the module's header and
        declarations, then that instance's entry."""
        prelude, entries = split_ptx(self.ptx)
        return prelude + entries[self.lowered_names[name]]


_PTXAS_FUNCTION = re.compile(r"Function properties for (\S+)\s*\n"
                             r"\s*ptxas\s+\.\s+(\d+) bytes stack frame, (\d+) bytes spill stores, "
                             r"(\d+) bytes spill loads")
_PTXAS_USAGE = re.compile(r"Compiling entry function '(\S+)'.*?Used (\d+) registers([^\n]*)", re.S)


def _parse_ptxas_log(log):
    frames = {m.group(1): tuple(int(m.group(k)) for k in (2, 3, 4)) for m in _PTXAS_FUNCTION.finditer(log)}
    out = {}
    for m in _PTXAS_USAGE.finditer(log):
        mangled, registers, rest = m.group(1), int(m.group(2)), m.group(3)
        shared = re.search(r"(\d+) bytes smem", rest)
        stack, stores, loads = frames.get(mangled, (0, 0, 0))
        out[mangled] = KernelResources(registers, stores, loads, stack, int(shared.group(1)) if shared else 0)
    return out


def split_ptx(ptx):
    """(prelude, {mangled name: entry text}): the module's text before its first kernel, and
    each ``.entry`` from its directive to its closing brace."""
    starts = [m.start() for m in re.finditer(r"^(?:\.visible |\.weak )?\.entry ", ptx, re.M)]
    if not starts:
        return ptx, {}
    entries = {}
    for begin, end in zip(starts, starts[1:] + [len(ptx)]):
        text = ptx[begin:end]
        close = text.find("\n}\n")
        text = text[:close + 3] if close >= 0 else text
        entries[re.search(r"\.entry (\w+)", text).group(1)] = text
    return ptx[:starts[0]], entries


def _cache_key(texts, arch, names, flags):
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    include = cuda_include_dir()
    for name in CUDA_HEADERS:
        path = os.path.join(include, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(name.encode() + b"\0" + f.read() + b"\0")
    digest.update("\0".join(flags).encode() + b"\1" + arch.encode() + b"\1")
    digest.update("\0".join(names).encode() + b"\1")
    digest.update("nvrtc {}.{} format {}".format(*nvrtc_version(), _CACHE_FORMAT).encode())
    return digest.hexdigest()[:24]


def _load_cached(path):
    """The build stored at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            raw = json.load(f)
        return GpuBuild(arch=raw["arch"], flags=tuple(raw["flags"]), nvrtc_version=tuple(raw["nvrtc_version"]),
                        ptx=raw["ptx"], cubin=base64.b64decode(raw["cubin"]) if raw["cubin"] else None,
                        lowered_names=raw["lowered_names"], log=raw["log"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(path, build):
    record = {"arch": build.arch, "flags": list(build.flags), "nvrtc_version": list(build.nvrtc_version),
              "ptx": build.ptx, "cubin": base64.b64encode(build.cubin).decode() if build.cubin else None,
              "lowered_names": build.lowered_names, "log": build.log}
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=os.path.dirname(path))
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(names, arch="sm_90", extra_flags=(), cache=True):
    """Compile the driver for ``arch``, instantiating the kernels ``names`` (C++ name
    expressions), or return the cached build of exactly these inputs."""
    arch_flag = _arch_flag(arch)
    texts = _kernel_texts()
    flags = FLAGS + tuple(extra_flags)
    path = os.path.join(cpu.cache_dir(), "cudamodule-{}.json".format(_cache_key(texts, arch, names, flags)))
    if cache:
        cached = _load_cached(path)
        if cached is not None:
            return cached
    result = _compile(texts, names, flags + (arch_flag, "-I" + cuda_include_dir()), arch)
    if cache:
        _store(path, result)
    return result


def _compile(texts, names, options, arch):
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(texts[TRANSLATION_UNIT], TRANSLATION_UNIT,
                                  [texts[h].encode() for h in HEADERS], [h.encode() for h in HEADERS])
    try:
        for name in names:
            nvrtc.addNameExpression(program, name)
        verbose = ("-Xptxas", "-v") if arch.startswith("sm_") else ()
        try:
            nvrtc.compileProgram(program, list(options + verbose))
        except nvrtc.NVRTCError as exc:
            raise GpuBuildError("NVRTC could not compile {} for {} ({}):\n{}".format(
                TRANSLATION_UNIT, arch, exc, nvrtc.getProgramLog(program)[-6000:])) from exc
        ptx = nvrtc.getPTX(program)
        ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
        cubin = bytes(nvrtc.getCUBIN(program)) if arch.startswith("sm_") else None
        lowered = {name: nvrtc.getLoweredName(program, name) for name in names}
        log = nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)
    return GpuBuild(arch=arch, flags=tuple(o for o in options if not o.startswith("-I")),
                    nvrtc_version=nvrtc_version(), ptx=ptx.rstrip("\0"), cubin=cubin,
                    lowered_names=lowered, log=log)


# ---- what the PTX may hold: the IEEE contract of the build, checked in CI ----

_FTZ = re.compile(r"\.ftz\b")
_FMA = re.compile(r"\b(?:fma|mad)\.(?:rn\.|rz\.|rm\.|rp\.)?(?:ftz\.)?(?:sat\.)?f(?:16|32|64)\b")
_APPROX = re.compile(r"\.approx\b|\bdiv\.full\.")
_UNROUNDED = re.compile(r"\b(?:add|sub|mul)\.f(?:32|64)\b")


def ieee_violations(ptx):
    """{what: count} of PTX instructions that break the build's IEEE contract: flush to zero,
    fused multiply-add, approximate division/square root/reciprocal, and float add/sub/mul
    without an explicit rounding mode (which ptxas is free to contract into an fma)."""
    counts = {"ftz": len(_FTZ.findall(ptx)), "fma": len(_FMA.findall(ptx)),
              "approx": len(_APPROX.findall(ptx)), "contractible": len(_UNROUNDED.findall(ptx))}
    return {k: v for k, v in counts.items() if v}
