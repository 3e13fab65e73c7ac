"""What the Python side and the C++ kernels must agree on, as one table.

The kernel ids, the dtype modes, the hook kinds, the emulator's launch kinds, the dtypes of
fast.distributed's exchange passes, the width of a tensor's hyperparameter row, the most state arrays a rule keeps, and the argument block
``FastStepArgs`` of every kernel call are defined here, and only here. The kernels read them
from fast/kernels/abi.h, which fast.backends.abi_header writes from this table and every
build checks against it.
"""
import ctypes
from dataclasses import dataclass

#: The most state arrays an update rule keeps (``Rule::n_state`` of update_math.h).
MAX_STATE = 3
#: The scalars of one tensor's row of ``FastStepArgs::hparams`` (the slots ``hp[k]`` of
#: update_math.h, which each rule's comment lists; the longest row, Adam's, uses 8).
N_HPARAMS = 12

#: The update kernels: a kernel id is the position of the rule struct of update_math.h
#: that its kernel runs.
RULES = ("RuleSGD", "RuleMomentumSGD", "RuleCorrectedMomentumSGD", "RuleNesterovAG", "RuleAdaGrad",
         "RuleAdaDelta", "RuleRMSprop", "RuleRMSpropGraves", "RuleAdam", "RuleAMSGrad", "RuleMSVAG",
         "RuleSMORMS3", "RuleAdaBound", "RuleAMSBound")

#: The dtype modes (element_pipeline.h's Mode types: compute, parameter and state dtypes).
MODE_FLOAT64 = 0
MODE_FLOAT32 = 1
MODE_FP16_MASTER = 2        # float16 parameters, float32 master and state; hooks in float16
MODE_FP16 = 3               # float16 parameters and state, float32 arithmetic
MODE_FP16_MASTER_FIXED = 4  # as MODE_FP16_MASTER, hooks on the float32 master (fixed profile)
MODES = {MODE_FLOAT64: "ModeF64", MODE_FLOAT32: "ModeF32", MODE_FP16_MASTER: "ModeF16Master",
         MODE_FP16: "ModeF16", MODE_FP16_MASTER_FIXED: "ModeF16MasterFixed"}

#: The elementwise optimizer-hook ops update_math.h's apply_hook applies to a gradient, each
#: rounding its result to the dtype H the hooks see the gradient in: (C++ name, what it does),
#: numbered from 1 in this order (0 is no op).
HOOK_KINDS = (
    ("HOOK_ADD_PARAM", "WeightDecay, LARS decay:  g <- g + a * p"),
    ("HOOK_ADD_SIGN", "Lasso:                    g <- g + a * sign(p)"),
    ("HOOK_CLIP", "GradientHardClipping:     g <- clip(g, a, b)"),
    ("HOOK_SCALE", "GradientClipping:         g <- g * a"),
    ("HOOK_SCALE_TENSOR", "GradientLARS:             g <- g * rate[tensor]"),
    ("HOOK_ADD_NOISE", "GradientNoise:            g <- g + noise[tensor][i]"),
    ("HOOK_ADD_PARAM_WIDE", "HOOK_ADD_PARAM on a 0-d gradient (a scalar to NumPy 1.x): a * p not rounded to H"),
    ("HOOK_ADD_SIGN_WIDE", "HOOK_ADD_SIGN on a 0-d gradient: a * sign(p) not rounded to H"),
)
FIRST_HOOK_KIND = 1

#: The dtypes of the exchange passes of fast.distributed (exchange.cpp): (C++ name, NumPy
#: name), numbered from 0 in this order.
DTYPES = (
    ("FAST_FLOAT16", "float16"),
    ("FAST_FLOAT32", "float32"),
    ("FAST_FLOAT64", "float64"),
)

#: The kernels of cuda_driver.cu, as fast.backends.cuda asks the host emulator
#: (cuda_emulator.cpp's fast_emu_launch) to launch them: (C++ name, kernel), numbered from 0
#: in this order.
LAUNCH_KINDS = (
    ("LAUNCH_UPDATE", "fast_update_kernel"),
    ("LAUNCH_REDUCE", "fast_reduce_kernel"),
    ("LAUNCH_SEGMENT_SUM", "fast_segment_sum_kernel"),
    ("LAUNCH_MATERIALIZE", "fast_materialize_kernel"),
    ("LAUNCH_CHECK", "fast_check_kernel"),
)


@dataclass(frozen=True)
class Field(object):
    """One field of ``FastStepArgs``: its C type (a pointer type ends in ``*``), what it
    holds, and for an array its length (a macro of the header)."""
    name: str
    c_type: str
    doc: str = ""
    length: str = None

    def ctype(self):
        """The field's ctypes type: pointers are ``c_void_p`` on this side."""
        scalar = ctypes.c_void_p if self.c_type.endswith("*") else _SCALARS[self.c_type]
        return scalar * _LENGTHS[self.length] if self.length else scalar

    def declaration(self):
        """The field as C declares it."""
        return "{} {}{};".format(self.c_type, self.name, "[{}]".format(self.length) if self.length else "")


_SCALARS = {"int64_t": ctypes.c_int64, "int32_t": ctypes.c_int32, "double": ctypes.c_double}
_LENGTHS = {"FAST_MAX_STATE": MAX_STATE}

#: What ``FastStepArgs`` is for, written above it in the header.
STEP_ARGS_DOC = (
    "The argument block of every kernel call, shared by the CPU and CUDA drivers. A group's",
    "tensors are cut into chunks of at most fast.engine.CHUNK elements at set-up; every pass",
    "walks the chunk table, so work is split the same way whatever the thread count.",
)
STEP_ARGS_FIELDS = (
    Field("n_tensors", "int64_t"),
    Field("n_chunks", "int64_t"),
    Field("chunk_tensor", "const int64_t*", "tensor index of each chunk"),
    Field("chunk_begin", "const int64_t*", "first element (within the tensor)"),
    Field("chunk_end", "const int64_t*", "one past the last element"),
    Field("tensor_offset", "const int64_t*", "offset of each tensor in the flat buffers"),
    Field("tensor_active", "const uint8_t*", "0: leave this tensor alone this pass"),
    Field("grad", "void* const*", "per-tensor gradient pointers (param dtype)"),
    Field("param", "void*", "flat parameter buffer"),
    Field("master", "float*", "flat fp32 master buffer or null"),
    Field("state", "void*", "flat state buffers", length="FAST_MAX_STATE"),
    Field("hparams", "const double*", "[n_tensors][FAST_N_HPARAMS]"),
    Field("unscale_divisor", "double", "loss scale rounded to the dividing dtype"),
    Field("average_factor", "double", "1/N: the mean over N ranks (fast.distributed)"),
    Field("unscale", "int32_t", "1: divide the gradient by unscale_divisor"),
    Field("unscale_first", "int32_t", "1 (fixed profile): unscale before the hooks"),
    Field("average", "int32_t", "1: the loaded gradient times average_factor, rounded to P"),
    Field("hooks_read_master", "int32_t", "1 (fixed profile + master): hooks see the master"),
    Field("n_hooks", "int32_t"),
    Field("hook_kind", "const int32_t*", "[n_hooks] FastHookKind"),
    Field("hook_a", "const double*", "[n_hooks][n_tensors]"),
    Field("hook_b", "const double*", "[n_hooks][n_tensors]"),
    Field("hook_noise", "void* const*", "[n_hooks][n_tensors] noise arrays or null"),
    Field("tensor_gsq", "double*", "reduce: per-tensor sum of g^2 (out)"),
    Field("tensor_psq", "double*", "reduce: per-tensor sum of p^2 (out)"),
    Field("tensor_nonfinite", "uint8_t*", "check: per-tensor flag (out)"),
    Field("grad_out", "void* const*", "materialize: per-tensor output pointers"),
    Field("out_param_dtype", "int32_t", "materialize: 1 store in the param dtype, 0 in T"),
    Field("threads", "int32_t", "CPU: the OpenMP threads of a pass (0: OpenMP's default)"),
)


class StepArgs(ctypes.Structure):
    """``FastStepArgs`` on the Python side, laid out by ctypes from ``STEP_ARGS_FIELDS``."""
    _fields_ = [(field.name, field.ctype()) for field in STEP_ARGS_FIELDS]


def _number(table, name, first, what):
    """The number of ``name`` in ``table`` (names, or (name, ...) entries) numbered from
    ``first``; KeyError listing the names when it is not there."""
    names = [entry if isinstance(entry, str) else entry[0] for entry in table]
    if name not in names:
        raise KeyError("no {} is named {!r}; they are {}".format(what, name, ", ".join(names)))
    return first + names.index(name)


def kernel_id(rule):
    """The kernel id of ``rule``, the name of a rule struct of update_math.h (``"RuleAdam"``)."""
    return _number(RULES, rule, 0, "update kernel's rule struct")


def hook_kind(name):
    """The number of the hook kind ``name`` (``"HOOK_CLIP"``)."""
    return _number(HOOK_KINDS, name, FIRST_HOOK_KIND, "hook kind")


def dtype_code(name):
    """The number of the exchange passes' dtype named as NumPy names it (``"float16"``)."""
    return _number([(numpy_name,) for _, numpy_name in DTYPES], name, 0, "exchange dtype")


def launch_kind(name):
    """The number of the emulator's launch kind ``name`` (``"LAUNCH_UPDATE"``)."""
    return _number(LAUNCH_KINDS, name, 0, "launch kind")
