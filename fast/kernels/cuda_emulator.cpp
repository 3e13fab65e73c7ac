// Host execution of the CUDA driver (see cuda_host_emulation.h), for tests on
// machines without a GPU: fast.backends.cuda_emulator builds it with g++ and
// launches it through ctypes with the grid and block the CUDA backend uses.
// Blocks run one after another. Kernels without barriers run their threads
// in a loop on the calling thread; the reduction kernel runs one host thread
// per CUDA thread, meeting at a std::barrier for every __syncthreads.
#include <thread>
#include <vector>
#include "cuda_host_emulation.h"
#include "cuda_driver.cu"

namespace {

template <class F> void run_serial(int grid, int block, F body) {
    gridDim.x = grid;
    blockDim.x = block;
    for (int b = 0; b < grid; ++b)
        for (int t = 0; t < block; ++t) {
            blockIdx.x = b;
            threadIdx.x = t;
            body();
        }
}

template <class F> void run_threaded(int grid, int block, F body) {
    for (int b = 0; b < grid; ++b) {
        std::barrier<> sync(block);
        std::vector<std::thread> threads;
        for (int t = 0; t < block; ++t)
            threads.emplace_back([&, b, t] {
                gridDim.x = grid;
                blockDim.x = block;
                blockIdx.x = b;
                threadIdx.x = t;
                fast_emu_block_barrier = &sync;
                body();
            });
        for (auto& th : threads) th.join();
    }
}

// The launch kinds, kernel ids and mode numbers are abi.h's.
template <class M> int launch_mode_kernel(int kind, int grid, int block, const FastStepArgs* a, void* x, void* y) {
    switch (kind) {
    case LAUNCH_REDUCE:
        run_threaded(grid, block, [&] { fast_reduce_kernel<M>(a, (double*)x, (double*)y); });
        return 0;
    case LAUNCH_MATERIALIZE: run_serial(grid, block, [&] { fast_materialize_kernel<M>(a); }); return 0;
    case LAUNCH_CHECK: run_serial(grid, block, [&] { fast_check_kernel<M>(a, (int*)x); }); return 0;
    default: return -3;
    }
}

template <class M> int launch_update(int rule, int grid, int block, const FastStepArgs* a, const int* skip) {
    switch (rule) {
#define FAST_RULE_CASE(ID, RULE) \
    case ID: run_serial(grid, block, [&] { fast_update_kernel<RULE, M>(a, skip); }); return 0;
    FAST_FOR_EACH_RULE(FAST_RULE_CASE)
#undef FAST_RULE_CASE
    default: return -1;
    }
}

template <class M> int launch_mode(int kind, int rule, int grid, int block, const FastStepArgs* a, void* x, void* y) {
    if (kind == LAUNCH_UPDATE) return launch_update<M>(rule, grid, block, a, (const int*)x);
    return launch_mode_kernel<M>(kind, grid, block, a, x, y);
}

}  // namespace

extern "C" int fast_emu_launch(int kind, int rule, int mode, int grid, int block, const FastStepArgs* a,
                               void* x, void* y) {
    if (kind == LAUNCH_SEGMENT_SUM) {
        run_serial(grid, block, [&] { fast_segment_sum_kernel(a, (const double*)x, (const double*)y); });
        return 0;
    }
    switch (mode) {
#define FAST_MODE_CASE(NUMBER, MODE) case NUMBER: return launch_mode<MODE>(kind, rule, grid, block, a, x, y);
    FAST_FOR_EACH_MODE(FAST_MODE_CASE)
#undef FAST_MODE_CASE
    default: return -2;
    }
}
