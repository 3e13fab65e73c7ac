// One source of every optimizer's per-element update, shared by the CPU
// driver (cpu_driver.cpp, g++ -> ctypes) and the CUDA driver (cuda_driver.cu,
// compiled by NVRTC in fast/backends/nvrtc.py).
//
// T is the compute type (float for fp16/fp32 storage, double for float64).
// S is the state storage type, P the storage type the parameter value is
// rounded to between two in-place operations (float when the fp32 master is
// used). round_to<S>(x) reproduces the rounding Chainer's NumPy code applies
// when it stores an intermediate into an array of dtype S and reads it back.
//
// hp[] holds per-tensor scalars prepared on the host in double precision
// (derived constants such as 1 - beta1 are formed in double, as Python does,
// and are rounded to T here, as NumPy rounds a Python float to the array dtype).
#ifndef FAST_UPDATE_MATH_H
#define FAST_UPDATE_MATH_H
#include "abi.h"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FAST_FN __device__ __forceinline__
#define FAST_MEMBER __device__ __forceinline__ static
#define FAST_METHOD __device__ __forceinline__
#include <cuda_fp16.h>
typedef __half fast_half;
FAST_FN float fast_load(fast_half x) { return __half2float(x); }
FAST_FN fast_half fast_store_half(float x) { return __float2half_rn(x); }
FAST_FN float fast_sqrt(float x) { return sqrtf(x); }
FAST_FN double fast_sqrt(double x) { return sqrt(x); }
#else
#include <cmath>
#include <immintrin.h>
#define FAST_FN static inline __attribute__((always_inline))
#define FAST_MEMBER static inline __attribute__((always_inline))
#define FAST_METHOD inline __attribute__((always_inline))
// _Float16 is the storage type; conversions go through F16C (round to
// nearest even), which g++ 12 would otherwise route through libgcc calls.
typedef _Float16 fast_half;
FAST_FN float fast_load(fast_half x) {
    unsigned short bits;
    __builtin_memcpy(&bits, &x, 2);
    return _cvtsh_ss(bits);
}
FAST_FN fast_half fast_store_half(float x) {
    unsigned short bits = _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
    fast_half h;
    __builtin_memcpy(&h, &bits, 2);
    return h;
}
FAST_FN float fast_sqrt(float x) { return std::sqrt(x); }
FAST_FN double fast_sqrt(double x) { return std::sqrt(x); }
#endif

// ---- load/store layer: the only place that knows how fp16 is spelled ----
FAST_FN float fast_load(float x) { return x; }
FAST_FN double fast_load(double x) { return x; }

template <class S, class T> struct FastStore {
    FAST_MEMBER S to(T x) { return (S)x; }
};
template <class T> struct FastStore<fast_half, T> {
    FAST_MEMBER fast_half to(T x) { return fast_store_half((float)x); }
};
template <class S, class T> FAST_FN S store_as(T x) { return FastStore<S, T>::to(x); }
template <class S, class T> struct FastRound {
    FAST_MEMBER T run(T x) { return (T)fast_load(store_as<S>(x)); }
};
#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
// Host: float -> nearest fp16 value (ties to even), kept as float, in integer
// and float operations the vectoriser handles (F16C has no such form). Adding
// 2^(e+13) to |x| in [2^e, 2^(e+1)) rounds it, in the FPU's round-to-nearest-
// even, to a multiple of 2^(e-10), the fp16 spacing there; below 2^-14 the
// constant stays 2^-1 and the spacing 2^-24 (fp16 subnormals). Equal to the
// F16C conversion for all 2^32 float inputs, NaN kept with its payload
// (checked exhaustively). Rounding the bits by hand costs three times as much
// and makes fp16 updates compute-bound.
template <> struct FastRound<fast_half, float> {
    FAST_MEMBER float run(float x) {
        const unsigned int bits = __builtin_bit_cast(unsigned int, x);
        const unsigned int sign = bits & 0x80000000u, mag = bits & 0x7fffffffu;
        const float ax = __builtin_bit_cast(float, mag);
        unsigned int exp_bits = mag & 0x7f800000u;
        exp_bits = exp_bits < 0x38800000u ? 0x38800000u : exp_bits;  // 2^-14
        const float magic = __builtin_bit_cast(float, exp_bits + (13u << 23));
        unsigned int r_bits = __builtin_bit_cast(unsigned int, (ax + magic) - magic);
        // from 65520 on (where magic may be garbage): inf, and NaN stays NaN
        const unsigned int huge_bits = mag > 0x7f800000u ? mag : 0x7f800000u;
        r_bits = (int)mag >= 0x477FF000 ? huge_bits : r_bits;
        return __builtin_bit_cast(float, r_bits | sign);
    }
};
#endif
template <class S, class T> FAST_FN T round_to(T x) { return FastRound<S, T>::run(x); }
// The constant c in the compute type T. A function rather than T(c): on the host the
// fp16 update also runs these structs on 8 float lanes (cpu_driver.cpp), a vector
// type that has no conversion from a scalar and specialises this template.
template <class T> FAST_FN T fast_const(int c) { return T(c); }

// NumPy's maximum/minimum/clip propagate NaN from either operand.
template <class T> FAST_FN T nan_max(T a, T b) { return ((a != a) | (a >= b)) ? a : b; }
template <class T> FAST_FN T nan_min(T a, T b) { return ((a != a) | (a <= b)) ? a : b; }
// clip(x, lo, hi) with NumPy's NaN rules: a NaN x stays; a NaN bound wins, lo before hi.
// Written as four selects, which GCC vectorises (a nan_max/nan_min composition it did not).
template <class T> FAST_FN T nan_clip(T x, T lo, T hi) {
    T c = x < lo ? lo : x;
    c = c > hi ? hi : c;
    c = (hi != hi) ? hi : c;
    return (lo != lo) ? lo : c;
}
template <class T> FAST_FN T sign_of(T x) {
    return x > fast_const<T>(0) ? fast_const<T>(1) : (x < fast_const<T>(0) ? fast_const<T>(-1) : x);  // NaN and +-0 map to themselves
}

// ---- optimizers: one struct per update rule ----
// update(p, g, s, hp): p is the parameter value (master or parameter), g the
// unscaled, hooked gradient, hp[] the hyperparameters, all in T; s the state,
// which the driver loads before the update and stores after it. s[k] reads
// slot k; s.keep(k, x) rounds x to the state dtype S, makes it slot k's new
// value and returns it; s.set(k, x) makes x, already a value of S, the new
// value. A rule reads a slot before it writes it. (StateSlots in
// element_pipeline.h is the plain form; the CPU's fp16 lanes keep the fp16 bits
// the rounding made and store those, without converting the value again.)

// SGD:            p <- p - lr * g                                  hp: lr
struct RuleSGD {
    static const int n_state = 0;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) { p = p - hp[0] * g; }
};

// MomentumSGD:    v <- momentum * v - lr * g;  p <- p + v          hp: momentum, lr
struct RuleMomentumSGD {
    static const int n_state = 1;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T v = round_to<S>(s[0] * hp[0]);
        v = s.keep(0, v - hp[1] * g);
        p = p + v;
    }
};

// CorrectedMomentumSGD: v <- momentum * v - g;  p <- p + lr * v    hp: momentum, lr
struct RuleCorrectedMomentumSGD {
    static const int n_state = 1;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T v = round_to<S>(s[0] * hp[0]);
        v = s.keep(0, v - g);
        p = p + hp[1] * v;
    }
};

// NesterovAG:     v <- momentum * v - lr * g
//                 p <- p + momentum^2 * v - (1 + momentum) * lr * g
//                 hp: momentum, lr, momentum^2, (1 + momentum) * lr
struct RuleNesterovAG {
    static const int n_state = 1;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T v = round_to<S>(s[0] * hp[0]);
        v = s.keep(0, v - hp[1] * g);
        p = round_to<P>(p + hp[2] * v);
        p = p - hp[3] * g;
    }
};

// AdaGrad:        h <- h + g^2;  p <- p - lr * g / (sqrt(h) + eps) hp: lr, eps
struct RuleAdaGrad {
    static const int n_state = 1;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T h = s.keep(0, s[0] + g * g);
        p = p - hp[0] * g / (fast_sqrt(h) + hp[1]);
    }
};

// AdaDelta:       msg  <- rho * msg + (1 - rho) * g^2
//                 dx   <- sqrt((msdx + eps) / (msg + eps)) * g
//                 msdx <- rho * msdx + (1 - rho) * dx^2;  p <- p - dx
//                 hp: rho, 1 - rho, eps
struct RuleAdaDelta {
    static const int n_state = 2;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T msg = round_to<S>(s[0] * hp[0]);
        msg = s.keep(0, msg + hp[1] * g * g);
        T dx = fast_sqrt((s[1] + hp[2]) / (msg + hp[2])) * g;
        T msdx = round_to<S>(s[1] * hp[0]);
        s.keep(1, msdx + hp[1] * dx * dx);
        p = p - dx;
    }
};

// RMSprop:        ms <- alpha * ms + (1 - alpha) * g^2
//                 p  <- p - lr * g / (sqrt(ms) + eps)   (or sqrt(ms + eps))
//                 hp: alpha, 1 - alpha, eps, lr, eps_inside_sqrt (0/1)
struct RuleRMSprop {
    static const int n_state = 1;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T ms = round_to<S>(s[0] * hp[0]);
        ms = s.keep(0, ms + hp[1] * g * g);
        T denom = hp[4] != fast_const<T>(0) ? fast_sqrt(ms + hp[2]) : fast_sqrt(ms) + hp[2];
        p = p - hp[3] * g / denom;
    }
};

// RMSpropGraves:  n <- alpha * n + (1 - alpha) * g^2
//                 a <- alpha * a + (1 - alpha) * g
//                 delta <- momentum * delta - lr * g / sqrt(n - a^2 + eps)
//                 p <- p + delta
//                 hp: alpha, 1 - alpha, momentum, lr, eps
struct RuleRMSpropGraves {
    static const int n_state = 3;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T n = round_to<S>(s[0] * hp[0]);
        n = s.keep(0, n + hp[1] * g * g);
        T a = round_to<S>(s[1] * hp[0]);
        a = s.keep(1, a + hp[1] * g);
        T delta = round_to<S>(s[2] * hp[2]);
        delta = s.keep(2, delta - hp[3] * g / fast_sqrt(n - a * a + hp[4]));
        p = p + delta;
    }
};

// Adam family (Adam, AdamW, AMSGrad, AdaBound, AMSBound):
//   m <- m + (1 - beta1) (g - m);  v <- v + (1 - beta2) (g^2 - v)
//   vhat <- max(vhat, v) (AMSGrad) or v
//   step <- alpha_t / (sqrt(vhat) + eps), clipped to [lower, upper] (AdaBound)
//   p <- a p - eta (step m), a = 1 - eta * weight_decay_rate (without decay a is 1, and
//        a p is then p exactly: one formula serves Adam and AdamW)
//   hp: 1-beta1, 1-beta2, alpha_t, eps, lower, upper, a, -eta
template <bool AMSGRAD, bool ADABOUND> struct RuleAdamT {
    static const int n_state = AMSGRAD ? 3 : 2;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T m = s.keep(0, s[0] + hp[0] * (g - s[0]));
        T v = s.keep(1, s[1] + hp[1] * (g * g - s[1]));
        T vhat = v;
        if (AMSGRAD) {
            vhat = nan_max(s[2], v);
            s.set(2, vhat);
        }
        T step = hp[2] / (fast_sqrt(vhat) + hp[3]);
        if (ADABOUND) step = nan_clip(step, hp[4], hp[5]);
        T delta = hp[7] * (step * m);
        p = hp[6] * p + delta;
    }
};
typedef RuleAdamT<false, false> RuleAdam;
typedef RuleAdamT<true, false> RuleAMSGrad;
typedef RuleAdamT<false, true> RuleAdaBound;
typedef RuleAdamT<true, true> RuleAMSBound;

// MSVAG:  m <- m + (1 - beta) (g - m);  v <- v + (1 - beta) (g^2 - v)
//         mt = m / (1 - beta^t);  vt = v / (1 - beta^t);  s = (vt - mt^2) / (1 - rho)
//         factor = clip(mt^2 / (mt^2 + rho s), 0, 1), NaN -> 0 (Chainer's CPU rule)
//         p <- p - eta (lr mt factor + weight_decay_rate p)
//         hp: 1-beta, 1-beta_power, 1-rho, rho, eta, lr, weight_decay_rate
struct RuleMSVAG {
    static const int n_state = 2;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T m = s.keep(0, s[0] + hp[0] * (g - s[0]));
        T v = s.keep(1, s[1] + hp[0] * (g * g - s[1]));
        T mt = m / hp[1];
        T vt = v / hp[1];
        T mt2 = mt * mt;
        T sv = (vt - mt2) / hp[2];
        T factor = mt2 / (mt2 + hp[3] * sv);
        factor = nan_clip(factor, fast_const<T>(0), fast_const<T>(1));
        factor = (factor != factor) ? fast_const<T>(0) : factor;
        p = p - hp[4] * (hp[5] * mt * factor + hp[6] * p);
    }
};

// SMORMS3: r = 1 / (mem + 1);  a <- (1 - r) a + r g;  a2 <- (1 - r) a2 + r g^2
//          x = a^2 / (a2 + eps);  p <- p - g min(x, lr) / (sqrt(a2) + eps)
//          mem <- 1 + mem (1 - x)          hp: lr, eps
struct RuleSMORMS3 {
    static const int n_state = 3;
    template <class T, class S, class P, class State>
    FAST_MEMBER void update(T& p, T g, State& s, const T* hp) {
        T r = fast_const<T>(1) / (s[0] + fast_const<T>(1));
        T a = s.keep(1, (fast_const<T>(1) - r) * s[1] + r * g);
        T a2 = s.keep(2, (fast_const<T>(1) - r) * s[2] + r * g * g);
        T x = a * a / (a2 + hp[1]);
        p = p - g * nan_min(x, hp[0]) / (fast_sqrt(a2) + hp[1]);
        s.keep(0, fast_const<T>(1) + s[0] * (fast_const<T>(1) - x));
    }
};

// ---- elementwise optimizer hooks, applied to the gradient on load ----
// Each op (FastHookKind, abi.h) acts on g in the hook domain and rounds its
// result to the grad dtype H, as Chainer's in-place NumPy update of param.grad does.

template <class T, class H>
FAST_FN T apply_hook(int kind, T g, T p, T a, T b, T noise) {
    switch (kind) {
    case HOOK_ADD_PARAM: return round_to<H>(g + round_to<H>(a * p));
    case HOOK_ADD_SIGN: return round_to<H>(g + round_to<H>(a * sign_of(p)));
    case HOOK_CLIP: return round_to<H>(nan_clip(g, a, b));
    case HOOK_SCALE: return round_to<H>(g * a);
    case HOOK_SCALE_TENSOR: return round_to<H>(g * a);
    case HOOK_ADD_NOISE: return round_to<H>(g + noise);
    case HOOK_ADD_PARAM_WIDE: return round_to<H>(g + a * p);
    case HOOK_ADD_SIGN_WIDE: return round_to<H>(g + a * sign_of(p));
    default: return g;
    }
}

#endif  // FAST_UPDATE_MATH_H
