// Lets g++ type-check cuda_driver.cu on a machine without CUDA: the CUDA
// keywords become host no-ops. Used by fast.backends.cuda.host_check() only;
// never part of a real build.
#ifndef FAST_CUDA_HOST_SHIM_H
#define FAST_CUDA_HOST_SHIM_H
#include <cstdint>
#define __global__
#define __shared__ static
#define __restrict__ __restrict
struct FastShimDim { unsigned x; };
static FastShimDim threadIdx, blockIdx, gridDim, blockDim;
static inline void __syncthreads() {}
#endif
