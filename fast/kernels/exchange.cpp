// The element passes of fast.distributed's exchange buffers on the host (fast.backends.cpu
// calls them through ctypes; fast.distributed.exchange says when):
//
// - fast_convert: dst = cast_D(round_R(float64(src) * factor)), src in dtype S. With factor 1
//   it is a cast (the gradients packed into the exchange buffer, in R = D = the exchange
//   dtype); with factor 1/N it is the mean of a block of sums (ChainerMN's y = x * (1.0 / N)
//   in the exchange dtype R, then the cast to the gradient's dtype D).
// - fast_pack: a list of arrays of one dtype copied (cast) one after another into a flat
//   buffer, the gradients into the exchange buffer; a null array is written as zeros.
// - fast_sum_f16: inout = in + inout for float16 arrays, the reduction the "mpi" communicator
//   gives MPI for float16 buffers.
//
// Every rounding is IEEE round to nearest even, as NumPy's casts and arithmetic round. A
// float64 is rounded to float16 once: to float32 first with round to odd (a value between two
// floats becomes the one whose last bit is 1), which keeps the decision of the second
// rounding intact since float32 holds float16's 11 bits and 2 more. float16 sums are formed
// in float32 and rounded to float16: the float32 sum of two float16 values rounds to the
// float16 nearest their exact sum (float32's 24 bits are at least 2 x 11 + 2).
//
// The float16 <-> float32 conversions are F16C's (8 lanes at a time); the other conversions
// and the products run on 4 float64 lanes (AVX2). A pass runs on ``threads`` OpenMP threads
// (0: OpenMP's default); fast.backends.cpu gives each rank its share of the node's cores.
// A build without F16C or AVX2 exports the functions but returns -1, and the caller falls
// back to NumPy.
#include <stdint.h>
#include <string.h>
#include <cmath>
#include <immintrin.h>
#include <omp.h>
#include "abi.h"

namespace {

#if defined(__F16C__) && defined(__AVX2__)

// Waking the OpenMP team costs more than these passes over a few thousand elements.
const int64_t PARALLEL_MIN_ELEMENTS = 1 << 16;

inline int pass_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

inline bool is_power_of_two(double f) {
    int exponent;
    return std::frexp(f, &exponent) == 0.5 && std::isnormal(f);
}

// ---- 4 float64 lanes ----
// Four 64-bit lane masks as four 32-bit ones (the low half of each).
inline __m128i narrow_mask(__m256d mask) {
    const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(mask), low));
}

// float64 -> float32, rounding to odd: the nearest float when exact, else the float next to
// x, toward zero, with its last bit set (inf for values beyond the floats is FLT_MAX with it
// set, a value below the least subnormal is that subnormal; NaN stays NaN).
inline __m128 to_float_odd(__m256d x) {
    const __m128 nearest = _mm256_cvtpd_ps(x);
    const __m256d back = _mm256_cvtps_pd(nearest);
    const __m256d magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    const __m128i inexact = narrow_mask(_mm256_cmp_pd(back, x, _CMP_NEQ_OQ));
    const __m128i away = narrow_mask(_mm256_cmp_pd(_mm256_and_pd(back, magnitude), _mm256_and_pd(x, magnitude),
                                                   _CMP_GT_OQ));
    __m128i bits = _mm_add_epi32(_mm_castps_si128(nearest), away);  // one float toward zero
    bits = _mm_or_si128(bits, _mm_and_si128(inexact, _mm_set1_epi32(1)));
    return _mm_castsi128_ps(bits);
}

// float64 -> float16 bits (4 lanes in the low half), one rounding to nearest even.
inline __m128i to_half(__m256d x) { return _mm_cvtps_ph(to_float_odd(x), _MM_FROUND_TO_NEAREST_INT); }

template <int CODE> struct Lanes4;
template <> struct Lanes4<FAST_FLOAT16> {
    typedef uint16_t E;
    static __m256d load(const E* p) { return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)p))); }
    static __m256d round(__m256d x) { return _mm256_cvtps_pd(_mm_cvtph_ps(to_half(x))); }
    static void store(E* p, __m256d x) { _mm_storel_epi64((__m128i*)p, to_half(x)); }
    static double load1(const E* p) { return (double)_cvtsh_ss(*p); }
};
template <> struct Lanes4<FAST_FLOAT32> {
    typedef float E;
    static __m256d load(const E* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
    static __m256d round(__m256d x) { return _mm256_cvtps_pd(_mm256_cvtpd_ps(x)); }
    static void store(E* p, __m256d x) { _mm_storeu_ps(p, _mm256_cvtpd_ps(x)); }
    static double load1(const E* p) { return (double)*p; }
};
template <> struct Lanes4<FAST_FLOAT64> {
    typedef double E;
    static __m256d load(const E* p) { return _mm256_loadu_pd(p); }
    static __m256d round(__m256d x) { return x; }
    static void store(E* p, __m256d x) { _mm256_storeu_pd(p, x); }
    static double load1(const E* p) { return *p; }
};

// Elements [i, i + 4) of the generic pass: float64 products, R's rounding, D's store.
template <int S, int R, int D>
inline void convert4(const typename Lanes4<S>::E* src, typename Lanes4<D>::E* dst, int64_t i, __m256d factor) {
    Lanes4<D>::store(dst + i, Lanes4<R>::round(_mm256_mul_pd(Lanes4<S>::load(src + i), factor)));
}

template <int S, int R, int D>
void convert_f64_lanes(const void* src_, void* dst_, int64_t n, double factor, int threads) {
    const typename Lanes4<S>::E* src = (const typename Lanes4<S>::E*)src_;
    typename Lanes4<D>::E* dst = (typename Lanes4<D>::E*)dst_;
    const __m256d f = _mm256_set1_pd(factor);
    const int64_t vec = n - n % 4;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS) num_threads(pass_threads(threads))
    for (int64_t i = 0; i < vec; i += 4) convert4<S, R, D>(src, dst, i, f);
    if (vec < n) {  // the last 1-3 elements, through a zero-padded group of 4
        alignas(32) typename Lanes4<S>::E in[4] = {};
        alignas(32) typename Lanes4<D>::E out[4];
        for (int64_t i = vec; i < n; ++i) in[i - vec] = src[i];
        convert4<S, R, D>(in, out, 0, f);
        for (int64_t i = vec; i < n; ++i) dst[i] = out[i - vec];
    }
}

// ---- 8 float32 lanes: S, R and D float16 or float32, factor a power of two ----
// Then x * factor is the exact product in float32 (float16 inputs), or its float32 rounding
// (float32 inputs), which is round_R's result for R = float32 and, for R = float16, rounds
// to the same float16 (a product that float32 rounds lies below 2^-126, far below float16's
// least subnormal, and becomes a signed zero either way).
template <int CODE> struct Lanes8;
template <> struct Lanes8<FAST_FLOAT16> {
    typedef uint16_t E;
    static __m256 load(const E* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
    static __m256 round(__m256 x) {  // NaN lanes keep their bits
        const __m256 r = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    static void store(E* p, __m256 x) { _mm_storeu_si128((__m128i*)p, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }
};
template <> struct Lanes8<FAST_FLOAT32> {
    typedef float E;
    static __m256 load(const E* p) { return _mm256_loadu_ps(p); }
    static __m256 round(__m256 x) { return x; }
    static void store(E* p, __m256 x) { _mm256_storeu_ps(p, x); }
};

template <int S, int R, int D>
void convert_f32_lanes(const void* src_, void* dst_, int64_t n, double factor, int threads) {
    const typename Lanes8<S>::E* src = (const typename Lanes8<S>::E*)src_;
    typename Lanes8<D>::E* dst = (typename Lanes8<D>::E*)dst_;
    const __m256 f = _mm256_set1_ps((float)factor);
    const bool scale = factor != 1.0;
    const int64_t vec = n - n % 8;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS) num_threads(pass_threads(threads))
    for (int64_t i = 0; i < vec; i += 8) {
        __m256 x = Lanes8<S>::load(src + i);
        if (scale) x = _mm256_mul_ps(x, f);
        Lanes8<D>::store(dst + i, Lanes8<R>::round(x));
    }
    if (vec < n) convert_f64_lanes<S, R, D>(src + vec, dst + vec, n - vec, factor, threads);
}

template <int S, int R, int D>
void convert(const void* src, void* dst, int64_t n, double factor, int threads) {
    constexpr bool narrow = S != FAST_FLOAT64 && R != FAST_FLOAT64 && D != FAST_FLOAT64;
    if constexpr (narrow) {
        if (factor == 1.0 || is_power_of_two(factor)) return convert_f32_lanes<S, R, D>(src, dst, n, factor, threads);
    }
    convert_f64_lanes<S, R, D>(src, dst, n, factor, threads);
}

typedef void (*ConvertFn)(const void*, void*, int64_t, double, int);

template <int S, int R>
ConvertFn convert_to(int dst) {
    switch (dst) {
    case FAST_FLOAT16: return convert<S, R, FAST_FLOAT16>;
    case FAST_FLOAT32: return convert<S, R, FAST_FLOAT32>;
    case FAST_FLOAT64: return convert<S, R, FAST_FLOAT64>;
    default: return nullptr;
    }
}

template <int S>
ConvertFn convert_through(int round, int dst) {
    switch (round) {
    case FAST_FLOAT16: return convert_to<S, FAST_FLOAT16>(dst);
    case FAST_FLOAT32: return convert_to<S, FAST_FLOAT32>(dst);
    case FAST_FLOAT64: return convert_to<S, FAST_FLOAT64>(dst);
    default: return nullptr;
    }
}

ConvertFn convert_fn(int src, int round, int dst) {
    switch (src) {
    case FAST_FLOAT16: return convert_through<FAST_FLOAT16>(round, dst);
    case FAST_FLOAT32: return convert_through<FAST_FLOAT32>(round, dst);
    case FAST_FLOAT64: return convert_through<FAST_FLOAT64>(round, dst);
    default: return nullptr;
    }
}

// dst[0, n) = src[0, n) bytes, with non-temporal stores: a buffer written now and read by MPI
// later gains nothing from being in the caches, and streaming it saves the reads of the
// lines it overwrites (measured, ResNet-50's 25.6M float16 gradients on one core: 4.9 ms
// against 6.5 for NumPy's copies).
void stream_copy(const char* src, char* dst, int64_t n) {
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); ++i) dst[i] = src[i];
    for (; i + 128 <= n; i += 128) {
        const __m256i a = _mm256_loadu_si256((const __m256i*)(src + i));
        const __m256i b = _mm256_loadu_si256((const __m256i*)(src + i + 32));
        const __m256i c = _mm256_loadu_si256((const __m256i*)(src + i + 64));
        const __m256i d = _mm256_loadu_si256((const __m256i*)(src + i + 96));
        _mm256_stream_si256((__m256i*)(dst + i), a);
        _mm256_stream_si256((__m256i*)(dst + i + 32), b);
        _mm256_stream_si256((__m256i*)(dst + i + 64), c);
        _mm256_stream_si256((__m256i*)(dst + i + 96), d);
    }
    for (; i < n; ++i) dst[i] = src[i];
}

const int64_t ITEM_BYTES[3] = {2, 4, 8};  // by FastDtype code

#endif  // __F16C__ && __AVX2__

}  // namespace

extern "C" {

// dst[i] = cast_dst(round_round(float64(src[i]) * factor)) for i < n; the dtypes are FastDtype
// codes. src and dst may be the same buffer (each element is read before it is written).
// Returns 0, -2 for an unknown code, -1 where the build lacks F16C or AVX2.
int fast_convert(int src_dtype, int round_dtype, int dst_dtype, const void* src, void* dst, int64_t n,
                 double factor, int threads) {
#if defined(__F16C__) && defined(__AVX2__)
    const ConvertFn fn = convert_fn(src_dtype, round_dtype, dst_dtype);
    if (fn == nullptr) return -2;
    fn(src, dst, n, factor, threads);
    return 0;
#else
    (void)src_dtype; (void)round_dtype; (void)dst_dtype; (void)src; (void)dst; (void)n; (void)factor; (void)threads;
    return -1;
#endif
}

// The arrays srcs[k] (counts[k] elements of src_dtype, C-contiguous; null: zeros), k < n_arrays,
// one after another into dst (dst_dtype), cast where the dtypes differ (fast_convert, factor 1).
// Returns 0, -2 for an unknown code, -1 where the build lacks F16C or AVX2.
int fast_pack(int src_dtype, int dst_dtype, const void* const* srcs, const int64_t* counts, int64_t n_arrays,
              void* dst, int threads) {
#if defined(__F16C__) && defined(__AVX2__)
    if (src_dtype < 0 || src_dtype > 2 || dst_dtype < 0 || dst_dtype > 2) return -2;
    const ConvertFn cast = convert_fn(src_dtype, dst_dtype, dst_dtype);
    const int64_t in_bytes = ITEM_BYTES[src_dtype], out_bytes = ITEM_BYTES[dst_dtype];
    char* out = (char*)dst;
    for (int64_t k = 0; k < n_arrays; ++k) {
        const int64_t n = counts[k];
        if (srcs[k] == nullptr) memset(out, 0, n * out_bytes);
        else if (src_dtype == dst_dtype) stream_copy((const char*)srcs[k], out, n * in_bytes);
        else cast(srcs[k], out, n, 1.0, threads);
        out += n * out_bytes;
    }
    _mm_sfence();
    return 0;
#else
    (void)src_dtype; (void)dst_dtype; (void)srcs; (void)counts; (void)n_arrays; (void)dst; (void)threads;
    return -1;
#endif
}

// inout[i] = in[i] + inout[i] for float16 arrays of n elements (MPI's user-function order:
// the incoming operand first), each sum rounded once to float16. Returns 0, or -1 where the
// build lacks F16C.
int fast_sum_f16(const uint16_t* in, uint16_t* inout, int64_t n, int threads) {
#if defined(__F16C__) && defined(__AVX2__)
    const int64_t vec = n - n % 8;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS) num_threads(pass_threads(threads))
    for (int64_t i = 0; i < vec; i += 8) {
        const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(in + i)));
        const __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(inout + i)));
        _mm_storeu_si128((__m128i*)(inout + i), _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT));
    }
    for (int64_t i = vec; i < n; ++i)
        inout[i] = _cvtss_sh(_cvtsh_ss(in[i]) + _cvtsh_ss(inout[i]), _MM_FROUND_TO_NEAREST_INT);
    return 0;
#else
    (void)in; (void)inout; (void)n; (void)threads;
    return -1;
#endif
}

// OpenMP's default thread count in this process (what threads = 0 uses).
int fast_default_threads(void) { return omp_get_max_threads(); }

}  // extern "C"
