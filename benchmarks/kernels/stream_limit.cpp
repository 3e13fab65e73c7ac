// The memory-bandwidth limit of an optimizer step, measured with the step's own
// stream mix by the toolchain and flags that build fast's CPU kernels
// (fast.backends.cpu.FLAGS: g++ -O3 -fopenmp -march=native -ffp-contract=off ...),
// on every thread OpenMP is given, over chunks of 32768 elements split statically
// between the threads, as fast's kernels split a group's chunk table.
//
// One pass reads a gradient stream of G, reads and writes N_RW streams of S (the
// parameter or fp32 master, and each state array) and, with an fp32 master, writes
// the fp16 parameter (W): the bytes per element of benchmarks/bytes_per_param.py.
// The arithmetic is integer additions, so the pass is bound by memory only.
//
// stream_triad is STREAM's triad (a = b + s c, float32), the cross-check.
//
// f16_convert_pass is the F16C floor of an fp16 step without a master: the conversions
// such a step cannot do without, and additions in place of its arithmetic.
#include <stdint.h>
#include <type_traits>
#include <immintrin.h>

namespace {

const int64_t CHUNK = 1 << 15;

inline int64_t chunk_count(int64_t n) { return (n + CHUNK - 1) / CHUNK; }
inline int64_t chunk_end(int64_t c, int64_t n) { return (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n; }

// W = void: no write-only stream.
// One chunk, every stream a restrict-qualified parameter: with five or six pointers that may
// alias, GCC gives up the runtime alias checks it needs to vectorise and the pass runs
// scalar (restrict on local variables is not enough for it).
template <class G, class S, int N_RW, class W, class Out>
__attribute__((noinline)) void chunk_pass(const G* __restrict g, S* __restrict a0, S* __restrict a1,
                                          S* __restrict a2, S* __restrict a3, Out* __restrict w,
                                          int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
        const S x = (S)g[i];
        a0[i] += x;
        if (N_RW > 1) a1[i] += x;
        if (N_RW > 2) a2[i] += x;
        if (N_RW > 3) a3[i] += x;
        if constexpr (!std::is_void<W>::value) w[i] = (Out)a0[i];
    }
}

template <class G, class S, int N_RW, class W>
void mix_pass(const void* grad, void* const* rw, void* wo, int64_t n) {
    using Out = typename std::conditional<std::is_void<W>::value, S, W>::type;
    S* r1 = N_RW > 1 ? (S*)rw[1] : nullptr;
    S* r2 = N_RW > 2 ? (S*)rw[2] : nullptr;
    S* r3 = N_RW > 3 ? (S*)rw[3] : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunk_count(n); ++c)
        chunk_pass<G, S, N_RW, W, Out>((const G*)grad, (S*)rw[0], r1, r2, r3, (Out*)wo, c * CHUNK,
                                       chunk_end(c, n));
}

template <class G, class S, class W>
int mix_pass_for(int n_rw, const void* grad, void* const* rw, void* wo, int64_t n) {
    switch (n_rw) {
    case 1: mix_pass<G, S, 1, W>(grad, rw, wo, n); return 0;
    case 2: mix_pass<G, S, 2, W>(grad, rw, wo, n); return 0;
    case 3: mix_pass<G, S, 3, W>(grad, rw, wo, n); return 0;
    case 4: mix_pass<G, S, 4, W>(grad, rw, wo, n); return 0;
    default: return -1;
    }
}

// One read of n words, each chunk's thread reading its chunk as S equal streams read in the
// same loop (as fast's non-finite check reads, with 4), the words reduced to their max so
// that no load is dead.
template <class W, int S>
W read_pass(const W* a, int64_t n) {
    W best = 0;
#pragma omp parallel for schedule(static) reduction(max : best)
    for (int64_t c = 0; c < chunk_count(n); ++c) {
        const int64_t begin = c * CHUNK, end = chunk_end(c, n);
        const int64_t q = (end - begin) / S;
        const W* __restrict x = a + begin;
        W m[S] = {};
        for (int64_t i = 0; i < q; ++i)
            for (int s = 0; s < S; ++s) m[s] = x[s * q + i] > m[s] ? x[s * q + i] : m[s];
        for (int64_t i = begin + S * q; i < end; ++i) m[0] = a[i] > m[0] ? a[i] : m[0];
        for (int s = 0; s < S; ++s) best = m[s] > best ? m[s] : best;
    }
    return best;
}

template <class W>
W read_pass_for(int streams, const W* a, int64_t n) {
    switch (streams) {
    case 1: return read_pass<W, 1>(a, n);
    case 2: return read_pass<W, 2>(a, n);
    case 4: return read_pass<W, 4>(a, n);
    case 8: return read_pass<W, 8>(a, n);
    default: return 0;
    }
}

// One chunk of the F16C floor (fp16 storage, float arithmetic, as fast's fp16 update
// without a master computes): per element the gradient and the parameter are converted to
// float; each state value is converted, added to, rounded back to fp16 (the bits that are
// stored) and read back from those bits, as an update reads the rounded state it goes on
// with; the parameter is converted back on its store. Eight elements at a time (F16C's
// width on 256-bit registers), the rest one at a time with the same instructions.
template <int N_STATE>
__attribute__((noinline)) void f16_convert_chunk(const uint16_t* __restrict g, uint16_t* __restrict p,
                                                 uint16_t* __restrict s0, uint16_t* __restrict s1,
                                                 uint16_t* __restrict s2, int64_t begin, int64_t end) {
    uint16_t* const state[3] = {s0, s1, s2};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
        const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(g + i)));
        __m256 y = _mm256_add_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + i))), x);
        for (int k = 0; k < N_STATE; ++k) {
            const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(state[k] + i)));
            const __m128i kept = _mm256_cvtps_ph(_mm256_add_ps(v, x), _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128((__m128i*)(state[k] + i), kept);
            y = _mm256_add_ps(y, _mm256_cvtph_ps(kept));
        }
        _mm_storeu_si128((__m128i*)(p + i), _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < end; ++i) {
        const float x = _cvtsh_ss(g[i]);
        float y = _cvtsh_ss(p[i]) + x;
        for (int k = 0; k < N_STATE; ++k) {
            const uint16_t kept = _cvtss_sh(_cvtsh_ss(state[k][i]) + x, _MM_FROUND_TO_NEAREST_INT);
            state[k][i] = kept;
            y += _cvtsh_ss(kept);
        }
        p[i] = _cvtss_sh(y, _MM_FROUND_TO_NEAREST_INT);
    }
}

template <int N_STATE>
void f16_convert_pass(const uint16_t* g, uint16_t* const* rw, int64_t n) {
    uint16_t* s0 = N_STATE > 0 ? rw[1] : nullptr;
    uint16_t* s1 = N_STATE > 1 ? rw[2] : nullptr;
    uint16_t* s2 = N_STATE > 2 ? rw[3] : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunk_count(n); ++c)
        f16_convert_chunk<N_STATE>(g, rw[0], s0, s1, s2, c * CHUNK, chunk_end(c, n));
}

}  // namespace

extern "C" {

// The bytes per element of the gradient, of each read-and-written array and of the
// written-only array (0: none), one of the four dtype modes' mixes: float64 (8, 8, 0), float32
// (4, 4, 0), fp16 + fp32 master (2, 4, 2: wo is the fp16 parameter), float16 (2, 2, 0).
// n_rw: 1 + the optimizer's state arrays.
int stream_mix_pass(int grad_bytes, int rw_bytes, int wo_bytes, int n_rw, const void* grad, void* const* rw,
                    void* wo, int64_t n) {
    if (grad_bytes == 8 && rw_bytes == 8 && wo_bytes == 0)
        return mix_pass_for<uint64_t, uint64_t, void>(n_rw, grad, rw, wo, n);
    if (grad_bytes == 4 && rw_bytes == 4 && wo_bytes == 0)
        return mix_pass_for<uint32_t, uint32_t, void>(n_rw, grad, rw, wo, n);
    if (grad_bytes == 2 && rw_bytes == 4 && wo_bytes == 2)
        return mix_pass_for<uint16_t, uint32_t, uint16_t>(n_rw, grad, rw, wo, n);
    if (grad_bytes == 2 && rw_bytes == 2 && wo_bytes == 0)
        return mix_pass_for<uint16_t, uint16_t, void>(n_rw, grad, rw, wo, n);
    return -2;
}

// width: 2, 4 or 8 bytes per word; streams: 1, 2, 4 or 8. Returns the largest word (0 for a
// bad number of streams, -1 for a bad width).
int64_t stream_read_pass(int width, int streams, const void* a, int64_t n) {
    switch (width) {
    case 2: return read_pass_for(streams, (const uint16_t*)a, n);
    case 4: return read_pass_for(streams, (const uint32_t*)a, n);
    case 8: return (int64_t)(read_pass_for(streams, (const uint64_t*)a, n) >> 1);
    default: return -1;
    }
}

// The F16C floor of an fp16 step without a master (f16_convert_chunk), over the arrays of
// stream_mix_pass's fp16 mix: rw[0] the parameter, rw[1..n_rw-1] the state. Returns -1 for
// a bad n_rw.
int stream_f16_convert_pass(int n_rw, const void* grad, void* const* rw, int64_t n) {
    const uint16_t* g = (const uint16_t*)grad;
    uint16_t* const* a = (uint16_t* const*)rw;
    switch (n_rw) {
    case 1: f16_convert_pass<0>(g, a, n); return 0;
    case 2: f16_convert_pass<1>(g, a, n); return 0;
    case 3: f16_convert_pass<2>(g, a, n); return 0;
    case 4: f16_convert_pass<3>(g, a, n); return 0;
    default: return -1;
    }
}

void stream_triad(float* a, const float* b, const float* c, float s, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < chunk_count(n); ++k) {
        const int64_t end = chunk_end(k, n);
        float* __restrict x = a;
        for (int64_t i = k * CHUNK; i < end; ++i) x[i] = b[i] + s * c[i];
    }
}

}
