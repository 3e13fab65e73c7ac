// Written by `python -m fast.backends.abi_header --write` from the table in fast/backends/abi.py,
// which the Python side reads: edit the table, not this file (every build refuses a header
// that is not the table's; tests/fast/test_fast_abi.py compares them).
#ifndef FAST_ABI_H
#define FAST_ABI_H
#if defined(__CUDACC_RTC__)
typedef long long int64_t;
typedef int int32_t;
typedef unsigned char uint8_t;
#else
#include <stdint.h>
#endif

// The most state arrays an update rule keeps (Rule::n_state).
#define FAST_MAX_STATE 3
// The scalars of one tensor's row of FastStepArgs::hparams.
#define FAST_N_HPARAMS 12

// FAST_FOR_EACH_RULE(X): X(kernel id, rule struct of update_math.h) for each of them
#define FAST_FOR_EACH_RULE(X) \
    X(0, RuleSGD) \
    X(1, RuleMomentumSGD) \
    X(2, RuleCorrectedMomentumSGD) \
    X(3, RuleNesterovAG) \
    X(4, RuleAdaGrad) \
    X(5, RuleAdaDelta) \
    X(6, RuleRMSprop) \
    X(7, RuleRMSpropGraves) \
    X(8, RuleAdam) \
    X(9, RuleAMSGrad) \
    X(10, RuleMSVAG) \
    X(11, RuleSMORMS3) \
    X(12, RuleAdaBound) \
    X(13, RuleAMSBound)

// FAST_FOR_EACH_MODE(X): X(mode number, Mode type of element_pipeline.h) for each of them
#define FAST_FOR_EACH_MODE(X) \
    X(0, ModeF64) \
    X(1, ModeF32) \
    X(2, ModeF16Master) \
    X(3, ModeF16) \
    X(4, ModeF16MasterFixed)

// The elementwise optimizer-hook ops of update_math.h's apply_hook.
enum FastHookKind {
    HOOK_ADD_PARAM = 1,       // WeightDecay, LARS decay:  g <- g + a * p
    HOOK_ADD_SIGN = 2,        // Lasso:                    g <- g + a * sign(p)
    HOOK_CLIP = 3,            // GradientHardClipping:     g <- clip(g, a, b)
    HOOK_SCALE = 4,           // GradientClipping:         g <- g * a
    HOOK_SCALE_TENSOR = 5,    // GradientLARS:             g <- g * rate[tensor]
    HOOK_ADD_NOISE = 6,       // GradientNoise:            g <- g + noise[tensor][i]
    HOOK_ADD_PARAM_WIDE = 7,  // HOOK_ADD_PARAM on a 0-d gradient (a scalar to NumPy 1.x): a * p not rounded to H
    HOOK_ADD_SIGN_WIDE = 8,   // HOOK_ADD_SIGN on a 0-d gradient: a * sign(p) not rounded to H
};

// The kernels cuda_emulator.cpp's fast_emu_launch runs.
enum FastLaunchKind {
    LAUNCH_UPDATE = 0,       // fast_update_kernel
    LAUNCH_REDUCE = 1,       // fast_reduce_kernel
    LAUNCH_SEGMENT_SUM = 2,  // fast_segment_sum_kernel
    LAUNCH_MATERIALIZE = 3,  // fast_materialize_kernel
    LAUNCH_CHECK = 4,        // fast_check_kernel
};

// The dtypes of exchange.cpp's passes (fast.distributed's exchange buffers).
enum FastDtype {
    FAST_FLOAT16 = 0,  // float16
    FAST_FLOAT32 = 1,  // float32
    FAST_FLOAT64 = 2,  // float64
};

// The argument block of every kernel call, shared by the CPU and CUDA drivers. A group's
// tensors are cut into chunks of at most fast.engine.CHUNK elements at set-up; every pass
// walks the chunk table, so work is split the same way whatever the thread count.
struct FastStepArgs {
    int64_t n_tensors;
    int64_t n_chunks;
    const int64_t* chunk_tensor;   // tensor index of each chunk
    const int64_t* chunk_begin;    // first element (within the tensor)
    const int64_t* chunk_end;      // one past the last element
    const int64_t* tensor_offset;  // offset of each tensor in the flat buffers
    const uint8_t* tensor_active;  // 0: leave this tensor alone this pass
    void* const* grad;             // per-tensor gradient pointers (param dtype)
    void* param;                   // flat parameter buffer
    float* master;                 // flat fp32 master buffer or null
    void* state[FAST_MAX_STATE];   // flat state buffers
    const double* hparams;         // [n_tensors][FAST_N_HPARAMS]
    double unscale_divisor;        // loss scale rounded to the dividing dtype
    double average_factor;         // 1/N: the mean over N ranks (fast.distributed)
    int32_t unscale;               // 1: divide the gradient by unscale_divisor
    int32_t unscale_first;         // 1 (fixed profile): unscale before the hooks
    int32_t average;               // 1: the loaded gradient times average_factor, rounded to P
    int32_t hooks_read_master;     // 1 (fixed profile + master): hooks see the master
    int32_t n_hooks;
    const int32_t* hook_kind;      // [n_hooks] FastHookKind
    const double* hook_a;          // [n_hooks][n_tensors]
    const double* hook_b;          // [n_hooks][n_tensors]
    void* const* hook_noise;       // [n_hooks][n_tensors] noise arrays or null
    double* tensor_gsq;            // reduce: per-tensor sum of g^2 (out)
    double* tensor_psq;            // reduce: per-tensor sum of p^2 (out)
    uint8_t* tensor_nonfinite;     // check: per-tensor flag (out)
    void* const* grad_out;         // materialize: per-tensor output pointers
    int32_t out_param_dtype;       // materialize: 1 store in the param dtype, 0 in T
    int32_t threads;               // CPU: the OpenMP threads of a pass (0: OpenMP's default)
};
// Each field at the offset ctypes gives it in fast.backends.abi.StepArgs:
static_assert(sizeof(FastStepArgs) == 224, "FastStepArgs differs in size from its ctypes mirror");
#define FAST_AT(field, offset) static_assert(__builtin_offsetof(FastStepArgs, field) == offset, "FastStepArgs::" #field " is not where its ctypes mirror has it")
FAST_AT(n_tensors, 0);
FAST_AT(n_chunks, 8);
FAST_AT(chunk_tensor, 16);
FAST_AT(chunk_begin, 24);
FAST_AT(chunk_end, 32);
FAST_AT(tensor_offset, 40);
FAST_AT(tensor_active, 48);
FAST_AT(grad, 56);
FAST_AT(param, 64);
FAST_AT(master, 72);
FAST_AT(state, 80);
FAST_AT(hparams, 104);
FAST_AT(unscale_divisor, 112);
FAST_AT(average_factor, 120);
FAST_AT(unscale, 128);
FAST_AT(unscale_first, 132);
FAST_AT(average, 136);
FAST_AT(hooks_read_master, 140);
FAST_AT(n_hooks, 144);
FAST_AT(hook_kind, 152);
FAST_AT(hook_a, 160);
FAST_AT(hook_b, 168);
FAST_AT(hook_noise, 176);
FAST_AT(tensor_gsq, 184);
FAST_AT(tensor_psq, 192);
FAST_AT(tensor_nonfinite, 200);
FAST_AT(grad_out, 208);
FAST_AT(out_param_dtype, 216);
FAST_AT(threads, 220);
#undef FAST_AT
#endif  // FAST_ABI_H
