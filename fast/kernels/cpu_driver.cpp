// Host driver: walks a group's chunk table with OpenMP and calls the
// per-element math of update_math.h. Compiled by fast/backends/cpu.py.
#include <stdint.h>
#include <vector>
#include "update_math.h"
#include "step_args.h"

namespace {

// Types of one dtype mode: T compute, P parameter storage, S state storage,
// PR the type the parameter is rounded to between in-place steps, H the hook
// domain (the dtype the hooked gradient is stored in).
template <class T_, class P_, class S_, class PR_, class H_, bool MASTER_>
struct Mode {
    typedef T_ T; typedef P_ P; typedef S_ S; typedef PR_ PR; typedef H_ H;
    static const bool MASTER = MASTER_;
};

template <class M>
inline typename M::T hook_operand(const FastStepArgs& a, int64_t off) {
    typedef typename M::T T;
    if (M::MASTER && a.hooks_read_master) return (T)a.master[off];
    return (T)fast_load(((const typename M::P*)a.param)[off]);
}

// The gradient as the update sees it: loaded, hooked and unscaled, in the
// order of the profile.
template <class M>
inline typename M::T load_gradient(const FastStepArgs& a, int64_t t, int64_t i, int64_t off) {
    typedef typename M::T T;
    typedef typename M::P P;
    T g = (T)fast_load(((const P*)a.grad[t])[i]);
    const T divisor = (T)a.unscale_divisor;
    if (a.unscale && a.unscale_first) g = round_to<typename M::H>(g / divisor);
    if (a.n_hooks) {
        const T p = hook_operand<M>(a, off);
        for (int k = 0; k < a.n_hooks; ++k) {
            const int64_t idx = (int64_t)k * a.n_tensors + t;
            T noise = T(0);
            if (a.hook_kind[k] == HOOK_ADD_NOISE) noise = (T)fast_load(((const typename M::H*)a.hook_noise[idx])[i]);
            g = apply_hook<T, typename M::H>(a.hook_kind[k], g, p, (T)a.hook_a[idx], (T)a.hook_b[idx], noise);
        }
    }
    if (a.unscale && !a.unscale_first) {
        if (M::MASTER) g = g / divisor;
        else g = round_to<P>(g / divisor);
    }
    return g;
}

template <class Rule, class M>
void update_chunk(const FastStepArgs& a, int64_t c) {
    typedef typename M::T T;
    typedef typename M::P P;
    typedef typename M::S S;
    const int64_t t = a.chunk_tensor[c];
    if (!a.tensor_active[t]) return;
    T hp[FAST_N_HPARAMS];
    for (int k = 0; k < FAST_N_HPARAMS; ++k) hp[k] = (T)a.hparams[t * FAST_N_HPARAMS + k];
    const int64_t base = a.tensor_offset[t];
    P* param = (P*)a.param + base;
    float* master = M::MASTER ? a.master + base : nullptr;
    S* st[FAST_MAX_STATE];
    for (int k = 0; k < Rule::n_state; ++k) st[k] = (S*)a.state[k] + base;
    for (int64_t i = a.chunk_begin[c]; i < a.chunk_end[c]; ++i) {
        const T g = load_gradient<M>(a, t, i, base + i);
        T p = M::MASTER ? (T)master[i] : (T)fast_load(param[i]);
        T s[FAST_MAX_STATE > 0 ? FAST_MAX_STATE : 1];
        for (int k = 0; k < Rule::n_state; ++k) s[k] = (T)fast_load(st[k][i]);
        Rule::template update<T, S, typename M::PR>(p, g, s, hp);
        for (int k = 0; k < Rule::n_state; ++k) st[k][i] = store_as<S>(s[k]);
        if (M::MASTER) master[i] = (float)p;
        param[i] = store_as<P>(p);
    }
}

template <class Rule, class M>
void update_group(const FastStepArgs& a) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < a.n_chunks; ++c) update_chunk<Rule, M>(a, c);
}

// Sums of squares of the hooked gradient (the first n_hooks ops) and of the
// hook operand, per chunk in double, then per tensor in chunk order.
template <class M>
void reduce_group(const FastStepArgs& a) {
    typedef typename M::T T;
    std::vector<double> gsq(a.n_chunks, 0.0), psq(a.n_chunks, 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < a.n_chunks; ++c) {
        const int64_t t = a.chunk_tensor[c];
        if (!a.tensor_active[t]) continue;
        const int64_t base = a.tensor_offset[t];
        double gs = 0.0, ps = 0.0;
        for (int64_t i = a.chunk_begin[c]; i < a.chunk_end[c]; ++i) {
            const double g = (double)load_gradient<M>(a, t, i, base + i);
            const double p = (double)hook_operand<M>(a, base + i);
            gs += g * g;
            ps += p * p;
        }
        gsq[c] = gs;
        psq[c] = ps;
    }
    for (int64_t t = 0; t < a.n_tensors; ++t) a.tensor_gsq[t] = a.tensor_psq[t] = 0.0;
    for (int64_t c = 0; c < a.n_chunks; ++c) {
        a.tensor_gsq[a.chunk_tensor[c]] += gsq[c];
        a.tensor_psq[a.chunk_tensor[c]] += psq[c];
    }
}

template <class M>
void check_group(const FastStepArgs& a) {
    typedef typename M::T T;
    typedef typename M::P P;
    std::vector<uint8_t> bad(a.n_chunks, 0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < a.n_chunks; ++c) {
        const P* g = (const P*)a.grad[a.chunk_tensor[c]];
        int found = 0;
        for (int64_t i = a.chunk_begin[c]; i < a.chunk_end[c]; ++i) {
            const T x = (T)fast_load(g[i]);
            found |= !(x - x == T(0));  // false for inf and NaN
        }
        bad[c] = (uint8_t)found;
    }
    for (int64_t t = 0; t < a.n_tensors; ++t) a.tensor_nonfinite[t] = 0;
    for (int64_t c = 0; c < a.n_chunks; ++c) a.tensor_nonfinite[a.chunk_tensor[c]] |= bad[c];
}

// Writes the gradient as the update would see it (hooked, unscaled) to
// grad_out, in the parameter dtype or in T. In place (grad_out == grad) is safe.
template <class M>
void materialize_group(const FastStepArgs& a) {
    typedef typename M::T T;
    typedef typename M::P P;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < a.n_chunks; ++c) {
        const int64_t t = a.chunk_tensor[c];
        if (!a.tensor_active[t]) continue;
        const int64_t base = a.tensor_offset[t];
        for (int64_t i = a.chunk_begin[c]; i < a.chunk_end[c]; ++i) {
            const T g = load_gradient<M>(a, t, i, base + i);
            if (a.out_param_dtype) ((P*)a.grad_out[t])[i] = store_as<P>(g);
            else ((T*)a.grad_out[t])[i] = g;
        }
    }
}

typedef Mode<double, double, double, double, double, false> ModeF64;
typedef Mode<float, float, float, float, float, false> ModeF32;
typedef Mode<float, fast_half, float, float, fast_half, true> ModeF16Master;
typedef Mode<float, fast_half, float, float, float, true> ModeF16MasterFixed;
typedef Mode<float, fast_half, fast_half, fast_half, fast_half, false> ModeF16;

template <class M>
int dispatch_rule(int rule, const FastStepArgs& a) {
    switch (rule) {
    case 0: update_group<RuleSGD, M>(a); return 0;
    case 1: update_group<RuleMomentumSGD, M>(a); return 0;
    case 2: update_group<RuleCorrectedMomentumSGD, M>(a); return 0;
    case 3: update_group<RuleNesterovAG, M>(a); return 0;
    case 4: update_group<RuleAdaGrad, M>(a); return 0;
    case 5: update_group<RuleAdaDelta, M>(a); return 0;
    case 6: update_group<RuleRMSprop, M>(a); return 0;
    case 7: update_group<RuleRMSpropGraves, M>(a); return 0;
    case 8: update_group<RuleAdam, M>(a); return 0;
    case 9: update_group<RuleAMSGrad, M>(a); return 0;
    case 10: update_group<RuleMSVAG, M>(a); return 0;
    case 11: update_group<RuleSMORMS3, M>(a); return 0;
    default: return -1;
    }
}

// mode: 0 float64, 1 float32, 2 fp16 + master (chainer hooks), 3 fp16,
//       4 fp16 + master (fixed-profile hooks in fp32)
template <template <class> class Fn>
int dispatch_mode(int mode, const FastStepArgs& a) {
    switch (mode) {
    case 0: return Fn<ModeF64>::run(a);
    case 1: return Fn<ModeF32>::run(a);
    case 2: return Fn<ModeF16Master>::run(a);
    case 3: return Fn<ModeF16>::run(a);
    case 4: return Fn<ModeF16MasterFixed>::run(a);
    default: return -2;
    }
}

template <class M> struct ReduceFn { static int run(const FastStepArgs& a) { reduce_group<M>(a); return 0; } };
template <class M> struct MaterializeFn { static int run(const FastStepArgs& a) { materialize_group<M>(a); return 0; } };
template <class M> struct CheckFn { static int run(const FastStepArgs& a) { check_group<M>(a); return 0; } };

}  // namespace

extern "C" {

int fast_update(int rule, int mode, const FastStepArgs* a) {
    switch (mode) {
    case 0: return dispatch_rule<ModeF64>(rule, *a);
    case 1: return dispatch_rule<ModeF32>(rule, *a);
    case 2: return dispatch_rule<ModeF16Master>(rule, *a);
    case 3: return dispatch_rule<ModeF16>(rule, *a);
    case 4: return dispatch_rule<ModeF16MasterFixed>(rule, *a);
    default: return -2;
    }
}

int fast_reduce(int mode, const FastStepArgs* a) { return dispatch_mode<ReduceFn>(mode, *a); }

int fast_check_finite(int mode, const FastStepArgs* a) { return dispatch_mode<CheckFn>(mode, *a); }

int fast_materialize(int mode, const FastStepArgs* a) { return dispatch_mode<MaterializeFn>(mode, *a); }

int fast_abi_version(void) { return 1; }
}
