"""CUDA backend: the kernels of cuda_driver.cu through ``cupy.RawModule``.

UNVERIFIED: no GPU or CuPy was available while this was written. What is
checked on the CPU: the CUDA source includes the same update_math.h and
element_pipeline.h as the CPU driver, and ``host_check()`` type-checks every
template instance requested below with the host compiler.

Launch model: one ``fast_update_kernel<Rule, Mode>`` launch per group per
step over the group's chunk table; the argument block (``FastStepArgs``, the
same struct as on the CPU) is uploaded to device memory; ``fast_check_kernel``
sets a device flag that the update kernels read, so dynamic loss scaling needs
no host synchronisation. Not yet done: the engine allocates its flat buffers
with NumPy only; CuPy groups (device buffers, device pointer tables) are not
wired into fast.engine.
"""
import os
import subprocess
import tempfile

from fast.backends.cpu import KERNEL_DIR, MODE_FLOAT32, MODE_FLOAT64, MODE_FP16, MODE_FP16_MASTER, \
    MODE_FP16_MASTER_FIXED, _compiler

RULES = {0: "RuleSGD", 1: "RuleMomentumSGD", 2: "RuleCorrectedMomentumSGD", 3: "RuleNesterovAG",
         4: "RuleAdaGrad", 5: "RuleAdaDelta", 6: "RuleRMSprop", 7: "RuleRMSpropGraves", 8: "RuleAdam",
         9: "RuleAMSGrad", 10: "RuleMSVAG", 11: "RuleSMORMS3", 12: "RuleAdaBound", 13: "RuleAMSBound"}
MODES = {MODE_FLOAT64: "ModeF64", MODE_FLOAT32: "ModeF32", MODE_FP16_MASTER: "ModeF16Master",
         MODE_FP16: "ModeF16", MODE_FP16_MASTER_FIXED: "ModeF16MasterFixed"}
BLOCK = 256


def update_name(kernel_id, mode):
    return "fast_update_kernel<{}, {}>".format(RULES[kernel_id], MODES[mode])


def reduce_name(mode):
    return "fast_reduce_kernel<{}>".format(MODES[mode])


def check_name(mode):
    return "fast_check_kernel<{}>".format(MODES[mode])


def instantiation_names():
    """Every kernel instance the backend asks NVRTC for."""
    names = [update_name(k, m) for k in RULES for m in MODES]
    names += [reduce_name(m) for m in MODES] + [check_name(m) for m in MODES]
    return names


def source():
    """The CUDA translation unit (headers resolved through -I KERNEL_DIR)."""
    with open(os.path.join(KERNEL_DIR, "cuda_driver.cu")) as f:
        return f.read()


def host_check():
    """Type-check cuda_driver.cu and every requested instance with the host
    compiler (CUDA keywords shimmed). Raises RuntimeError on failure."""
    lines = ['#include "cuda_host_shim.h"', '#include "cuda_driver.cu"']
    for name in instantiation_names():
        base, targs = name.split("<", 1)
        params = "(const FastStepArgs*, const int*)" if base == "fast_update_kernel" else (
            "(const FastStepArgs*, double*, double*)" if base == "fast_reduce_kernel" else "(const FastStepArgs*, int*)")
        lines.append("template void {}<{}{};".format(base, targs, params))
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "check.cpp")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        res = subprocess.run([_compiler(), "-std=c++17", "-march=native", "-fsyntax-only", "-I", KERNEL_DIR,
                              "-x", "c++", src], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("cuda_driver.cu does not type-check on the host:\n" + res.stderr[-4000:])
    return len(instantiation_names())


class CudaKernels(object):
    """The compiled module and launch helpers (needs CuPy and a GPU)."""

    def __init__(self):
        import cupy
        self.cupy = cupy
        self.module = cupy.RawModule(code=source(), options=("--std=c++17", "-I" + KERNEL_DIR),
                                     name_expressions=instantiation_names())
        self.found = cupy.zeros(1, dtype=cupy.int32)
        self.never = cupy.zeros(1, dtype=cupy.int32)  # skip flag of steps without dynamic scaling

    def _device_args(self, args):
        """Upload a ``fast.backends.cpu.StepArgs`` (holding device pointers) to the device."""
        raw = bytes(memoryview(args).cast("B"))
        return self.cupy.asarray(bytearray(raw), dtype=self.cupy.uint8)

    def _grid(self, args):
        return (max(1, min(int(args.n_chunks), 65535)),)

    def check_finite(self, mode, args):
        """Clear and set the device flag; no host synchronisation."""
        self.found.fill(0)
        kernel = self.module.get_function(check_name(mode))
        kernel(self._grid(args), (BLOCK,), (self._device_args(args), self.found))
        return self.found

    def update(self, kernel_id, mode, args, skip_flag=None):
        kernel = self.module.get_function(update_name(kernel_id, mode))
        kernel(self._grid(args), (BLOCK,), (self._device_args(args), skip_flag if skip_flag is not None else self.never))

    def reduce(self, mode, args, chunk_gsq, chunk_psq):
        kernel = self.module.get_function(reduce_name(mode))
        kernel(self._grid(args), (BLOCK,), (self._device_args(args), chunk_gsq, chunk_psq))

