/*
 * Matrix-vector kernels: portable C99, plus AVX2 (x86-64) and NEON / NEON dot-product (aarch64) versions compiled
 * with per-function target attributes and chosen at run time from what the CPU reports, so one binary runs on
 * every CPU of its architecture.
 */
#if defined(__linux__) && defined(__aarch64__)
#define _GNU_SOURCE /* getauxval */
#endif

#include "lstm_edge_kernels.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------ portable */
static void matvec_f32_portable(const float *w, size_t rows, size_t cols, const float *x, float *y) {
    size_t r, c;
    for (r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (c = 0; c < cols; c += 4) {
            a0 += row[c] * x[c];
            a1 += row[c + 1] * x[c + 1];
            a2 += row[c + 2] * x[c + 2];
            a3 += row[c + 3] * x[c + 3];
        }
        y[r] += (a0 + a1) + (a2 + a3);
    }
}

static void matvec_i8_portable(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                               float x_scale, float *y) {
    size_t r, c;
    for (r = 0; r < rows; r++) {
        const int8_t *row = w + r * cols;
        int32_t acc = 0;
        for (c = 0; c < cols; c++) acc += (int32_t)row[c] * (int32_t)x[c];
        y[r] += x_scale * row_scale[r] * (float)acc;
    }
}

static const lem_kernels PORTABLE = {"portable", matvec_f32_portable, matvec_i8_portable};

const lem_kernels *lem_kernels_portable(void) { return &PORTABLE; }

/* ------------------------------------------------------------------------------------------------ x86-64 AVX2 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define LEM_AVX2 __attribute__((target("avx2,fma")))

LEM_AVX2 static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

LEM_AVX2 static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

LEM_AVX2 static void matvec_f32_avx2(const float *w, size_t rows, size_t cols, const float *x, float *y) {
    size_t r = 0, c;
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
               a3 = _mm256_setzero_ps();
        for (c = 0; c < cols; c += 8) {
            __m256 xv = _mm256_loadu_ps(x + c);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), xv, a3);
        }
        y[r] += hsum_ps(a0);
        y[r + 1] += hsum_ps(a1);
        y[r + 2] += hsum_ps(a2);
        y[r + 3] += hsum_ps(a3);
    }
    for (; r < rows; r++) {
        const float *w0 = w + r * cols;
        __m256 a0 = _mm256_setzero_ps();
        for (c = 0; c < cols; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), _mm256_loadu_ps(x + c), a0);
        y[r] += hsum_ps(a0);
    }
}

/* |x| (u8) times w with x's sign (s8): pairs sum to at most 2 * 127 * 127, so maddubs cannot saturate. */
LEM_AVX2 static __m256i dot32_avx2(__m256i ax, __m256i xv, const int8_t *wp, __m256i acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i wv = _mm256_loadu_si256((const __m256i *)wp);
    __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
}

LEM_AVX2 static void matvec_i8_avx2(const int8_t *w, const float *row_scale, size_t rows, size_t cols,
                                    const int8_t *x, float x_scale, float *y) {
    size_t r = 0, c;
    for (; r + 4 <= rows; r += 4) {
        const int8_t *w0 = w + r * cols;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256(), a2 = _mm256_setzero_si256(),
                a3 = _mm256_setzero_si256();
        for (c = 0; c < cols; c += 32) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + c));
            __m256i ax = _mm256_abs_epi8(xv);
            a0 = dot32_avx2(ax, xv, w0 + c, a0);
            a1 = dot32_avx2(ax, xv, w0 + cols + c, a1);
            a2 = dot32_avx2(ax, xv, w0 + 2 * cols + c, a2);
            a3 = dot32_avx2(ax, xv, w0 + 3 * cols + c, a3);
        }
        y[r] += x_scale * row_scale[r] * (float)hsum_epi32(a0);
        y[r + 1] += x_scale * row_scale[r + 1] * (float)hsum_epi32(a1);
        y[r + 2] += x_scale * row_scale[r + 2] * (float)hsum_epi32(a2);
        y[r + 3] += x_scale * row_scale[r + 3] * (float)hsum_epi32(a3);
    }
    for (; r < rows; r++) {
        __m256i a0 = _mm256_setzero_si256();
        for (c = 0; c < cols; c += 32) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + c));
            a0 = dot32_avx2(_mm256_abs_epi8(xv), xv, w + r * cols + c, a0);
        }
        y[r] += x_scale * row_scale[r] * (float)hsum_epi32(a0);
    }
}

static const lem_kernels AVX2 = {"avx2", matvec_f32_avx2, matvec_i8_avx2};

static const lem_kernels *detect(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &AVX2;
    return &PORTABLE;
}

/* ------------------------------------------------------------------------------------------------ aarch64 NEON */
#elif defined(__aarch64__) && defined(__GNUC__)
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

static void matvec_f32_neon(const float *w, size_t rows, size_t cols, const float *x, float *y) {
    size_t r = 0, c;
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c < cols; c += 4) {
            float32x4_t xv = vld1q_f32(x + c);
            a0 = vfmaq_f32(a0, vld1q_f32(w0 + c), xv);
            a1 = vfmaq_f32(a1, vld1q_f32(w1 + c), xv);
            a2 = vfmaq_f32(a2, vld1q_f32(w2 + c), xv);
            a3 = vfmaq_f32(a3, vld1q_f32(w3 + c), xv);
        }
        y[r] += vaddvq_f32(a0);
        y[r + 1] += vaddvq_f32(a1);
        y[r + 2] += vaddvq_f32(a2);
        y[r + 3] += vaddvq_f32(a3);
    }
    for (; r < rows; r++) {
        float32x4_t a0 = vdupq_n_f32(0.0f);
        for (c = 0; c < cols; c += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + r * cols + c), vld1q_f32(x + c));
        y[r] += vaddvq_f32(a0);
    }
}

static int32x4_t dot16_neon(int32x4_t acc, int8x16_t wv, int8x16_t xv) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(wv), vget_low_s8(xv)));
    return vpadalq_s16(acc, vmull_high_s8(wv, xv));
}

static void matvec_i8_neon(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                           float x_scale, float *y) {
    size_t r, c;
    for (r = 0; r < rows; r++) {
        const int8_t *row = w + r * cols;
        int32x4_t acc = vdupq_n_s32(0);
        for (c = 0; c < cols; c += 16) acc = dot16_neon(acc, vld1q_s8(row + c), vld1q_s8(x + c));
        y[r] += x_scale * row_scale[r] * (float)vaddvq_s32(acc);
    }
}

__attribute__((target("arch=armv8.2-a+dotprod")))
static void matvec_i8_dotprod(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                              float x_scale, float *y) {
    size_t r = 0, c;
    for (; r + 4 <= rows; r += 4) {
        const int8_t *w0 = w + r * cols;
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c < cols; c += 16) {
            int8x16_t xv = vld1q_s8(x + c);
            a0 = vdotq_s32(a0, vld1q_s8(w0 + c), xv);
            a1 = vdotq_s32(a1, vld1q_s8(w0 + cols + c), xv);
            a2 = vdotq_s32(a2, vld1q_s8(w0 + 2 * cols + c), xv);
            a3 = vdotq_s32(a3, vld1q_s8(w0 + 3 * cols + c), xv);
        }
        y[r] += x_scale * row_scale[r] * (float)vaddvq_s32(a0);
        y[r + 1] += x_scale * row_scale[r + 1] * (float)vaddvq_s32(a1);
        y[r + 2] += x_scale * row_scale[r + 2] * (float)vaddvq_s32(a2);
        y[r + 3] += x_scale * row_scale[r + 3] * (float)vaddvq_s32(a3);
    }
    for (; r < rows; r++) {
        int32x4_t a0 = vdupq_n_s32(0);
        for (c = 0; c < cols; c += 16) a0 = vdotq_s32(a0, vld1q_s8(w + r * cols + c), vld1q_s8(x + c));
        y[r] += x_scale * row_scale[r] * (float)vaddvq_s32(a0);
    }
}

static const lem_kernels NEON = {"neon", matvec_f32_neon, matvec_i8_neon};
static const lem_kernels NEON_DOTPROD = {"neon-dotprod", matvec_f32_neon, matvec_i8_dotprod};

static const lem_kernels *detect(void) {
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) return &NEON_DOTPROD;
#endif
    return &NEON;
}

#else
static const lem_kernels *detect(void) { return &PORTABLE; }
#endif

const lem_kernels *lem_kernels_select(void) {
    const char *forced = getenv("LEM_KERNEL");
    if (forced != NULL && strcmp(forced, "portable") == 0) return &PORTABLE;
    return detect();
}
