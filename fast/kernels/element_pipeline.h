// The dtype modes (both drivers) and what happens to one gradient element
// before the update, in the order of the profile: load, average (the mean over
// ranks), unscale (fixed), hooks, unscale (chainer). The CUDA driver runs it
// per element; the CPU driver runs the same steps per tile (gradient_tile in
// cpu_driver.cpp). Both use apply_hook and round_to of update_math.h.
#ifndef FAST_ELEMENT_PIPELINE_H
#define FAST_ELEMENT_PIPELINE_H
#include "abi.h"
#include "update_math.h"

// Types of one dtype mode: T compute, P parameter storage, S state storage,
// PR the type the parameter is rounded to between in-place steps, H the hook
// domain (the dtype the hooked gradient is stored in).
template <class T_, class P_, class S_, class PR_, class H_, bool MASTER_>
struct Mode {
    typedef T_ T; typedef P_ P; typedef S_ S; typedef PR_ PR; typedef H_ H;
    static const bool MASTER = MASTER_;
};

// The state of one element as an update rule sees it (update_math.h): the values
// in the compute type T, each new one rounded to the state dtype S as it is kept.
template <class T, class S> struct StateSlots {
    T v[FAST_MAX_STATE];
    FAST_METHOD T operator[](int k) const { return v[k]; }
    FAST_METHOD T keep(int k, T x) { return v[k] = round_to<S>(x); }
    FAST_METHOD void set(int k, T x) { v[k] = x; }
};

template <class M>
FAST_FN typename M::T hook_operand(const FastStepArgs& a, int64_t off) {
    typedef typename M::T T;
    if (M::MASTER && a.hooks_read_master) return (T)a.master[off];
    return (T)fast_load(((const typename M::P*)a.param)[off]);
}

// The gradient as the update sees it: loaded, averaged (fast.distributed's mean of a sum
// over ranks, rounded to the gradient's dtype), hooked and unscaled, in the order of the
// profile.
template <class M>
FAST_FN typename M::T load_gradient(const FastStepArgs& a, int64_t t, int64_t i, int64_t off) {
    typedef typename M::T T;
    typedef typename M::P P;
    T g = (T)fast_load(((const P*)a.grad[t])[i]);
    if (a.average) g = round_to<P>(g * (T)a.average_factor);
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


typedef Mode<double, double, double, double, double, false> ModeF64;
typedef Mode<float, float, float, float, float, false> ModeF32;
typedef Mode<float, fast_half, float, float, fast_half, true> ModeF16Master;
typedef Mode<float, fast_half, float, float, float, true> ModeF16MasterFixed;
typedef Mode<float, fast_half, fast_half, fast_half, fast_half, false> ModeF16;

#endif  // FAST_ELEMENT_PIPELINE_H
