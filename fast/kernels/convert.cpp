// Casts between float16 and float32 host buffers, for fast.distributed's exchange buffers.
//
// Both directions are IEEE conversions, rounding to nearest even (float16 subnormals kept,
// overflow to inf), done with the CPU's F16C instructions eight lanes at a time on all
// OpenMP threads; NumPy's float16 casts do the same conversion one element at a time. A
// build without F16C exports the functions but returns -1, and the caller casts with NumPy.
#include <stdint.h>
#include <immintrin.h>

extern "C" {

int fast_cast_f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
#ifdef __F16C__
    const int64_t vec = n - n % 8;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < vec; i += 8) {
        __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (int64_t i = vec; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
    return 0;
#else
    (void)src; (void)dst; (void)n;
    return -1;
#endif
}

int fast_cast_f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
#ifdef __F16C__
    const int64_t vec = n - n % 8;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < vec; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
    for (int64_t i = vec; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
    return 0;
#else
    (void)src; (void)dst; (void)n;
    return -1;
#endif
}

}  // extern "C"
