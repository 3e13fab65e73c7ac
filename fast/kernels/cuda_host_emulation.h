// Runs cuda_driver.cu on the host: the CUDA keywords become host C++ and a
// launch becomes a loop over blocks (see cuda_emulator.cpp). Used to
// type-check the device driver with g++ and to execute it in tests on
// machines without a GPU; never part of a device build. The update math is
// the host instance of update_math.h (F16C fp16 conversions), so what this
// checks is the driver: chunk walking, thread striding, the skip flag, the
// reduction tree, the segment sums.
#ifndef FAST_CUDA_HOST_EMULATION_H
#define FAST_CUDA_HOST_EMULATION_H
#include <barrier>
#include <cstdint>
#define __global__
#define __shared__ static  // one copy per kernel instance: blocks run one at a time
#define __restrict__ __restrict
struct FastEmuDim { unsigned x; };
static thread_local FastEmuDim threadIdx, blockIdx, gridDim, blockDim;
static thread_local std::barrier<>* fast_emu_block_barrier = nullptr;
// Only kernels launched with one host thread per CUDA thread reach a barrier.
static inline void __syncthreads() { fast_emu_block_barrier->arrive_and_wait(); }
#endif
