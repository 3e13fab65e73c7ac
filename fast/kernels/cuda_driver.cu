// Device driver: the same per-element math (update_math.h) and gradient
// pipeline (element_pipeline.h) as cpu_driver.cpp, launched once per group
// per step. Compiled by NVRTC with the project's flags (fast/backends/nvrtc.py)
// and loaded by CuPy; the template instances are requested by name (see
// fast/backends/cuda.py), and the host emulator (cuda_emulator.cpp) includes
// this file as it is.
//
// Each block walks chunks of the group's chunk table (grid-stride), its
// threads stride over the chunk's elements. The argument block lives in
// device memory; every pointer in it is a device pointer.
//
// Skip decision: fast_check_kernel raises *found on any non-finite gradient;
// the update kernels read *skip first and return when it is set, so a
// dynamic-loss-scaling step needs no host synchronisation.
#include "update_math.h"
#include "element_pipeline.h"

#define FAST_BLOCK 256

template <class Rule, class M>
__global__ void fast_update_kernel(const FastStepArgs* __restrict__ args, const int* __restrict__ skip) {
    typedef typename M::T T;
    typedef typename M::P P;
    typedef typename M::S S;
    if (skip != nullptr && *skip) return;
    const FastStepArgs& a = *args;
    for (int64_t c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
        const int64_t t = a.chunk_tensor[c];
        if (!a.tensor_active[t]) continue;
        T hp[FAST_N_HPARAMS];
        for (int k = 0; k < FAST_N_HPARAMS; ++k) hp[k] = (T)a.hparams[t * FAST_N_HPARAMS + k];
        const int64_t base = a.tensor_offset[t];
        P* param = (P*)a.param + base;
        float* master = M::MASTER ? a.master + base : nullptr;
        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i < a.chunk_end[c]; i += blockDim.x) {
            const T g = load_gradient<M>(a, t, i, base + i);
            T p = M::MASTER ? (T)master[i] : (T)fast_load(param[i]);
            StateSlots<T, S> s;
            for (int k = 0; k < Rule::n_state; ++k) s.v[k] = (T)fast_load(((S*)a.state[k] + base)[i]);
            Rule::template update<T, S, typename M::PR>(p, g, s, hp);
            for (int k = 0; k < Rule::n_state; ++k) ((S*)a.state[k] + base)[i] = store_as<S>(s.v[k]);
            if (M::MASTER) master[i] = (float)p;
            param[i] = store_as<P>(p);
        }
    }
}

// Per-chunk sums of g^2 and p^2 in double with a fixed-shape tree, so the
// result does not depend on scheduling; fast_segment_sum_kernel then adds a
// tensor's chunks in order.
template <class M>
__global__ void fast_reduce_kernel(const FastStepArgs* __restrict__ args, double* chunk_gsq, double* chunk_psq) {
    __shared__ double sg[FAST_BLOCK], sp[FAST_BLOCK];
    const FastStepArgs& a = *args;
    for (int64_t c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
        const int64_t t = a.chunk_tensor[c];
        const int64_t base = a.tensor_offset[t];
        double gs = 0.0, ps = 0.0;
        if (!a.tensor_active[t]) {
            if (threadIdx.x == 0) chunk_gsq[c] = chunk_psq[c] = 0.0;
            continue;  // uniform across the block: no thread reaches the barriers below
        }
        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i < a.chunk_end[c]; i += blockDim.x) {
            const double g = (double)load_gradient<M>(a, t, i, base + i);
            const double p = (double)hook_operand<M>(a, base + i);
            gs += g * g;
            ps += p * p;
        }
        sg[threadIdx.x] = gs;
        sp[threadIdx.x] = ps;
        __syncthreads();
        for (int w = FAST_BLOCK / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) {
                sg[threadIdx.x] += sg[threadIdx.x + w];
                sp[threadIdx.x] += sp[threadIdx.x + w];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            chunk_gsq[c] = sg[0];
            chunk_psq[c] = sp[0];
        }
        __syncthreads();
    }
}

// Per-tensor sums from the per-chunk ones, each tensor's chunks in table
// order (one thread per tensor; the chunk table lists a tensor's chunks
// consecutively).
__global__ void fast_segment_sum_kernel(const FastStepArgs* __restrict__ args, const double* chunk_gsq,
                                        const double* chunk_psq) {
    const FastStepArgs& a = *args;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < a.n_tensors;
         t += (int64_t)gridDim.x * blockDim.x) {
        double gs = 0.0, ps = 0.0;
        for (int64_t c = 0; c < a.n_chunks; ++c) {
            if (a.chunk_tensor[c] != t) continue;
            gs += chunk_gsq[c];
            ps += chunk_psq[c];
        }
        a.tensor_gsq[t] = gs;
        a.tensor_psq[t] = ps;
    }
}

// Writes the gradient as the update sees it (hooked, unscaled) to grad_out,
// in the parameter dtype or in T. In place (grad_out == grad) is safe: each
// element is read before it is written, by the same thread.
template <class M>
__global__ void fast_materialize_kernel(const FastStepArgs* __restrict__ args) {
    typedef typename M::T T;
    typedef typename M::P P;
    const FastStepArgs& a = *args;
    for (int64_t c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
        const int64_t t = a.chunk_tensor[c];
        if (!a.tensor_active[t]) continue;
        const int64_t base = a.tensor_offset[t];
        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i < a.chunk_end[c]; i += blockDim.x) {
            const T g = load_gradient<M>(a, t, i, base + i);
            if (a.out_param_dtype) ((P*)a.grad_out[t])[i] = store_as<P>(g);
            else ((T*)a.grad_out[t])[i] = g;
        }
    }
}

// Raises *found (and the tensor's flag) when a gradient holds inf or NaN.
template <class M>
__global__ void fast_check_kernel(const FastStepArgs* __restrict__ args, int* found) {
    typedef typename M::T T;
    typedef typename M::P P;
    const FastStepArgs& a = *args;
    for (int64_t c = blockIdx.x; c < a.n_chunks; c += gridDim.x) {
        const int64_t t = a.chunk_tensor[c];
        const P* g = (const P*)a.grad[t];
        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i < a.chunk_end[c]; i += blockDim.x) {
            const T x = (T)fast_load(g[i]);
            if (!(x - x == T(0))) {
                *found = 1;
                a.tensor_nonfinite[t] = 1;
            }
        }
    }
}
