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

enum Kind { UPDATE = 0, REDUCE = 1, SEGMENT_SUM = 2, MATERIALIZE = 3, CHECK = 4 };

template <class M> int launch_mode_kernel(int kind, int grid, int block, const FastStepArgs* a, void* x, void* y) {
    switch (kind) {
    case REDUCE:
        run_threaded(grid, block, [&] { fast_reduce_kernel<M>(a, (double*)x, (double*)y); });
        return 0;
    case MATERIALIZE: run_serial(grid, block, [&] { fast_materialize_kernel<M>(a); }); return 0;
    case CHECK: run_serial(grid, block, [&] { fast_check_kernel<M>(a, (int*)x); }); return 0;
    default: return -3;
    }
}

template <class M> int launch_update(int rule, int grid, int block, const FastStepArgs* a, const int* skip) {
#define FAST_EMU_RULE(ID, RULE) \
    case ID: run_serial(grid, block, [&] { fast_update_kernel<RULE, M>(a, skip); }); return 0;
    switch (rule) {
    FAST_EMU_RULE(0, RuleSGD) FAST_EMU_RULE(1, RuleMomentumSGD) FAST_EMU_RULE(2, RuleCorrectedMomentumSGD)
    FAST_EMU_RULE(3, RuleNesterovAG) FAST_EMU_RULE(4, RuleAdaGrad) FAST_EMU_RULE(5, RuleAdaDelta)
    FAST_EMU_RULE(6, RuleRMSprop) FAST_EMU_RULE(7, RuleRMSpropGraves) FAST_EMU_RULE(8, RuleAdam)
    FAST_EMU_RULE(9, RuleAMSGrad) FAST_EMU_RULE(10, RuleMSVAG) FAST_EMU_RULE(11, RuleSMORMS3)
    FAST_EMU_RULE(12, RuleAdaBound) FAST_EMU_RULE(13, RuleAMSBound)
    default: return -1;
    }
#undef FAST_EMU_RULE
}

template <class M> int launch_mode(int kind, int rule, int grid, int block, const FastStepArgs* a, void* x, void* y) {
    if (kind == UPDATE) return launch_update<M>(rule, grid, block, a, (const int*)x);
    return launch_mode_kernel<M>(kind, grid, block, a, x, y);
}

}  // namespace

extern "C" int fast_emu_launch(int kind, int rule, int mode, int grid, int block, const FastStepArgs* a,
                               void* x, void* y) {
    if (kind == SEGMENT_SUM) {
        run_serial(grid, block, [&] { fast_segment_sum_kernel(a, (const double*)x, (const double*)y); });
        return 0;
    }
    switch (mode) {  // the numbering of fast.backends.cpu (MODE_*)
    case 0: return launch_mode<ModeF64>(kind, rule, grid, block, a, x, y);
    case 1: return launch_mode<ModeF32>(kind, rule, grid, block, a, x, y);
    case 2: return launch_mode<ModeF16Master>(kind, rule, grid, block, a, x, y);
    case 3: return launch_mode<ModeF16>(kind, rule, grid, block, a, x, y);
    case 4: return launch_mode<ModeF16MasterFixed>(kind, rule, grid, block, a, x, y);
    default: return -2;
    }
}
