// Argument block shared by the CPU and CUDA drivers (mirrored by ctypes in
// fast/backends/cpu.py). A group's tensors are cut into chunks of at most
// CHUNK elements at set-up; every pass walks the chunk table, so work is split
// the same way whatever the thread count.
#ifndef FAST_STEP_ARGS_H
#define FAST_STEP_ARGS_H
#include <stdint.h>

#define FAST_MAX_STATE 3
#define FAST_N_HPARAMS 12

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
    int32_t unscale;               // 1: divide the gradient by unscale_divisor
    int32_t unscale_first;         // 1 (fixed profile): unscale before the hooks
    int32_t hooks_read_master;     // 1 (fixed profile + master): hooks see the master
    int32_t n_hooks;
    const int32_t* hook_kind;      // [n_hooks]
    const double* hook_a;          // [n_hooks][n_tensors]
    const double* hook_b;          // [n_hooks][n_tensors]
    void* const* hook_noise;       // [n_hooks][n_tensors] noise arrays or null
    double* tensor_gsq;            // reduce: per-tensor sum of g^2 (out)
    double* tensor_psq;            // reduce: per-tensor sum of p^2 (out)
    uint8_t* tensor_nonfinite;     // check: per-tensor flag (out)
    void* const* grad_out;         // materialize: per-tensor output pointers
    int32_t out_param_dtype;       // materialize: 1 store in the param dtype, 0 in T
};
#endif
