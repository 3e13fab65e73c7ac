// Host driver: walks a group's chunk table with OpenMP and calls the
// per-element math of update_math.h. Compiled by fast/backends/cpu.py.
#include <stdint.h>
#include <type_traits>
#include <vector>
#include <immintrin.h>
#include <omp.h>

// Eight float lanes (a GCC vector type): the fp16 update without a master runs the
// Rule structs of update_math.h on it (update_f16_lanes below). Its square root is
// declared before the structs, which find it by ordinary lookup.
typedef float fast_f32x8 __attribute__((vector_size(32)));
static inline fast_f32x8 fast_sqrt(fast_f32x8 x) { return _mm256_sqrt_ps(x); }

#include "update_math.h"
#include "element_pipeline.h"

template <> inline fast_f32x8 fast_const<fast_f32x8>(int c) { return _mm256_set1_ps((float)c); }

// round_to<fast_half> on 8 lanes: F16C's round trip (round to nearest even). It equals the
// scalar FastRound<fast_half, float> for every float but a NaN, whose low 13 mantissa bits it
// clears and whose quiet bit it sets. Those are bits no fp16 store keeps and no lane decision
// reads (a NaN compares unordered whatever its payload), and the lanes only round the results
// of arithmetic, which are quiet: an fp16 step gives the same bits either way.
template <> struct FastRound<fast_half, fast_f32x8> {
    static inline fast_f32x8 run(fast_f32x8 x) {
        return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    }
};

// The fp16 state of 8 lanes (update_math.h's state interface): the values as float lanes and
// the fp16 bits that loading or keep()'s rounding produced, which are stored as they are. A
// rounded value is thus converted to fp16 once, not once to round it and again to store it
// (2 of the 5 float-to-fp16 conversions of an Adam step).
struct HalfLanes {
    fast_f32x8 v[FAST_MAX_STATE];
    __m128i bits[FAST_MAX_STATE];
    inline fast_f32x8 operator[](int k) const { return v[k]; }
    inline fast_f32x8 keep(int k, fast_f32x8 x) {
        bits[k] = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        return v[k] = _mm256_cvtph_ps(bits[k]);
    }
    inline void set(int k, fast_f32x8 x) {
        bits[k] = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        v[k] = x;
    }
    inline void load(int k, const fast_half* src) {
        bits[k] = _mm_loadu_si128((const __m128i*)src);
        v[k] = _mm256_cvtph_ps(bits[k]);
    }
    inline void store(int k, fast_half* dst) const { _mm_storeu_si128((__m128i*)dst, bits[k]); }
};

namespace {

// ---- host tile layer: converts storage <-> compute type 8 lanes at a time ----
static const int TILE = 512;

template <class A, class B> inline void tile_load(const A* src, B* dst, int n) {
    int j = 0;
    if constexpr (std::is_same<A, fast_half>::value && std::is_same<B, float>::value)
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + j))));
    for (; j < n; ++j) dst[j] = (B)fast_load(src[j]);
}
template <class A, class B> inline void tile_store(const A* src, B* dst, int n) {
    int j = 0;
    if constexpr (std::is_same<A, float>::value && std::is_same<B, fast_half>::value) {
        for (; j + 8 <= n; j += 8)
            _mm_storeu_si128((__m128i*)(dst + j), _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
        for (; j < n; ++j) dst[j] = fast_store_half(src[j]);
    } else {
        for (; j < n; ++j) dst[j] = (B)src[j];
    }
}

// x <- round_to<P>(x / s) (DIVIDE: the loss scale's unscaling) or round_to<P>(x * s) (the
// mean over ranks of fast.distributed, read into the load as element_pipeline.h's
// load_gradient does per element) over a tile. For fp16 the rounding is F16C's round trip
// (round to nearest even, 2 instructions for 8 lanes); NaN lanes keep their bits, as
// round_to does. Equal to round_to<fast_half> for all 2^32 float inputs (checked
// exhaustively).
template <bool DIVIDE, class P, class T> inline void round_tile(T* x, int n, T s) {
    int j = 0;
    if constexpr (std::is_same<P, fast_half>::value && std::is_same<T, float>::value) {
        const __m256 v = _mm256_set1_ps(s);
        for (; j + 8 <= n; j += 8) {
            const __m256 a = _mm256_load_ps(x + j);
            const __m256 q = DIVIDE ? _mm256_div_ps(a, v) : _mm256_mul_ps(a, v);
            const __m256 r = _mm256_cvtph_ps(_mm256_cvtps_ph(q, _MM_FROUND_TO_NEAREST_INT));
            _mm256_store_ps(x + j, _mm256_blendv_ps(r, q, _mm256_cmp_ps(q, q, _CMP_UNORD_Q)));
        }
    }
    for (; j < n; ++j) x[j] = round_to<P>(DIVIDE ? x[j] / s : x[j] * s);
}

template <class P, class T> inline void unscale_tile(T* x, int n, T divisor) {
    round_tile<true, P>(x, n, divisor);
}

template <class P, class T> inline void average_tile(T* x, int n, T factor) {
    round_tile<false, P>(x, n, factor);
}

// The gradient pipeline of element_pipeline.h (load, average, unscale, hooks, unscale),
// applied a tile at a time: each hook op runs as its own loop over the tile,
// so the loops vectorise. The per-element arithmetic is apply_hook of
// update_math.h, as on the device. pb receives the hook operand (parameter or
// master), which the reduction also needs.
template <class M, int KIND>
inline void hook_tile(typename M::T* gb, const typename M::T* pb, const void* noise, int64_t i0, int n,
                      typename M::T av, typename M::T bv) {
    typedef typename M::T T;
    typedef typename M::H H;
    if (KIND == HOOK_ADD_NOISE) {
        alignas(64) T nb[TILE];
        tile_load((const H*)noise + i0, nb, n);
        for (int j = 0; j < n; ++j) gb[j] = apply_hook<T, H>(KIND, gb[j], pb[j], av, bv, nb[j]);
    } else {
        for (int j = 0; j < n; ++j) gb[j] = apply_hook<T, H>(KIND, gb[j], pb[j], av, bv, T(0));
    }
}

template <class M>
void gradient_tile(const FastStepArgs& a, int64_t t, int64_t i0, int n, typename M::T* gb, typename M::T* pb) {
    typedef typename M::T T;
    typedef typename M::P P;
    typedef typename M::H H;
    const int64_t base = a.tensor_offset[t];
    tile_load((const P*)a.grad[t] + i0, gb, n);
    if (a.average) average_tile<P>(gb, n, (T)a.average_factor);
    const T divisor = (T)a.unscale_divisor;
    if (a.unscale && a.unscale_first)
        for (int j = 0; j < n; ++j) gb[j] = round_to<H>(gb[j] / divisor);
    if (M::MASTER && a.hooks_read_master) tile_load(a.master + base + i0, pb, n);
    else tile_load((const P*)a.param + base + i0, pb, n);
    for (int k = 0; k < a.n_hooks; ++k) {
        const int64_t idx = (int64_t)k * a.n_tensors + t;
        const T av = (T)a.hook_a[idx], bv = (T)a.hook_b[idx];
        const void* noise = a.hook_noise[idx];
        switch (a.hook_kind[k]) {
        case HOOK_ADD_PARAM: hook_tile<M, HOOK_ADD_PARAM>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_ADD_SIGN: hook_tile<M, HOOK_ADD_SIGN>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_CLIP: hook_tile<M, HOOK_CLIP>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_SCALE: hook_tile<M, HOOK_SCALE>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_SCALE_TENSOR: hook_tile<M, HOOK_SCALE_TENSOR>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_ADD_NOISE: hook_tile<M, HOOK_ADD_NOISE>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_ADD_PARAM_WIDE: hook_tile<M, HOOK_ADD_PARAM_WIDE>(gb, pb, noise, i0, n, av, bv); break;
        case HOOK_ADD_SIGN_WIDE: hook_tile<M, HOOK_ADD_SIGN_WIDE>(gb, pb, noise, i0, n, av, bv); break;
        default: break;
        }
    }
    if (a.unscale && !a.unscale_first) {
        if (M::MASTER) for (int j = 0; j < n; ++j) gb[j] = gb[j] / divisor;
        else unscale_tile<P>(gb, n, divisor);
    }
}

// Waking the OpenMP team costs microseconds on an idle machine and up to a
// scheduler slice on a loaded one: small groups run on the calling thread.
static const int64_t PARALLEL_MIN_ELEMENTS = 1 << 16;

// The threads of a parallel pass: the count the caller gives (fast.backends.cpu sets it from
// fast.set_cpu_threads, or a rank's share of its node's cores), else OpenMP's default.
inline int pass_threads(const FastStepArgs& a) { return a.threads > 0 ? a.threads : omp_get_max_threads(); }

inline bool worth_parallel(const FastStepArgs& a) {
    int64_t total = 0;
    for (int64_t c = 0; c < a.n_chunks && total < PARALLEL_MIN_ELEMENTS; ++c)
        total += a.chunk_end[c] - a.chunk_begin[c];
    return total >= PARALLEL_MIN_ELEMENTS;
}

// The chunks [first, last) of the calling thread of a parallel region: contiguous blocks
// holding about the same number of elements. Every pass splits a group this way, so a
// thread checks, reduces and updates the same chunks. (A split by chunk count, as OpenMP's
// static schedule makes, gives one thread 23% more of ResNet-50's elements than the other
// on 2 threads: its small tensors make short chunks.)
inline void element_block(const FastStepArgs& a, int64_t* first, int64_t* last) {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t total = 0;
    for (int64_t c = 0; c < a.n_chunks; ++c) total += a.chunk_end[c] - a.chunk_begin[c];
    // thread k starts at the first chunk that begins at or past element k * total / threads
    const int64_t from = (int64_t)((__int128)total * id / threads);
    const int64_t to = (int64_t)((__int128)total * (id + 1) / threads);
    int64_t c = 0, seen = 0;
    for (; c < a.n_chunks && seen < from; ++c) seen += a.chunk_end[c] - a.chunk_begin[c];
    *first = c;
    for (; c < a.n_chunks && seen < to; ++c) seen += a.chunk_end[c] - a.chunk_begin[c];
    *last = id + 1 == threads ? a.n_chunks : c;
}

// Whether bytes [a + begin, a + end) and [b + begin, b + end) of two arrays of E overlap.
template <class E> inline bool spans_overlap(const void* a, const void* b, int64_t begin, int64_t end) {
    const uintptr_t x = (uintptr_t)((const E*)a + begin), y = (uintptr_t)((const E*)b + begin);
    const uintptr_t bytes = (uintptr_t)(end - begin) * sizeof(E);
    return x < y + bytes && y < x + bytes;
}

// Whether the gradient shares memory with an array the update writes (parameter or
// state) over [begin, end): the update loops' pointers are __restrict.
template <class Rule, class P, class S>
inline bool grad_overlaps_written(const void* grad, const P* param, S* const* st, int64_t begin, int64_t end) {
    bool overlap = spans_overlap<P>(grad, param, begin, end);
    for (int k = 0; k < Rule::n_state; ++k) overlap = overlap || spans_overlap<S>(grad, st[k], begin, end);
    return overlap;
}

// Whether x / d equals x * (1 / d) for every float x: d is a power of two whose inverse
// is a normal float (both are then the correctly rounded x * 2^-k). Loss scales of
// dynamic scaling are powers of two until the first non-finite step, and the fp16
// update, limited by its arithmetic, is spared a division per element.
inline bool has_exact_inverse(float d) {
    int exponent;
    return std::frexp(d, &exponent) == 0.5f && std::isnormal(1.0f / d);
}

inline fast_f32x8 load_f16_lanes(const fast_half* src) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)src));
}
inline void store_f16_lanes(fast_half* dst, fast_f32x8 x) {
    _mm_storeu_si128((__m128i*)dst, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

// Whether the fp16 lanes may unscale by the inverse: round_to<fast_half>(g * (1 / d))
// equals round_to<fast_half>(g / d), bit for bit, for each of the 2^16 fp16 values g
// (inf and NaN included), compared on the lanes' own code. An fp16 gradient has no other
// values, so the product then gives the division's results. True for a power of two
// (has_exact_inverse) and for most other scales, 65504 (where dynamic scaling settles)
// among them; false for about 6% of scales drawn at random in [1, 65504], which keep the
// division. The answer for the last divisor is kept per calling thread: the comparison
// costs about as much as unscaling 2^16 elements, so update_group asks only for groups
// far larger (F16_INVERSE_MIN_ELEMENTS).
static const int64_t F16_INVERSE_MIN_ELEMENTS = 1 << 20;

inline bool f16_quotient_by_inverse(float d) {
    if (has_exact_inverse(d)) return true;
    static thread_local uint32_t seen = 0xffffffffu;  // a NaN's bits: no divisor matches it
    static thread_local bool seen_ok = false;
    const uint32_t bits = __builtin_bit_cast(uint32_t, d);
    if (bits == seen) return seen_ok;
    const fast_f32x8 divisor = _mm256_set1_ps(d), inverse = _mm256_set1_ps(1.0f / d);
    const __m128i step = _mm_set1_epi16(8);
    __m128i h = _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7);
    bool ok = true;
    for (int k = 0; k < (1 << 16) / 8 && ok; ++k, h = _mm_add_epi16(h, step)) {
        const fast_f32x8 g = _mm256_cvtph_ps(h);
        const __m256i by_product = (__m256i)round_to<fast_half>(g * inverse);
        const __m256i by_quotient = (__m256i)round_to<fast_half>(g / divisor);
        ok = _mm256_movemask_epi8(_mm256_cmpeq_epi32(by_product, by_quotient)) == -1;
    }
    seen = bits;
    seen_ok = ok;
    return ok;
}

// The fp16 lanes request each stream's cache line F16_PREFETCH_AHEAD elements before they
// reach it. Their loop is long in arithmetic per byte, so the out-of-order window holds few
// of its loads and the hardware prefetchers alone leave memory time unused: AdamW 1.03x and
// 1.08x, SGD 1.09x, MomentumSGD 1.15x at 16M parameters (2 threads, median of 40 interleaved
// rounds against the loop without). Prefetches do not fault, so the last lines may ask for
// bytes past a span.
static const int64_t F16_LINE = 64 / sizeof(fast_half);  // elements per cache line
static const int64_t F16_PREFETCH_AHEAD = 512;
inline void prefetch_ahead(const fast_half* p) {
    _mm_prefetch((const char*)(p + F16_PREFETCH_AHEAD), _MM_HINT_T0);
}

// fp16 storage without a master (ModeF16), 8 elements at a time straight from the
// fp16 arrays: F16C conversions on load and store, the Rule's math (update_math.h) on
// 8 float lanes, round_to<fast_half> as F16C's round trip, the state in HalfLanes. The
// same IEEE operations in the same order as the per-element loop, so the same stored
// bits. Returns the first element left to the tile loop (fewer than 8 remain).
// by_inverse: f16_quotient_by_inverse(divisor) holds (update_group asks).
template <class Rule, bool UNSCALE>
int64_t update_f16_lanes(const FastStepArgs& a, int64_t t, int64_t begin, int64_t end, const float* hp_in,
                         bool by_inverse) {
    typedef fast_f32x8 V;
    V hp[FAST_N_HPARAMS];
    for (int k = 0; k < FAST_N_HPARAMS; ++k) hp[k] = _mm256_set1_ps(hp_in[k]);
    const V divisor = _mm256_set1_ps((float)a.unscale_divisor);
    const V inverse = _mm256_set1_ps(1.0f / (float)a.unscale_divisor);
    const V average = _mm256_set1_ps((float)a.average_factor);
    const int64_t base = a.tensor_offset[t];
    const fast_half* grad = (const fast_half*)a.grad[t];
    fast_half* param = (fast_half*)a.param + base;
    fast_half* st[FAST_MAX_STATE];
    for (int k = 0; k < Rule::n_state; ++k) st[k] = (fast_half*)a.state[k] + base;
    if (grad_overlaps_written<Rule>(grad, param, st, begin, end)) return begin;
    auto step = [&](int64_t i) __attribute__((always_inline)) {
        V g = load_f16_lanes(grad + i);
        if (a.average) g = round_to<fast_half>(g * average);
        if (UNSCALE) g = round_to<fast_half>(by_inverse ? g * inverse : g / divisor);
        HalfLanes s;
        for (int k = 0; k < Rule::n_state; ++k) s.load(k, st[k] + i);
        V p = load_f16_lanes(param + i);
        Rule::template update<V, fast_half, fast_half>(p, g, s, hp);
        for (int k = 0; k < Rule::n_state; ++k) s.store(k, st[k] + i);
        store_f16_lanes(param + i, p);
    };
    int64_t i = begin;
    for (; i + F16_LINE <= end; i += F16_LINE) {
        prefetch_ahead(grad + i);
        prefetch_ahead(param + i);
        for (int k = 0; k < Rule::n_state; ++k) prefetch_ahead(st[k] + i);
        for (int j = 0; j < F16_LINE; j += 8) step(i + j);
    }
    for (; i + 8 <= end; i += 8) step(i);
    return i;
}

// The update over n elements of plain T arrays (the tile loop GCC vectorises); with
// DIVIDE the gradient is divided by the loss scale as it is read.
template <class Rule, class M, bool DIVIDE>
inline void update_tile(int n, typename M::T* pp, const typename M::T* gp, typename M::T* const* sp,
                        const typename M::T* hp, typename M::T divisor) {
    typedef typename M::T T;
    typedef typename M::S S;
    T* __restrict s0 = sp[0];
    T* __restrict s1 = sp[1];
    T* __restrict s2 = sp[2];
    T* __restrict pr = pp;
    const T* __restrict gr = gp;
    for (int j = 0; j < n; ++j) {
        StateSlots<T, S> s;
        if (Rule::n_state > 0) s.v[0] = s0[j];
        if (Rule::n_state > 1) s.v[1] = s1[j];
        if (Rule::n_state > 2) s.v[2] = s2[j];
        T p = pr[j];
        const T g = DIVIDE ? gr[j] / divisor : gr[j];
        Rule::template update<T, S, typename M::PR>(p, g, s, hp);
        if (Rule::n_state > 0) s0[j] = s.v[0];
        if (Rule::n_state > 1) s1[j] = s.v[1];
        if (Rule::n_state > 2) s2[j] = s.v[2];
        pr[j] = p;
    }
}

// One chunk of one tensor, in tiles. Arrays stored in the compute type are
// updated in place; fp16 arrays are converted into local tiles of T first and
// back afterwards. The update loop then runs over plain T pointers, a loop GCC
// vectorises. With hooks or unscale-first, the gradient goes through
// gradient_tile.
template <class Rule, class M, bool HOOKS, bool UNSCALE>
void update_span(const FastStepArgs& a, int64_t t, int64_t begin, int64_t end, const typename M::T* hp_in,
                 bool f16_by_inverse) {
    typedef typename M::T T;
    typedef typename M::P P;
    typedef typename M::S S;
    constexpr bool P_DIRECT = M::MASTER || std::is_same<P, T>::value;
    constexpr bool S_DIRECT = std::is_same<S, T>::value;
    if constexpr (std::is_same<M, ModeF16>::value && !HOOKS) begin = update_f16_lanes<Rule, UNSCALE>(a, t, begin, end, hp_in, f16_by_inverse);
    T hp[FAST_N_HPARAMS];
    for (int k = 0; k < FAST_N_HPARAMS; ++k) hp[k] = hp_in[k];
    const int64_t base = a.tensor_offset[t];
    const P* grad = (const P*)a.grad[t];
    P* param = (P*)a.param + base;
    float* master = M::MASTER ? a.master + base : nullptr;
    S* st[FAST_MAX_STATE];
    for (int k = 0; k < Rule::n_state; ++k) st[k] = (S*)a.state[k] + base;
    // A gradient already in T with nothing to apply (no hook, no average) is read where it
    // is (no copy into a tile: 4% faster at 16M fp32 AdamW, 35% at 1M), unless it shares
    // memory with an array the loop writes (the loop's pointers are __restrict).
    // Unscaling it (P is T: no rounding beyond the division's) happens in the update loop.
    bool g_direct = std::is_same<P, T>::value && !HOOKS && !a.average;  // so no master either
    if (g_direct) g_direct = !grad_overlaps_written<Rule>(grad, param, st, begin, end);
    // With a master, the fp16 gradient's unscaled value is not rounded again: the update loop
    // divides the converted tile as it reads it, as it divides a gradient read in place.
    const bool divide_in_loop = UNSCALE && (g_direct || (M::MASTER && !HOOKS));
    const T divisor = (T)a.unscale_divisor;
    alignas(64) T gb[TILE], pb[TILE], sb[FAST_MAX_STATE][TILE];
    for (int64_t i0 = begin; i0 < end; i0 += TILE) {
        const int n = (int)((end - i0) < TILE ? (end - i0) : TILE);
        const T* gp;
        T* pp;
        T* sp[FAST_MAX_STATE] = {nullptr, nullptr, nullptr};
        if (g_direct) {
            gp = (const T*)(grad + i0);
        } else {
            if (HOOKS) {
                gradient_tile<M>(a, t, i0, n, gb, pb);  // pb (hook operand) is reloaded below if needed
            } else {
                tile_load(grad + i0, gb, n);
                if (a.average) average_tile<P>(gb, n, (T)a.average_factor);
                if (UNSCALE && !M::MASTER) unscale_tile<P>(gb, n, divisor);
            }
            gp = gb;
        }
        if constexpr (M::MASTER) pp = (T*)(master + i0);
        else if constexpr (P_DIRECT) pp = (T*)(param + i0);
        else { tile_load(param + i0, pb, n); pp = pb; }
        for (int k = 0; k < Rule::n_state; ++k) {
            if constexpr (S_DIRECT) sp[k] = (T*)(st[k] + i0);
            else { tile_load(st[k] + i0, sb[k], n); sp[k] = sb[k]; }
        }
        if (divide_in_loop) update_tile<Rule, M, true>(n, pp, gp, sp, hp, divisor);
        else update_tile<Rule, M, false>(n, pp, gp, sp, hp, divisor);
        if constexpr (!S_DIRECT)
            for (int k = 0; k < Rule::n_state; ++k) tile_store(sb[k], st[k] + i0, n);
        if constexpr (M::MASTER || !P_DIRECT) tile_store(pp, param + i0, n);
    }
}

template <class Rule, class M>
void update_chunk(const FastStepArgs& a, int64_t c, bool f16_by_inverse) {
    typedef typename M::T T;
    const int64_t t = a.chunk_tensor[c];
    if (!a.tensor_active[t]) return;
    T hp[FAST_N_HPARAMS];
    for (int k = 0; k < FAST_N_HPARAMS; ++k) hp[k] = (T)a.hparams[t * FAST_N_HPARAMS + k];
    const int64_t b = a.chunk_begin[c], e = a.chunk_end[c];
    if (a.n_hooks || (a.unscale && a.unscale_first)) update_span<Rule, M, true, true>(a, t, b, e, hp, false);
    else if (a.unscale) update_span<Rule, M, false, true>(a, t, b, e, hp, f16_by_inverse);
    else update_span<Rule, M, false, false>(a, t, b, e, hp, false);
}

template <class Rule, class M>
void update_group(const FastStepArgs& a) {
    bool f16_by_inverse = false;
    if constexpr (std::is_same<M, ModeF16>::value) {
        const float d = (float)a.unscale_divisor;
        if (a.unscale && !a.unscale_first && !a.n_hooks) {
            int64_t total = 0;
            for (int64_t c = 0; c < a.n_chunks && total < F16_INVERSE_MIN_ELEMENTS; ++c)
                total += a.chunk_end[c] - a.chunk_begin[c];
            f16_by_inverse = has_exact_inverse(d) || (total >= F16_INVERSE_MIN_ELEMENTS && f16_quotient_by_inverse(d));
        }
    }
#pragma omp parallel if (worth_parallel(a)) num_threads(pass_threads(a))
    {
        int64_t first, last;
        element_block(a, &first, &last);
        for (int64_t c = first; c < last; ++c) update_chunk<Rule, M>(a, c, f16_by_inverse);
    }
}

// The bits of a stored value, as a signed integer of the same width. With the
// sign bit cleared, a value is inf or NaN exactly when these bits reach the
// all-ones exponent (inf's bits), so the check is an integer max.
template <class P> struct StoredBits;
template <> struct StoredBits<float> {
    typedef int32_t I;
    static const I MAGNITUDE = 0x7fffffff, INF = 0x7f800000;
};
template <> struct StoredBits<double> {
    typedef int64_t I;
    static const I MAGNITUDE = 0x7fffffffffffffffLL, INF = 0x7ff0000000000000LL;
};
template <> struct StoredBits<fast_half> {
    typedef int16_t I;
    static const I MAGNITUDE = 0x7fff, INF = 0x7c00;
};

// Whether any of n stored values is inf or NaN: one branch-free loop (it vectorises to
// loads, ands and maxes).
template <class P> inline bool any_nonfinite(const P* g, int64_t n) {
    typedef typename StoredBits<P>::I I;
    const I* bits = (const I*)g;
    I largest = 0;
    for (int64_t i = 0; i < n; ++i) {
        const I b = (I)(bits[i] & StoredBits<P>::MAGNITUDE);
        largest = b > largest ? b : largest;
    }
    return largest >= StoredBits<P>::INF;
}

// The check reads each chunk as CHECK_STREAMS streams walked together (its quarters), a
// tile of each at a time: a pass that only reads gets more of the memory bandwidth from
// several streams per core than from one (measured on the 2-core EPYC: 20-25% more for
// 4 streams, the most of 1, 2, 4 and 8). A chunk stops at its first tile that holds a
// non-finite value, which decides its flag either way.
static const int CHECK_STREAMS = 4;
static const int CHECK_TILE = 1024;  // elements of each stream per early-exit test
// chunk_has_nonfinite spells its four streams out: a loop over an array of CHECK_STREAMS
// maxima makes an fp32 loss-scaled step at 16M 2% slower (median of 40 interleaved rounds).
static_assert(CHECK_STREAMS == 4, "chunk_has_nonfinite reads exactly four streams");

template <class P>
bool chunk_has_nonfinite(const P* g, int64_t begin, int64_t end) {
    typedef typename StoredBits<P>::I I;
    const I* bits = (const I*)g + begin;
    const int64_t n = end - begin;
    const int64_t q = n / CHECK_STREAMS;  // each stream's length; the rest is checked last
    for (int64_t i0 = 0; i0 < q; i0 += CHECK_TILE) {
        const int64_t i1 = (q - i0) < CHECK_TILE ? q : i0 + CHECK_TILE;
        I m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        for (int64_t i = i0; i < i1; ++i) {
            const I b0 = (I)(bits[i] & StoredBits<P>::MAGNITUDE);
            const I b1 = (I)(bits[q + i] & StoredBits<P>::MAGNITUDE);
            const I b2 = (I)(bits[2 * q + i] & StoredBits<P>::MAGNITUDE);
            const I b3 = (I)(bits[3 * q + i] & StoredBits<P>::MAGNITUDE);
            m0 = b0 > m0 ? b0 : m0;
            m1 = b1 > m1 ? b1 : m1;
            m2 = b2 > m2 ? b2 : m2;
            m3 = b3 > m3 ? b3 : m3;
        }
        m0 = m1 > m0 ? m1 : m0;
        m2 = m3 > m2 ? m3 : m2;
        if ((m2 > m0 ? m2 : m0) >= StoredBits<P>::INF) return true;
    }
    return any_nonfinite((const P*)(bits + CHECK_STREAMS * q), n - CHECK_STREAMS * q);
}

// Sums of squares of the hooked gradient (the first n_hooks ops) and of the
// hook operand, per chunk in double, then per tensor in chunk order. With
// tensor_nonfinite set, the same pass also flags the tensors whose raw gradient
// (before unscaling and hooks) holds inf or NaN, as check_group does: each tile is
// checked as it is read, and gradient_tile then finds it in the L1 cache, so
// dynamic loss scaling costs no read of its own where a hook needs this pass.
template <class M>
void reduce_group(const FastStepArgs& a) {
    typedef typename M::T T;
    typedef typename M::P P;
    std::vector<double> gsq(a.n_chunks, 0.0), psq(a.n_chunks, 0.0);
    const bool check = a.tensor_nonfinite != nullptr;
    std::vector<uint8_t> bad(check ? a.n_chunks : 0, 0);
#pragma omp parallel if (worth_parallel(a)) num_threads(pass_threads(a))
    {
        int64_t first, last;
        element_block(a, &first, &last);
        for (int64_t c = first; c < last; ++c) {
            const int64_t t = a.chunk_tensor[c];
            if (!a.tensor_active[t]) {
                if (check) bad[c] = chunk_has_nonfinite((const P*)a.grad[t], a.chunk_begin[c], a.chunk_end[c]);
                continue;
            }
            double gs = 0.0, ps = 0.0;
            bool nonfinite = false;
            alignas(64) T gb[TILE], pb[TILE];
            for (int64_t i0 = a.chunk_begin[c]; i0 < a.chunk_end[c]; i0 += TILE) {
                const int n = (int)((a.chunk_end[c] - i0) < TILE ? (a.chunk_end[c] - i0) : TILE);
                if (check && !nonfinite) nonfinite = any_nonfinite((const P*)a.grad[t] + i0, n);
                gradient_tile<M>(a, t, i0, n, gb, pb);
                // eight interleaved partial sums (element j goes to lane j % 8), combined
                // in lane order: a fixed order, whatever the vector width or thread count
                double gl[8] = {0, 0, 0, 0, 0, 0, 0, 0}, pl[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int j = 0;
                for (; j + 8 <= n; j += 8)
                    for (int l = 0; l < 8; ++l) {
                        gl[l] += (double)gb[j + l] * (double)gb[j + l];
                        pl[l] += (double)pb[j + l] * (double)pb[j + l];
                    }
                for (; j < n; ++j) {
                    gl[j % 8] += (double)gb[j] * (double)gb[j];
                    pl[j % 8] += (double)pb[j] * (double)pb[j];
                }
                for (int l = 0; l < 8; ++l) {
                    gs += gl[l];
                    ps += pl[l];
                }
            }
            gsq[c] = gs;
            psq[c] = ps;
            if (check) bad[c] = nonfinite;
        }
    }
    for (int64_t t = 0; t < a.n_tensors; ++t) a.tensor_gsq[t] = a.tensor_psq[t] = 0.0;
    for (int64_t c = 0; c < a.n_chunks; ++c) {
        a.tensor_gsq[a.chunk_tensor[c]] += gsq[c];
        a.tensor_psq[a.chunk_tensor[c]] += psq[c];
    }
    if (check) {
        for (int64_t t = 0; t < a.n_tensors; ++t) a.tensor_nonfinite[t] = 0;
        for (int64_t c = 0; c < a.n_chunks; ++c) a.tensor_nonfinite[a.chunk_tensor[c]] |= bad[c];
    }
}

// Each thread checks the chunks it will update (element_block), last to first, so
// that the update, which walks them first to last, finds the gradients it starts with
// still in the caches.
template <class M>
void check_group(const FastStepArgs& a) {
    typedef typename M::P P;
    std::vector<uint8_t> bad(a.n_chunks, 0);
#pragma omp parallel if (worth_parallel(a)) num_threads(pass_threads(a))
    {
        int64_t first, last;
        element_block(a, &first, &last);
        for (int64_t c = last - 1; c >= first; --c)
            bad[c] = chunk_has_nonfinite((const P*)a.grad[a.chunk_tensor[c]], a.chunk_begin[c], a.chunk_end[c]);
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
#pragma omp parallel if (worth_parallel(a)) num_threads(pass_threads(a))
    {
        int64_t first, last;
        element_block(a, &first, &last);
        for (int64_t c = first; c < last; ++c) {
            const int64_t t = a.chunk_tensor[c];
            if (!a.tensor_active[t]) continue;
            alignas(64) T gb[TILE], pb[TILE];
            for (int64_t i0 = a.chunk_begin[c]; i0 < a.chunk_end[c]; i0 += TILE) {
                const int n = (int)((a.chunk_end[c] - i0) < TILE ? (a.chunk_end[c] - i0) : TILE);
                gradient_tile<M>(a, t, i0, n, gb, pb);  // reads the whole tile first: in place is safe
                if (a.out_param_dtype) tile_store(gb, (P*)a.grad_out[t] + i0, n);
                else tile_store(gb, (T*)a.grad_out[t] + i0, n);
            }
        }
    }
}


// The kernel ids and mode numbers are abi.h's (FAST_FOR_EACH_RULE, FAST_FOR_EACH_MODE).
template <class M> struct UpdateFn {
    static int run(int rule, const FastStepArgs& a) {
        switch (rule) {
#define FAST_RULE_CASE(ID, RULE) case ID: update_group<RULE, M>(a); return 0;
        FAST_FOR_EACH_RULE(FAST_RULE_CASE)
#undef FAST_RULE_CASE
        default: return -1;
        }
    }
};
template <class M> struct ReduceFn { static int run(const FastStepArgs& a) { reduce_group<M>(a); return 0; } };
template <class M> struct MaterializeFn { static int run(const FastStepArgs& a) { materialize_group<M>(a); return 0; } };
template <class M> struct CheckFn { static int run(const FastStepArgs& a) { check_group<M>(a); return 0; } };

template <template <class> class Fn, class... Args>
int dispatch_mode(int mode, const Args&... args) {
    switch (mode) {
#define FAST_MODE_CASE(NUMBER, MODE) case NUMBER: return Fn<MODE>::run(args...);
    FAST_FOR_EACH_MODE(FAST_MODE_CASE)
#undef FAST_MODE_CASE
    default: return -2;
    }
}

}  // namespace

extern "C" {

int fast_update(int rule, int mode, const FastStepArgs* a) { return dispatch_mode<UpdateFn>(mode, rule, *a); }

int fast_reduce(int mode, const FastStepArgs* a) { return dispatch_mode<ReduceFn>(mode, *a); }

int fast_check_finite(int mode, const FastStepArgs* a) { return dispatch_mode<CheckFn>(mode, *a); }

int fast_materialize(int mode, const FastStepArgs* a) { return dispatch_mode<MaterializeFn>(mode, *a); }
}
