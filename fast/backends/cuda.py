"""CUDA backend: the kernels of cuda_driver.cu, built by the project's own NVRTC
compile (fast.backends.nvrtc: IEEE float32, no contraction) and loaded by CuPy.

UNVERIFIED ON A GPU: no GPU was available while this was written. What CI
checks without one: every kernel instance requested here compiles with NVRTC
for sm_80 and sm_90, its PTX keeps the IEEE contract (no flush to zero, no
fused multiply-add, no approximate division or square root) and no kernel
spills (tests/fast/test_fast_gpu_build.py); and fast.backends.cuda_emulator
runs this class's launch logic (argument packing, grids, the device skip flag,
the two-pass reduction) over cuda_driver.cu compiled for the host, in
tests/fast/test_fast_cuda_emulated.py.

Launch model, per group per step: one ``fast_update_kernel<Rule, Mode>``
over the group's chunk table. The argument block (``FastStepArgs``) and the
small tables it points to travel in one asynchronous copy from pinned host
memory. ``fast_check_kernel`` raises a device flag that the update kernels
read, so a dynamic-loss-scaling step launches its updates without waiting
for the check.

``python -m fast.backends.cuda --ptx DIR [--arch sm_90]`` writes the PTX of
every instance as the backend builds it and prints ptxas's register, spill and
shared-memory figures per kernel; it needs no GPU.
"""
import argparse
import collections
import ctypes
import os
import sys

import numpy

from fast.backends import nvrtc
from fast.backends.abi import LAUNCH_KINDS, MODES, RULES, launch_kind

BLOCK = 256
MAX_GRID = 65535
LAUNCH_UPDATE = launch_kind("LAUNCH_UPDATE")
LAUNCH_REDUCE = launch_kind("LAUNCH_REDUCE")
LAUNCH_SEGMENT_SUM = launch_kind("LAUNCH_SEGMENT_SUM")
LAUNCH_MATERIALIZE = launch_kind("LAUNCH_MATERIALIZE")
LAUNCH_CHECK = launch_kind("LAUNCH_CHECK")


def kernel_name(kind, kernel_id=None, mode=None):
    """The C++ name of one kernel instance (``kind``: a launch kind of fast.backends.abi)."""
    _, kernel = LAUNCH_KINDS[kind]
    if kind == LAUNCH_UPDATE:
        return "{}<{}, {}>".format(kernel, RULES[kernel_id], MODES[mode])
    if kind == LAUNCH_SEGMENT_SUM:
        return kernel
    return "{}<{}>".format(kernel, MODES[mode])


def instantiations():
    """(kind, name) of every kernel instance the backend asks NVRTC for."""
    out = [(LAUNCH_UPDATE, kernel_name(LAUNCH_UPDATE, k, m)) for k in range(len(RULES)) for m in MODES]
    out += [(kind, kernel_name(kind, mode=m)) for kind in (LAUNCH_REDUCE, LAUNCH_MATERIALIZE, LAUNCH_CHECK)
            for m in MODES]
    return out + [(LAUNCH_SEGMENT_SUM, kernel_name(LAUNCH_SEGMENT_SUM))]


def build(arch="sm_90", extra_flags=(), cache=True):
    """The project's NVRTC build of every instance (fast.backends.nvrtc)."""
    return nvrtc.build([name for _, name in instantiations()], arch=arch, extra_flags=extra_flags,
                       cache=cache)


def _align(n, to=16):
    return (n + to - 1) // to * to


class CudaBackend(object):
    """Device memory of one GPU; kernels on the current CuPy stream.

    The device primitives (``xp``, ``pointer``, ``to_host``, ``_empty_bytes``,
    ``_upload``, ``_launch``) are the only methods that touch CuPy; the
    emulator replaces exactly these.
    """

    name = "cuda"
    asynchronous = True

    def __init__(self, device_id=0):
        import cupy
        self.xp = cupy
        self.device_id = device_id
        with cupy.cuda.Device(device_id) as device:
            arch = nvrtc.device_arch(device.compute_capability, nvrtc.supported_archs())
            self.gpu_build = build(arch)
            self._module = cupy.cuda.function.Module()
            self._module.load(self.gpu_build.cubin if self.gpu_build.cubin is not None
                              else self.gpu_build.ptx.encode())
        self._functions = {}
        self._in_flight = collections.deque()  # (event, pinned buffer) of uploads not yet done

    # --- device primitives ---
    def allocate(self, n, dtype, slot, beside=None):
        return self.xp.empty(n, dtype=dtype)

    @staticmethod
    def pointer(array):
        return array.data.ptr

    @staticmethod
    def to_host(array):
        return array.get()

    def _empty_bytes(self, n):
        return self.xp.empty(n, dtype=numpy.uint8)

    def _upload(self, device_buffer, host_bytes):
        """Copy ``host_bytes`` into ``device_buffer`` without waiting: through pinned memory
        that is kept until the copy is done."""
        cupy = self.xp
        while self._in_flight and self._in_flight[0][0].done:
            self._in_flight.popleft()
        pinned = cupy.cuda.alloc_pinned_memory(len(host_bytes))
        staging = numpy.frombuffer(pinned, dtype=numpy.uint8, count=len(host_bytes))
        staging[...] = host_bytes
        stream = cupy.cuda.get_current_stream()
        device_buffer.data.copy_from_host_async(pinned.ptr, len(host_bytes), stream)
        event = cupy.cuda.Event(block=False, disable_timing=True)
        event.record(stream)
        self._in_flight.append((event, pinned))

    def _launch(self, kind, kernel_id, mode, grid, args_buffer, *extra):
        name = kernel_name(kind, kernel_id, mode)
        function = self._functions.get(name)
        if function is None:
            function = self._functions[name] = self._module.get_function(self.gpu_build.lowered_names[name])
        function((grid,), (BLOCK,), (args_buffer,) + extra)

    # --- placing a StepSpec ---
    def _place(self, spec):
        """One device buffer holding the argument block and its tables; one upload."""
        header = _align(ctypes.sizeof(spec.args), 64)
        layout, size = {}, header
        for field, table in spec.tables.items():
            layout[field] = size
            size = _align(size + table.nbytes)
        device = self._empty_bytes(size)
        base = self.pointer(device)
        for field, offset in layout.items():
            setattr(spec.args, field, base + offset)
        host = numpy.zeros(size, dtype=numpy.uint8)
        host[:ctypes.sizeof(spec.args)] = numpy.frombuffer(bytes(spec.args), dtype=numpy.uint8)
        for field, offset in layout.items():
            raw = spec.tables[field].view(numpy.uint8).reshape(-1)
            host[offset:offset + raw.size] = raw
        self._upload(device, host)
        spec.placed = device  # the argument block now points into it: it must stay alive
        return device

    @staticmethod
    def _grid(spec):
        return max(1, min(int(spec.args.n_chunks), MAX_GRID))

    # --- kernels ---
    def update(self, kernel_id, mode, spec, skip=None):
        """One launch; ``skip`` (a device int32 flag or None) makes it do nothing when set."""
        args = self._place(spec)
        flag = skip if skip is not None else self._never()
        self._launch(LAUNCH_UPDATE, kernel_id, mode, self._grid(spec), args, flag)

    def reduce(self, mode, spec):
        """Per-chunk sums, then per-tensor sums in chunk order (two launches)."""
        n_chunks = max(int(spec.args.n_chunks), 1)
        chunk_gsq = self.xp.zeros(n_chunks, dtype=numpy.float64)
        chunk_psq = self.xp.zeros(n_chunks, dtype=numpy.float64)
        args = self._place(spec)
        self._launch(LAUNCH_REDUCE, None, mode, self._grid(spec), args, chunk_gsq, chunk_psq)
        tensors_grid = max(1, min((int(spec.args.n_tensors) + BLOCK - 1) // BLOCK, MAX_GRID))
        self._launch(LAUNCH_SEGMENT_SUM, None, None, tensors_grid, args, chunk_gsq, chunk_psq)
        spec.keep += [chunk_gsq, chunk_psq]

    def materialize(self, mode, spec):
        self._launch(LAUNCH_MATERIALIZE, None, mode, self._grid(spec), self._place(spec))

    def check_finite(self, mode, spec, found=None):
        """Per-tensor flags into spec's tensor_nonfinite; ``found`` (device int32) is raised
        when any element is inf or NaN."""
        found = found if found is not None else self.xp.zeros(1, dtype=numpy.int32)
        self._launch(LAUNCH_CHECK, None, mode, self._grid(spec), self._place(spec), found)
        spec.keep.append(found)

    def _never(self):
        never = getattr(self, "_never_flag", None)
        if never is None:
            never = self._never_flag = self.xp.zeros(1, dtype=numpy.int32)
        return never

    def start_copy_to_host(self, array):
        """An asynchronous copy of a small device array; ``.wait()`` returns it on the host."""
        return _PendingCopy(self.xp, array)


class _PendingCopy(object):
    def __init__(self, cupy, array):
        self._pinned = cupy.cuda.alloc_pinned_memory(array.nbytes)
        self._host = numpy.frombuffer(self._pinned, dtype=array.dtype, count=array.size)
        stream = cupy.cuda.get_current_stream()
        array.data.copy_to_host_async(self._pinned.ptr, array.nbytes, stream)
        self._event = cupy.cuda.Event(block=False, disable_timing=True)
        self._event.record(stream)

    def wait(self):
        self._event.synchronize()
        return self._host.copy()


_backends = {}


def cuda_backend(device_id):
    """The backend of GPU ``device_id`` (its module compiled once)."""
    if device_id not in _backends:
        _backends[device_id] = CudaBackend(device_id)
    return _backends[device_id]


# ---- python -m fast.backends.cuda --ptx DIR [--arch sm_90] ----

def _file_name(name):
    return "".join(c if c.isalnum() or c == "_" else "-" for c in name.replace(", ", "-")).strip("-")


def write_ptx(directory, arch="sm_90", extra_flags=()):
    """Write the module's PTX and one stand-alone PTX file per instance under ``directory``;
    return the build."""
    result = build(arch, extra_flags=extra_flags)
    per_kernel = os.path.join(directory, arch)
    os.makedirs(per_kernel, exist_ok=True)
    with open(os.path.join(directory, "cuda_driver.{}.ptx".format(arch)), "w") as f:
        f.write(result.ptx)
    for _, name in instantiations():
        with open(os.path.join(per_kernel, _file_name(name) + ".ptx"), "w") as f:
            f.write(result.entry_ptx(name))
    return result


def resource_table(result):
    """Markdown rows: kernel, registers, spill stores/loads, stack frame, shared memory."""
    resources = result.resources()
    rows = ["| kernel | registers | spill stores (B) | spill loads (B) | stack frame (B) | shared (B) |",
            "|---|---:|---:|---:|---:|---:|"]
    for _, name in instantiations():
        r = resources.get(name)
        cells = ("-",) * 5 if r is None else (r.registers, r.spill_stores, r.spill_loads, r.stack_frame,
                                               r.shared_memory)
        rows.append("| `{}` | {} | {} | {} | {} | {} |".format(name, *cells))
    return "\n".join(rows)


def contract_problems(result):
    """What breaks the GPU build's contract: IEEE violations in the PTX, instances NVRTC did
    not emit, kernels that spill to local memory."""
    problems = ["{} PTX instruction(s) of kind {}".format(n, kind)
                for kind, n in nvrtc.ieee_violations(result.ptx).items()]
    _, entries = nvrtc.split_ptx(result.ptx)
    problems += ["no PTX entry for {}".format(name) for _, name in instantiations()
                 if result.lowered_names.get(name) not in entries]
    problems += ["{} spills ({} B stored, {} B loaded)".format(name, r.spill_stores, r.spill_loads)
                 for name, r in result.resources().items() if r.spill_stores or r.spill_loads]
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.backends.cuda",
                                     description="Build fast's CUDA kernels with NVRTC (no GPU needed), "
                                                 "write their PTX and print ptxas's resource usage.")
    parser.add_argument("--ptx", metavar="DIR", required=True, help="where to write the PTX")
    parser.add_argument("--arch", default="sm_90", help="sm_NN (cubin and PTX) or compute_NN (PTX only)")
    parser.add_argument("--extra-flag", action="append", default=[], metavar="FLAG",
                        help="an NVRTC flag added to the project's (to see its effect; repeatable)")
    args = parser.parse_args(argv)
    try:
        result = write_ptx(args.ptx, args.arch, tuple(args.extra_flag))
    except (nvrtc.GpuBuildError, ValueError) as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    print("NVRTC {}.{}, {}, flags: {}".format(*result.nvrtc_version, result.arch, " ".join(result.flags)))
    print("wrote {} and {} kernels under {}".format(
        os.path.join(args.ptx, "cuda_driver.{}.ptx".format(args.arch)), len(instantiations()),
        os.path.join(args.ptx, args.arch)))
    if result.cubin is not None:
        print(resource_table(result))
    problems = contract_problems(result)
    for problem in problems:
        print("CONTRACT: " + problem)
    print("PTX: {} .ftz, {} fma".format(*(nvrtc.ieee_violations(result.ptx).get(k, 0) for k in ("ftz", "fma"))))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
