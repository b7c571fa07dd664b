/*
 * Matrix-vector kernels: portable C99, plus AVX2 and AVX-512 VNNI (x86-64) and NEON / NEON dot-product (aarch64)
 * versions compiled with per-function target attributes and chosen at run time from what the CPU reports, so one
 * binary runs on every CPU of its architecture. A WebAssembly module built with -msimd128 uses SIMD128 kernels
 * (bitwise the portable results); one built without it, the portable ones.
 */
#if defined(__linux__) && defined(__aarch64__)
#define _GNU_SOURCE /* getauxval */
#endif

#include "lstm_edge_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t lem_packed_rows(size_t rows, size_t block) { return block ? (rows + block - 1) / block * block : rows; }

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

/* Round to the nearest integer (ties to even) for |v| < 2^22, without libm (rintf is a call on baseline x86-64). */
static float round_near(float v) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 (needs IEEE rounding: do not build with -ffast-math) */
    return (v + magic) - magic;
}

static void quantize_values(const float *v, size_t n, float inv, int8_t *q) {
    size_t i;
    for (i = 0; i < n; i++) q[i] = (int8_t)(int)round_near(v[i] * inv);
}

static float quantize_portable(const float *v, size_t n, int8_t *q) {
    size_t i;
    float peak = 0.0f;
    for (i = 0; i < n; i++) {
        float a = fabsf(v[i]);
        if (a > peak) peak = a; /* NaN is skipped */
    }
    if (peak == 0.0f) {
        memset(q, 0, n);
        return 0.0f;
    }
    quantize_values(v, n, 127.0f / peak, q);
    return peak / 127.0f;
}

/* ------------------------------------------------------------------------------------------------ several vectors */
typedef void (*matvec_f32_fn)(const float *w, size_t rows, size_t cols, const float *x, float *y);
typedef void (*matvec_i8_fn)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                             float x_scale, float *y);

/* Several vectors through a one-vector kernel, a group of rows at a time, so that the group's weights (about
 * L1_SHARE bytes) come from the L1 cache for all vectors after the first. `unit` is a multiple of the layout's
 * block and of the kernel's row unrolling: a row then sees the same operations as in one call over all rows. */
#define L1_SHARE 16384u

static size_t row_group(size_t unit, size_t row_bytes) {
    size_t group = L1_SHARE / row_bytes / unit * unit;
    return group ? group : unit;
}

static void by_rows_f32(matvec_f32_fn f, size_t unit, const float *w, size_t rows, size_t cols, const float *x,
                        size_t n_vec, size_t x_stride, float *y, size_t y_stride) {
    size_t group = row_group(unit, cols * sizeof(float)), r, v;
    for (r = 0; r < rows; r += group) {
        size_t n = rows - r < group ? rows - r : group;
        for (v = 0; v < n_vec; v++) f(w + r * cols, n, cols, x + v * x_stride, y + v * y_stride + r);
    }
}

static void by_rows_i8(matvec_i8_fn f, size_t unit, const int8_t *w, const float *row_scale, size_t rows,
                       size_t cols, const int8_t *x, const float *x_scale, size_t n_vec, size_t x_stride, float *y,
                       size_t y_stride) {
    size_t group = row_group(unit, cols), r, v;
    for (r = 0; r < rows; r += group) {
        size_t n = rows - r < group ? rows - r : group;
        for (v = 0; v < n_vec; v++)
            if (x_scale[v] != 0.0f)
                f(w + r * cols, row_scale + r, n, cols, x + v * x_stride, x_scale[v], y + v * y_stride + r);
    }
}

/* name: a matmat over `matvec`, unit rows at a time */
#define LEM_MATMAT_F32(name, matvec, unit)                                                                         \
    static void name(const float *w, size_t rows, size_t cols, const float *x, size_t n_vec, size_t x_stride,       \
                     float *y, size_t y_stride) {                                                                   \
        by_rows_f32(matvec, unit, w, rows, cols, x, n_vec, x_stride, y, y_stride);                                  \
    }
#define LEM_MATMAT_I8(name, matvec, unit)                                                                          \
    static void name(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,            \
                     const float *x_scale, size_t n_vec, size_t x_stride, float *y, size_t y_stride) {              \
        by_rows_i8(matvec, unit, w, row_scale, rows, cols, x, x_scale, n_vec, x_stride, y, y_stride);               \
    }

LEM_MATMAT_F32(matmat_f32_portable, matvec_f32_portable, 1)
LEM_MATMAT_I8(matmat_i8_portable, matvec_i8_portable, 1)

static const lem_kernels PORTABLE = {"portable", quantize_portable, matvec_f32_portable, matvec_i8_portable, 0, 0,
                                     NULL, NULL, NULL, NULL, matmat_f32_portable, matmat_i8_portable, NULL, NULL, NULL};

const lem_kernels *lem_kernels_portable(void) { return &PORTABLE; }

/* ------------------------------------------------------------------------------------------------ x86-64 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define LEM_AVX2 __attribute__((target("avx2,fma")))
#define LEM_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

/* Packed layouts (see lem_kernels): float, per block of B rows and per column, the B rows' values; int8, per block
 * of B rows and per group of 4 columns, each row's 4 bytes in turn, xor-ed with `flip` (0x80 stores w + 128). */
static void pack_f32_blocks(const float *w, size_t rows, size_t cols, size_t block, float *out) {
    size_t b, c, r;
    for (b = 0; b < rows; b += block)
        for (c = 0; c < cols; c++)
            for (r = 0; r < block; r++) *out++ = b + r < rows ? w[(b + r) * cols + c] : 0.0f;
}

static void pack_i8_blocks(const int8_t *w, size_t rows, size_t cols, size_t block, uint8_t flip, int8_t *out) {
    size_t b, g, r, k;
    for (b = 0; b < rows; b += block)
        for (g = 0; g < cols; g += 4)
            for (r = 0; r < block; r++)
                for (k = 0; k < 4; k++)
                    *out++ = (int8_t)((uint8_t)(b + r < rows ? w[(b + r) * cols + g + k] : 0) ^ flip);
}

static int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* --------------------------------------------------------------------- AVX2: row-major */
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
LEM_AVX2 static __m256i dot32_avx2(__m256i ax, __m256i xv, __m256i wv, __m256i acc) {
    __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
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
            a0 = dot32_avx2(ax, xv, _mm256_loadu_si256((const __m256i *)(w0 + c)), a0);
            a1 = dot32_avx2(ax, xv, _mm256_loadu_si256((const __m256i *)(w0 + cols + c)), a1);
            a2 = dot32_avx2(ax, xv, _mm256_loadu_si256((const __m256i *)(w0 + 2 * cols + c)), a2);
            a3 = dot32_avx2(ax, xv, _mm256_loadu_si256((const __m256i *)(w0 + 3 * cols + c)), a3);
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
            a0 = dot32_avx2(_mm256_abs_epi8(xv), xv, _mm256_loadu_si256((const __m256i *)(w + r * cols + c)), a0);
        }
        y[r] += x_scale * row_scale[r] * (float)hsum_epi32(a0);
    }
}

/* --------------------------------------------------------------------- AVX2: packed, blocks of 8 rows */
static void pack_f32_8(const float *w, size_t rows, size_t cols, float *out) { pack_f32_blocks(w, rows, cols, 8, out); }

static void pack_i8_8(const int8_t *w, size_t rows, size_t cols, int8_t *out) {
    pack_i8_blocks(w, rows, cols, 8, 0, out);
}

/* y[:n] += v for the n <= 8 rows of one block */
LEM_AVX2 static void add_rows8(float *y, size_t n, __m256 v) {
    float t[8];
    size_t i;
    if (n == 8) {
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), v));
        return;
    }
    _mm256_storeu_ps(t, v);
    for (i = 0; i < n; i++) y[i] += t[i];
}

/* y[:n] += x_scale * row_scale[:n] * acc, the same float operations as the portable kernel */
LEM_AVX2 static void scale_rows8(float *y, const float *row_scale, size_t n, __m256i acc, float x_scale) {
    int32_t t[8];
    size_t i;
    if (n == 8) {
        __m256 s = _mm256_mul_ps(_mm256_set1_ps(x_scale), _mm256_loadu_ps(row_scale));
        __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(acc));
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), v));
        return;
    }
    _mm256_storeu_si256((__m256i *)t, acc);
    for (i = 0; i < n; i++) y[i] += x_scale * row_scale[i] * (float)t[i];
}

#define LEM_LEFT(rows, r, block) ((rows) - (r) < (block) ? (rows) - (r) : (block))

LEM_AVX2 static void matvec_f32_avx2_packed(const float *w, size_t rows, size_t cols, const float *x, float *y) {
    const size_t bs = 8 * cols; /* floats per block */
    size_t r = 0, c;
    for (; r + 32 <= rows; r += 32) { /* four blocks, two accumulators each (even and odd columns) */
        const float *p = w + (r / 8) * bs;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
        for (c = 0; c < cols; c += 2) {
            __m256 x0 = _mm256_broadcast_ss(x + c), x1 = _mm256_broadcast_ss(x + c + 1);
            const float *q = p + 8 * c;
            a0 = _mm256_fmadd_ps(_mm256_load_ps(q), x0, a0);
            e0 = _mm256_fmadd_ps(_mm256_load_ps(q + 8), x1, e0);
            a1 = _mm256_fmadd_ps(_mm256_load_ps(q + bs), x0, a1);
            e1 = _mm256_fmadd_ps(_mm256_load_ps(q + bs + 8), x1, e1);
            a2 = _mm256_fmadd_ps(_mm256_load_ps(q + 2 * bs), x0, a2);
            e2 = _mm256_fmadd_ps(_mm256_load_ps(q + 2 * bs + 8), x1, e2);
            a3 = _mm256_fmadd_ps(_mm256_load_ps(q + 3 * bs), x0, a3);
            e3 = _mm256_fmadd_ps(_mm256_load_ps(q + 3 * bs + 8), x1, e3);
        }
        add_rows8(y + r, 8, _mm256_add_ps(a0, e0));
        add_rows8(y + r + 8, 8, _mm256_add_ps(a1, e1));
        add_rows8(y + r + 16, 8, _mm256_add_ps(a2, e2));
        add_rows8(y + r + 24, 8, _mm256_add_ps(a3, e3));
    }
    for (; r < rows; r += 8) {
        const float *p = w + (r / 8) * bs;
        __m256 a0 = _mm256_setzero_ps(), e0 = a0, a1 = a0, e1 = a0;
        for (c = 0; c < cols; c += 4) {
            const float *q = p + 8 * c;
            a0 = _mm256_fmadd_ps(_mm256_load_ps(q), _mm256_broadcast_ss(x + c), a0);
            e0 = _mm256_fmadd_ps(_mm256_load_ps(q + 8), _mm256_broadcast_ss(x + c + 1), e0);
            a1 = _mm256_fmadd_ps(_mm256_load_ps(q + 16), _mm256_broadcast_ss(x + c + 2), a1);
            e1 = _mm256_fmadd_ps(_mm256_load_ps(q + 24), _mm256_broadcast_ss(x + c + 3), e1);
        }
        add_rows8(y + r, LEM_LEFT(rows, r, 8), _mm256_add_ps(_mm256_add_ps(a0, e0), _mm256_add_ps(a1, e1)));
    }
}

/* One 4-column group of one 8-row block: x's 4 bytes broadcast (xv) and their absolute values (ax). */
LEM_AVX2 static __m256i dot_block8(__m256i acc, const int8_t *q, __m256i ax, __m256i xv) {
    __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(_mm256_load_si256((const __m256i *)q), xv));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

LEM_AVX2 static void matvec_i8_avx2_packed(const int8_t *w, const float *row_scale, size_t rows, size_t cols,
                                           const int8_t *x, float x_scale, float *y) {
    const size_t bs = 8 * cols; /* bytes per block */
    size_t r = 0, c;
    for (; r + 32 <= rows; r += 32) {
        const int8_t *p = w + (r / 8) * bs;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c < cols; c += 4) {
            __m256i xv = _mm256_set1_epi32(load4(x + c)), ax = _mm256_abs_epi8(xv);
            const int8_t *q = p + 8 * c;
            a0 = dot_block8(a0, q, ax, xv);
            a1 = dot_block8(a1, q + bs, ax, xv);
            a2 = dot_block8(a2, q + 2 * bs, ax, xv);
            a3 = dot_block8(a3, q + 3 * bs, ax, xv);
        }
        scale_rows8(y + r, row_scale + r, 8, a0, x_scale);
        scale_rows8(y + r + 8, row_scale + r + 8, 8, a1, x_scale);
        scale_rows8(y + r + 16, row_scale + r + 16, 8, a2, x_scale);
        scale_rows8(y + r + 24, row_scale + r + 24, 8, a3, x_scale);
    }
    for (; r < rows; r += 8) {
        const int8_t *p = w + (r / 8) * bs;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        for (c = 0; c < cols; c += 8) {
            __m256i x0 = _mm256_set1_epi32(load4(x + c)), x1 = _mm256_set1_epi32(load4(x + c + 4));
            a0 = dot_block8(a0, p + 8 * c, _mm256_abs_epi8(x0), x0);
            a1 = dot_block8(a1, p + 8 * c + 32, _mm256_abs_epi8(x1), x1);
        }
        scale_rows8(y + r, row_scale + r, LEM_LEFT(rows, r, 8), _mm256_add_epi32(a0, a1), x_scale);
    }
}

/* nv (1..AVX2_NV) vectors times nb (1..AVX2_NB) blocks of 8 rows, as vnni_tile below: each block's 32 bytes of a
 * column group loaded once for the nv vectors, each vector's 4 bytes (and their absolute values) once for the nb
 * blocks. The int32 sums are exact, so the order of the additions does not matter. */
#define AVX2_NB 4
#define AVX2_NV 2
LEM_AVX2 static inline __attribute__((always_inline)) void avx2_tile(
    const int8_t *p, size_t bs, size_t cols, size_t rows_left, const float *row_scale, const int8_t *x,
    size_t x_stride, const float *x_scale, float *y, size_t y_stride, int nb, int nv) {
    __m256i acc[AVX2_NB * AVX2_NV], xv[AVX2_NV], ax[AVX2_NV];
    size_t c;
    int b, j;
    for (b = 0; b < AVX2_NV * nb; b++) acc[b] = _mm256_setzero_si256();
    for (c = 0; c < cols; c += 4) {
        for (j = 0; j < nv; j++) {
            xv[j] = _mm256_set1_epi32(load4(x + j * x_stride + c));
            ax[j] = _mm256_abs_epi8(xv[j]);
        }
        for (b = 0; b < nb; b++) {
            const int8_t *q = p + b * bs + 8 * c;
            for (j = 0; j < nv; j++) acc[AVX2_NV * b + j] = dot_block8(acc[AVX2_NV * b + j], q, ax[j], xv[j]);
        }
    }
    for (j = 0; j < nv; j++) {
        if (x_scale[j] == 0.0f) continue;
        for (b = 0; b < nb && (size_t)(8 * b) < rows_left; b++)
            scale_rows8(y + j * y_stride + 8 * b, row_scale + 8 * b, LEM_LEFT(rows_left, (size_t)(8 * b), 8),
                        acc[AVX2_NV * b + j], x_scale[j]);
    }
}

/* Rows in groups of up to AVX2_NB blocks; for each, the vectors in groups of up to AVX2_NV (the group's weights stay
 * in L1 across all vectors, in registers across each group of vectors). */
LEM_AVX2 static void matmat_i8_avx2_packed(const int8_t *w, const float *row_scale, size_t rows, size_t cols,
                                           const int8_t *x, const float *x_scale, size_t n_vec, size_t x_stride,
                                           float *y, size_t y_stride) {
    const size_t bs = 8 * cols;
    size_t r, g;
    for (r = 0; r < rows;) {
        const int8_t *p = w + (r / 8) * bs;
        size_t blocks = (rows - r + 7) / 8;
        int nb = blocks < AVX2_NB ? (int)blocks : AVX2_NB;
        for (g = 0; g < n_vec; g += AVX2_NV) {
            int nv = n_vec - g < AVX2_NV ? (int)(n_vec - g) : AVX2_NV;
#define LEM_TILE(b, v)                                                                                             \
    case 8 * (b - 1) + v - 1:                                                                                      \
        avx2_tile(p, bs, cols, rows - r, row_scale + r, x + g * x_stride, x_stride, x_scale + g,                   \
                  y + g * y_stride + r, y_stride, b, v);                                                           \
        break;
            switch (8 * (nb - 1) + nv - 1) {
                LEM_TILE(1, 1) LEM_TILE(1, 2) LEM_TILE(2, 1) LEM_TILE(2, 2)
                LEM_TILE(3, 1) LEM_TILE(3, 2) LEM_TILE(4, 1) default: LEM_TILE(4, 2)
            }
#undef LEM_TILE
        }
        r += 8 * (size_t)nb;
    }
}

/* --------------------------------------------------------------------- AVX-512 (VNNI): packed, blocks of 16 rows */
static void pack_f32_16(const float *w, size_t rows, size_t cols, float *out) {
    pack_f32_blocks(w, rows, cols, 16, out);
}

/* vpdpbusd multiplies unsigned by signed bytes: the weights are stored as w + 128 (0..254) and x stays signed, so
 * the sum is dot(w, x) + 128 * sum(x), and 128 * sum(x) is taken off once per call (wrapping int32 arithmetic
 * on both sides, so the result is the exact int32 dot product). */
static void pack_i8_16(const int8_t *w, size_t rows, size_t cols, int8_t *out) {
    pack_i8_blocks(w, rows, cols, 16, 0x80, out);
}

LEM_AVX512 static __mmask16 rows_mask(size_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

LEM_AVX512 static void add_rows16(float *y, size_t n, __m512 v) {
    __mmask16 m = rows_mask(n);
    _mm512_mask_storeu_ps(y, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v));
}

LEM_AVX512 static void scale_rows16(float *y, const float *row_scale, size_t n, __m512i acc, float x_scale) {
    __mmask16 m = rows_mask(n);
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_maskz_loadu_ps(m, row_scale));
    __m512 v = _mm512_mul_ps(s, _mm512_cvtepi32_ps(acc));
    _mm512_mask_storeu_ps(y, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v));
}

LEM_AVX512 static void matvec_f32_avx512_packed(const float *w, size_t rows, size_t cols, const float *x,
                                                float *y) {
    const size_t bs = 16 * cols;
    size_t r = 0, c;
    for (; r + 64 <= rows; r += 64) {
        const float *p = w + (r / 16) * bs;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
        for (c = 0; c < cols; c += 2) {
            __m512 x0 = _mm512_set1_ps(x[c]), x1 = _mm512_set1_ps(x[c + 1]);
            const float *q = p + 16 * c;
            a0 = _mm512_fmadd_ps(_mm512_load_ps(q), x0, a0);
            e0 = _mm512_fmadd_ps(_mm512_load_ps(q + 16), x1, e0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(q + bs), x0, a1);
            e1 = _mm512_fmadd_ps(_mm512_load_ps(q + bs + 16), x1, e1);
            a2 = _mm512_fmadd_ps(_mm512_load_ps(q + 2 * bs), x0, a2);
            e2 = _mm512_fmadd_ps(_mm512_load_ps(q + 2 * bs + 16), x1, e2);
            a3 = _mm512_fmadd_ps(_mm512_load_ps(q + 3 * bs), x0, a3);
            e3 = _mm512_fmadd_ps(_mm512_load_ps(q + 3 * bs + 16), x1, e3);
        }
        add_rows16(y + r, 16, _mm512_add_ps(a0, e0));
        add_rows16(y + r + 16, 16, _mm512_add_ps(a1, e1));
        add_rows16(y + r + 32, 16, _mm512_add_ps(a2, e2));
        add_rows16(y + r + 48, 16, _mm512_add_ps(a3, e3));
    }
    for (; r < rows; r += 16) {
        const float *p = w + (r / 16) * bs;
        __m512 a0 = _mm512_setzero_ps(), e0 = a0, a1 = a0, e1 = a0;
        for (c = 0; c < cols; c += 4) {
            const float *q = p + 16 * c;
            a0 = _mm512_fmadd_ps(_mm512_load_ps(q), _mm512_set1_ps(x[c]), a0);
            e0 = _mm512_fmadd_ps(_mm512_load_ps(q + 16), _mm512_set1_ps(x[c + 1]), e0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(q + 32), _mm512_set1_ps(x[c + 2]), a1);
            e1 = _mm512_fmadd_ps(_mm512_load_ps(q + 48), _mm512_set1_ps(x[c + 3]), e1);
        }
        add_rows16(y + r, LEM_LEFT(rows, r, 16), _mm512_add_ps(_mm512_add_ps(a0, e0), _mm512_add_ps(a1, e1)));
    }
}

/* 128 * sum(x) (wrapping) */
LEM_AVX512 static int32_t offset_sum(const int8_t *x, size_t cols) {
    __m512i acc = _mm512_setzero_si512();
    const __m512i ones = _mm512_set1_epi8(1);
    size_t c;
    for (c = 0; c < cols; c += 64) {
        __mmask64 m = cols - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (cols - c)) - 1u);
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(m, x + c));
    }
    return (int32_t)((uint32_t)_mm512_reduce_add_epi32(acc) * 128u);
}

/* 128 * sum(x) in every lane */
LEM_AVX512 static __m512i offset_of(const int8_t *x, size_t cols) { return _mm512_set1_epi32(offset_sum(x, cols)); }

LEM_AVX512 static void matvec_i8_vnni_packed(const int8_t *w, const float *row_scale, size_t rows, size_t cols,
                                             const int8_t *x, float x_scale, float *y) {
    const size_t bs = 16 * cols;
    const __m512i offset = offset_of(x, cols);
    size_t r = 0, c;
    for (; r + 64 <= rows; r += 64) {
        const int8_t *p = w + (r / 16) * bs;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
        for (c = 0; c < cols; c += 8) {
            __m512i x0 = _mm512_set1_epi32(load4(x + c)), x1 = _mm512_set1_epi32(load4(x + c + 4));
            const int8_t *q = p + 16 * c;
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(q), x0);
            e0 = _mm512_dpbusd_epi32(e0, _mm512_load_si512(q + 64), x1);
            a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(q + bs), x0);
            e1 = _mm512_dpbusd_epi32(e1, _mm512_load_si512(q + bs + 64), x1);
            a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512(q + 2 * bs), x0);
            e2 = _mm512_dpbusd_epi32(e2, _mm512_load_si512(q + 2 * bs + 64), x1);
            a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512(q + 3 * bs), x0);
            e3 = _mm512_dpbusd_epi32(e3, _mm512_load_si512(q + 3 * bs + 64), x1);
        }
        scale_rows16(y + r, row_scale + r, 16, _mm512_sub_epi32(_mm512_add_epi32(a0, e0), offset), x_scale);
        scale_rows16(y + r + 16, row_scale + r + 16, 16, _mm512_sub_epi32(_mm512_add_epi32(a1, e1), offset),
                     x_scale);
        scale_rows16(y + r + 32, row_scale + r + 32, 16, _mm512_sub_epi32(_mm512_add_epi32(a2, e2), offset),
                     x_scale);
        scale_rows16(y + r + 48, row_scale + r + 48, 16, _mm512_sub_epi32(_mm512_add_epi32(a3, e3), offset),
                     x_scale);
    }
    for (; r < rows; r += 16) {
        const int8_t *p = w + (r / 16) * bs;
        __m512i a0 = _mm512_setzero_si512(), e0 = a0;
        for (c = 0; c < cols; c += 8) {
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(p + 16 * c), _mm512_set1_epi32(load4(x + c)));
            e0 = _mm512_dpbusd_epi32(e0, _mm512_load_si512(p + 16 * c + 64), _mm512_set1_epi32(load4(x + c + 4)));
        }
        scale_rows16(y + r, row_scale + r, LEM_LEFT(rows, r, 16), _mm512_sub_epi32(_mm512_add_epi32(a0, e0), offset),
                     x_scale);
    }
}

/* nv (1..4) vectors times nb (1..4) blocks of 16 rows: each block's 64 bytes of a column group are loaded once
 * for the nv vectors and each vector's 4 bytes once for the nb blocks. Inlined with constant nb and nv, so the
 * nb * nv accumulators stay in registers. */
/* The sums of an nb x nv tile with its accumulators named (nb, nv constants after inlining: the tests on them
 * vanish): GCC keeps an array of accumulators in registers only with copies between them on every column group
 * (half the loop's instructions), named ones it does not. */
#define LEM_DP_ROW(a0, a1, a2, a3, wv)                                                                             \
    do {                                                                                                           \
        const __m512i w_ = (wv);                                                                                   \
        a0 = _mm512_dpbusd_epi32(a0, w_, x0);                                                                      \
        if (nv > 1) a1 = _mm512_dpbusd_epi32(a1, w_, x1);                                                          \
        if (nv > 2) a2 = _mm512_dpbusd_epi32(a2, w_, x2);                                                          \
        if (nv > 3) a3 = _mm512_dpbusd_epi32(a3, w_, x3);                                                          \
    } while (0)
LEM_AVX512 static inline __attribute__((always_inline)) void vnni_sums(const int8_t *p, size_t bs, size_t cols,
                                                                      const int8_t *x, size_t x_stride,
                                                                      __m512i *acc, int nb, int nv) {
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m512i a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    size_t c;
    for (c = 0; c < cols; c += 4) {
        const int8_t *q = p + 16 * c;
        const __m512i zero = _mm512_setzero_si512(), x0 = _mm512_set1_epi32(load4(x + c));
        const __m512i x1 = nv > 1 ? _mm512_set1_epi32(load4(x + x_stride + c)) : zero;
        const __m512i x2 = nv > 2 ? _mm512_set1_epi32(load4(x + 2 * x_stride + c)) : zero;
        const __m512i x3 = nv > 3 ? _mm512_set1_epi32(load4(x + 3 * x_stride + c)) : zero;
        LEM_DP_ROW(a00, a01, a02, a03, _mm512_load_si512(q));
        if (nb > 1) LEM_DP_ROW(a10, a11, a12, a13, _mm512_load_si512(q + bs));
        if (nb > 2) LEM_DP_ROW(a20, a21, a22, a23, _mm512_load_si512(q + 2 * bs));
        if (nb > 3) LEM_DP_ROW(a30, a31, a32, a33, _mm512_load_si512(q + 3 * bs));
    }
    acc[0] = a00, acc[1] = a01, acc[2] = a02, acc[3] = a03, acc[4] = a10, acc[5] = a11, acc[6] = a12;
    acc[7] = a13, acc[8] = a20, acc[9] = a21, acc[10] = a22, acc[11] = a23, acc[12] = a30, acc[13] = a31;
    acc[14] = a32, acc[15] = a33;
}
#undef LEM_DP_ROW

LEM_AVX512 static inline __attribute__((always_inline)) void vnni_tile(
    const int8_t *p, size_t bs, size_t cols, size_t rows_left, const float *row_scale, const int8_t *x,
    size_t x_stride, const float *x_scale, const int32_t *offset, float *y, size_t y_stride, int nb, int nv) {
    __m512i acc[16];
    int b, j;
    vnni_sums(p, bs, cols, x, x_stride, acc, nb, nv);
    for (j = 0; j < nv; j++) {
        if (x_scale[j] == 0.0f) continue;
        for (b = 0; b < nb && (size_t)(16 * b) < rows_left; b++)
            scale_rows16(y + j * y_stride + 16 * b, row_scale + 16 * b, rows_left - 16 * b,
                         _mm512_sub_epi32(acc[4 * b + j], _mm512_set1_epi32(offset[j])), x_scale[j]);
    }
}

/* Vectors in batches of up to 16 (their offsets kept), and for each group of up to four blocks (64 rows) the
 * batch in fours: the rows' weights stay in L1 across the batch and in registers across each four. */
LEM_AVX512 static void matmat_i8_vnni_packed(const int8_t *w, const float *row_scale, size_t rows, size_t cols,
                                             const int8_t *x, const float *x_scale, size_t n_vec, size_t x_stride,
                                             float *y, size_t y_stride) {
    const size_t bs = 16 * cols;
    int32_t offset[16];
    size_t v0, g, r, j;
    for (v0 = 0; v0 < n_vec; v0 += 16) {
        size_t batch = n_vec - v0 < 16 ? n_vec - v0 : 16;
        const int8_t *xb = x + v0 * x_stride;
        float *yb = y + v0 * y_stride;
        for (j = 0; j < batch; j++) offset[j] = offset_sum(xb + j * x_stride, cols);
        for (r = 0; r < rows;) {
            const int8_t *p = w + (r / 16) * bs;
            size_t blocks = (rows - r + 15) / 16;
            int nb = blocks < 4 ? (int)blocks : 4;
            for (g = 0; g < batch; g += 4) {
                const int8_t *xg = xb + g * x_stride;
                float *yg = yb + g * y_stride + r;
                int nv = batch - g < 4 ? (int)(batch - g) : 4;
#define LEM_TILE(b, v)                                                                                             \
    case 4 * (b - 1) + v - 1:                                                                                      \
        vnni_tile(p, bs, cols, rows - r, row_scale + r, xg, x_stride, x_scale + v0 + g, offset + g, yg, y_stride, \
                  b, v);                                                                                           \
        break;
                switch (4 * (nb - 1) + nv - 1) {
                    LEM_TILE(1, 1) LEM_TILE(1, 2) LEM_TILE(1, 3) LEM_TILE(1, 4)
                    LEM_TILE(2, 1) LEM_TILE(2, 2) LEM_TILE(2, 3) LEM_TILE(2, 4)
                    LEM_TILE(3, 1) LEM_TILE(3, 2) LEM_TILE(3, 3) LEM_TILE(3, 4)
                    LEM_TILE(4, 1) LEM_TILE(4, 2) LEM_TILE(4, 3) default: LEM_TILE(4, 4)
                }
#undef LEM_TILE
            }
            r += 16 * (size_t)nb;
        }
    }
}

/* --------------------------------------------------------------------- quantize: the portable result, bitwise */
/* max(a, peak) keeps peak when a is NaN, as the portable loop skips NaN; cvtps rounds to nearest even, as
 * round_near does (the default rounding mode). */
LEM_AVX2 static float quantize_avx2(const float *v, size_t n, int8_t *q) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 peak8 = _mm256_setzero_ps(), inv8;
    __m128 p4;
    float peak, inv;
    size_t i, full = n / 8 * 8;
    for (i = 0; i < full; i += 8) peak8 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + i), magnitude), peak8);
    p4 = _mm_max_ps(_mm256_castps256_ps128(peak8), _mm256_extractf128_ps(peak8, 1));
    p4 = _mm_max_ps(p4, _mm_movehl_ps(p4, p4));
    p4 = _mm_max_ss(p4, _mm_shuffle_ps(p4, p4, 1));
    peak = _mm_cvtss_f32(p4);
    for (; i < n; i++) {
        float a = fabsf(v[i]);
        if (a > peak) peak = a;
    }
    if (peak == 0.0f) {
        memset(q, 0, n);
        return 0.0f;
    }
    inv = 127.0f / peak;
    inv8 = _mm256_set1_ps(inv);
    for (i = 0; i < full; i += 8) {
        __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + i), inv8));
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(w, w));
    }
    quantize_values(v + full, n - full, inv, q + full);
    return peak / 127.0f;
}

LEM_AVX512 static float quantize_avx512(const float *v, size_t n, int8_t *q) {
    __m512 peak16 = _mm512_setzero_ps(), inv16;
    float peak, inv;
    size_t i;
    for (i = 0; i < n; i += 16) {
        peak16 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(rows_mask(n - i), v + i)), peak16);
    }
    peak = _mm512_reduce_max_ps(peak16);
    if (peak == 0.0f) {
        memset(q, 0, n);
        return 0.0f;
    }
    inv = 127.0f / peak;
    inv16 = _mm512_set1_ps(inv);
    for (i = 0; i < n; i += 16) {
        __mmask16 m = rows_mask(n - i);
        __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + i), inv16));
        _mm512_mask_cvtepi32_storeu_epi8(q + i, m, r);
    }
    return peak / 127.0f;
}

/* ------------------------------------------------------------------ LSTM gates: the portable result, bitwise */
/* lem_fast_exp (lstm_edge_common.h) on four vectors of 16 at once, each step for the four before the next: the
 * polynomial and the division are long dependent chains, and a loop of one vector per iteration filled the
 * scheduler with instructions waiting on them (the gate loop ran at a third of the units' throughput). The same
 * float operations in the same order (no FMA); min(88, x) / max(-87, x) return x when x is NaN, as the C
 * comparisons do. */
LEM_AVX512 static inline __attribute__((always_inline)) void exp16x4(__m512 *v) {
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 shifted[4], r[4], p[4];
    int q;
    for (q = 0; q < 4; q++) {
        __m512 x = _mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_min_ps(_mm512_set1_ps(88.0f), v[q]));
        shifted[q] = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), magic);
        v[q] = x;
    }
    for (q = 0; q < 4; q++) {
        __m512 n = _mm512_sub_ps(shifted[q], magic);
        r[q] = _mm512_sub_ps(_mm512_sub_ps(v[q], _mm512_mul_ps(n, _mm512_set1_ps(0.693145751953125f))),
                             _mm512_mul_ps(n, _mm512_set1_ps(1.428606765330187e-06f)));
    }
    for (q = 0; q < 4; q++)
        p[q] = _mm512_add_ps(_mm512_set1_ps(0.008333334f), _mm512_mul_ps(r[q], _mm512_set1_ps(0.0013888889f)));
    for (q = 0; q < 4; q++) p[q] = _mm512_add_ps(_mm512_set1_ps(0.041666668f), _mm512_mul_ps(r[q], p[q]));
    for (q = 0; q < 4; q++) p[q] = _mm512_add_ps(_mm512_set1_ps(0.16666667f), _mm512_mul_ps(r[q], p[q]));
    for (q = 0; q < 4; q++) p[q] = _mm512_add_ps(_mm512_set1_ps(0.5f), _mm512_mul_ps(r[q], p[q]));
    for (q = 0; q < 4; q++) p[q] = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(r[q], p[q]));
    for (q = 0; q < 4; q++) p[q] = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(r[q], p[q]));
    for (q = 0; q < 4; q++) {
        __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted[q]), _mm512_set1_epi32(0x4b400000));
        bits = _mm512_slli_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(127)), 23);
        v[q] = _mm512_mul_ps(p[q], _mm512_castsi512_ps(bits));
    }
}

/* y[:n] = lem_fast_sigmoid(x[:n]) (tanh: lem_fast_tanh), 64 values per step; the last step's missing lanes
 * compute on zeros and are not stored. In place is fine (y == x). */
LEM_AVX512 static void activate16x4(const float *x, float *y, size_t n, int tanh) {
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    __m512 v[4];
    __mmask16 m[4];
    size_t j;
    int q;
    for (j = 0; j < n; j += 64) {
        for (q = 0; q < 4; q++) {
            size_t at = j + 16 * (size_t)q;
            m[q] = at < n ? rows_mask(n - at) : 0;
            v[q] = _mm512_maskz_loadu_ps(m[q], x + at);
            v[q] = tanh ? _mm512_mul_ps(two, v[q]) /* 2x */
                        : _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v[q]), sign)); /* -x */
        }
        exp16x4(v);
        for (q = 0; q < 4; q++) {
            __m512 out = tanh ? _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(v[q], one)))
                              : _mm512_div_ps(one, _mm512_add_ps(one, v[q]));
            _mm512_mask_storeu_ps(y + j + 16 * (size_t)q, m[q], out);
        }
    }
}

/* The model's lstm_gates (g = i, f, g, o pre-activations; g is overwritten with the activations) in three passes:
 * the gates' activations, the cell c = f * c + i * g, then h = o * tanh(c). */
LEM_AVX512 static void lstm_gates_avx512(float *g, float *c, float *hidden, size_t h) {
    size_t j;
    activate16x4(g, g, 2 * h, 0);
    activate16x4(g + 2 * h, g + 2 * h, h, 1);
    activate16x4(g + 3 * h, g + 3 * h, h, 0);
    for (j = 0; j < h; j += 16) {
        __mmask16 m = rows_mask(h - j);
        __m512 f_c = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + h + j), _mm512_maskz_loadu_ps(m, c + j));
        __m512 i_g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, g + 2 * h + j));
        _mm512_mask_storeu_ps(c + j, m, _mm512_add_ps(f_c, i_g));
    }
    activate16x4(c, hidden, h, 1);
    for (j = 0; j < h; j += 16) {
        __mmask16 m = rows_mask(h - j);
        __m512 o = _mm512_maskz_loadu_ps(m, g + 3 * h + j);
        _mm512_mask_storeu_ps(hidden + j, m, _mm512_mul_ps(o, _mm512_maskz_loadu_ps(m, hidden + j)));
    }
}

LEM_MATMAT_F32(matmat_f32_avx2, matvec_f32_avx2, 4)
LEM_MATMAT_I8(matmat_i8_avx2, matvec_i8_avx2, 4)
LEM_MATMAT_F32(matmat_f32_avx2_packed, matvec_f32_avx2_packed, 32)
LEM_MATMAT_F32(matmat_f32_avx512_packed, matvec_f32_avx512_packed, 64)

static const lem_kernels AVX2 = {"avx2", quantize_avx2, matvec_f32_avx2, matvec_i8_avx2, 8, 8, pack_f32_8,
                                 pack_i8_8, matvec_f32_avx2_packed, matvec_i8_avx2_packed, matmat_f32_avx2,
                                 matmat_i8_avx2, matmat_f32_avx2_packed, matmat_i8_avx2_packed, NULL};
static const lem_kernels AVX512_VNNI = {"avx512-vnni", quantize_avx512, matvec_f32_avx2, matvec_i8_avx2, 16, 16,
                                        pack_f32_16, pack_i8_16, matvec_f32_avx512_packed, matvec_i8_vnni_packed,
                                        matmat_f32_avx2, matmat_i8_avx2, matmat_f32_avx512_packed,
                                        matmat_i8_vnni_packed, lstm_gates_avx512};

static const lem_kernels *detect(const char *forced) {
    int avx2, vnni;
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (forced != NULL && strcmp(forced, "avx2") == 0 && avx2) return &AVX2;
    if (vnni) return &AVX512_VNNI;
    if (avx2) return &AVX2;
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

/* Several vectors: tiles of nr rows times nv vectors, each (row, vector) pair with its own accumulator through the
 * same operations, in the same order, as the one-vector kernel; each row's 16 bytes (4 floats) of a column step are
 * loaded once for the nv vectors and each vector's once for the nr rows. Inlined with constant nr and nv, so the
 * accumulators stay in registers. The driver walks the rows in tiles of NR, and for each the vectors in groups of
 * NV (a tile's rows stay in L1 across all the vectors). */
#define LEM_NEON_TILES(name, tile, NR, NV, weight_t, ARGS, CALL)                                                      \
    static void name ARGS {                                                                                          \
        size_t r, g;                                                                                                 \
        for (r = 0; r < rows; r += NR) {                                                                             \
            int nr = rows - r < NR ? (int)(rows - r) : NR;                                                           \
            for (g = 0; g < n_vec; g += NV) {                                                                        \
                int nv = n_vec - g < NV ? (int)(n_vec - g) : NV;                                                     \
                const weight_t *wr = w + r * cols;                                                                   \
                LEM_NEON_SWITCH_##NR##x##NV(tile, CALL)                                                              \
            }                                                                                                        \
        }                                                                                                            \
    }
#define LEM_NEON_CASE(tile, CALL, a, b) \
    case 8 * (a - 1) + b - 1: tile CALL(a, b); break;
#define LEM_NEON_SWITCH_4x4(tile, CALL)                                                                              \
    switch (8 * (nr - 1) + nv - 1) {                                                                                 \
        LEM_NEON_CASE(tile, CALL, 1, 1) LEM_NEON_CASE(tile, CALL, 1, 2) LEM_NEON_CASE(tile, CALL, 1, 3)              \
        LEM_NEON_CASE(tile, CALL, 1, 4) LEM_NEON_CASE(tile, CALL, 2, 1) LEM_NEON_CASE(tile, CALL, 2, 2)              \
        LEM_NEON_CASE(tile, CALL, 2, 3) LEM_NEON_CASE(tile, CALL, 2, 4) LEM_NEON_CASE(tile, CALL, 3, 1)              \
        LEM_NEON_CASE(tile, CALL, 3, 2) LEM_NEON_CASE(tile, CALL, 3, 3) LEM_NEON_CASE(tile, CALL, 3, 4)              \
        LEM_NEON_CASE(tile, CALL, 4, 1) LEM_NEON_CASE(tile, CALL, 4, 2) LEM_NEON_CASE(tile, CALL, 4, 3)              \
        default: tile CALL(4, 4); break;                                                                             \
    }
#define LEM_NEON_SWITCH_4x2(tile, CALL)                                                                              \
    switch (8 * (nr - 1) + nv - 1) {                                                                                 \
        LEM_NEON_CASE(tile, CALL, 1, 1) LEM_NEON_CASE(tile, CALL, 1, 2) LEM_NEON_CASE(tile, CALL, 2, 1)              \
        LEM_NEON_CASE(tile, CALL, 2, 2) LEM_NEON_CASE(tile, CALL, 3, 1) LEM_NEON_CASE(tile, CALL, 3, 2)              \
        LEM_NEON_CASE(tile, CALL, 4, 1) default: tile CALL(4, 2); break;                                             \
    }

static inline __attribute__((always_inline)) void f32_tile_neon(const float *w, size_t cols, const float *x,
                                                                size_t x_stride, float *y, size_t y_stride, int nr,
                                                                int nv) {
    float32x4_t acc[16], xv[4], wv;
    size_t c;
    int i, j;
    for (i = 0; i < 4 * nr; i++) acc[i] = vdupq_n_f32(0.0f);
    for (c = 0; c < cols; c += 4) {
        for (j = 0; j < nv; j++) xv[j] = vld1q_f32(x + j * x_stride + c);
        for (i = 0; i < nr; i++) {
            wv = vld1q_f32(w + i * cols + c);
            for (j = 0; j < nv; j++) acc[4 * i + j] = vfmaq_f32(acc[4 * i + j], wv, xv[j]);
        }
    }
    for (j = 0; j < nv; j++)
        for (i = 0; i < nr; i++) y[j * y_stride + i] += vaddvq_f32(acc[4 * i + j]);
}

#define LEM_F32_TILE_CALL(a, b) (wr, cols, x + g * x_stride, x_stride, y + g * y_stride + r, y_stride, a, b)
LEM_NEON_TILES(matmat_f32_neon, f32_tile_neon, 4, 4, float,
               (const float *w, size_t rows, size_t cols, const float *x, size_t n_vec, size_t x_stride, float *y,
                size_t y_stride),
               LEM_F32_TILE_CALL)

/* y[j][i] += x_scale[j] * row_scale[i] * sum, as matvec (a vector with scale 0 left alone) */
static inline __attribute__((always_inline)) void scale_tile(float *y, size_t y_stride, const float *row_scale,
                                                             const float *x_scale, const int32x4_t *acc, int nr,
                                                             int nv) {
    int i, j;
    for (j = 0; j < nv; j++) {
        if (x_scale[j] == 0.0f) continue;
        for (i = 0; i < nr; i++) y[j * y_stride + i] += x_scale[j] * row_scale[i] * (float)vaddvq_s32(acc[4 * i + j]);
    }
}

static inline __attribute__((always_inline)) void i8_tile_neon(const int8_t *w, size_t cols, const float *row_scale,
                                                               const int8_t *x, size_t x_stride,
                                                               const float *x_scale, float *y, size_t y_stride,
                                                               int nr, int nv) {
    int32x4_t acc[16];
    int8x16_t xv[2], wv;
    size_t c;
    int i, j;
    for (i = 0; i < 4 * nr; i++) acc[i] = vdupq_n_s32(0);
    for (c = 0; c < cols; c += 16) {
        for (j = 0; j < nv; j++) xv[j] = vld1q_s8(x + j * x_stride + c);
        for (i = 0; i < nr; i++) {
            wv = vld1q_s8(w + i * cols + c);
            for (j = 0; j < nv; j++) acc[4 * i + j] = dot16_neon(acc[4 * i + j], wv, xv[j]);
        }
    }
    scale_tile(y, y_stride, row_scale, x_scale, acc, nr, nv);
}

#define LEM_I8_TILE_CALL(a, b) \
    (wr, cols, row_scale + r, x + g * x_stride, x_stride, x_scale + g, y + g * y_stride + r, y_stride, a, b)
#define LEM_I8_ARGS                                                                                                  \
    (const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x, const float *x_scale,       \
     size_t n_vec, size_t x_stride, float *y, size_t y_stride)
LEM_NEON_TILES(matmat_i8_neon, i8_tile_neon, 4, 2, int8_t, LEM_I8_ARGS, LEM_I8_TILE_CALL)

__attribute__((target("arch=armv8.2-a+dotprod"))) static inline __attribute__((always_inline)) void
i8_tile_dotprod(const int8_t *w, size_t cols, const float *row_scale, const int8_t *x, size_t x_stride,
                const float *x_scale, float *y, size_t y_stride, int nr, int nv) {
    int32x4_t acc[16];
    int8x16_t xv[4], wv;
    size_t c;
    int i, j;
    for (i = 0; i < 4 * nr; i++) acc[i] = vdupq_n_s32(0);
    for (c = 0; c < cols; c += 16) {
        for (j = 0; j < nv; j++) xv[j] = vld1q_s8(x + j * x_stride + c);
        for (i = 0; i < nr; i++) {
            wv = vld1q_s8(w + i * cols + c);
            for (j = 0; j < nv; j++) acc[4 * i + j] = vdotq_s32(acc[4 * i + j], wv, xv[j]);
        }
    }
    scale_tile(y, y_stride, row_scale, x_scale, acc, nr, nv);
}

__attribute__((target("arch=armv8.2-a+dotprod")))
LEM_NEON_TILES(matmat_i8_dotprod, i8_tile_dotprod, 4, 4, int8_t, LEM_I8_ARGS, LEM_I8_TILE_CALL)

static const lem_kernels NEON = {"neon", quantize_portable, matvec_f32_neon, matvec_i8_neon, 0, 0, NULL, NULL, NULL,
                                 NULL, matmat_f32_neon, matmat_i8_neon, NULL, NULL, NULL};
static const lem_kernels NEON_DOTPROD = {"neon-dotprod", quantize_portable, matvec_f32_neon, matvec_i8_dotprod, 0, 0,
                                         NULL, NULL, NULL, NULL, matmat_f32_neon, matmat_i8_dotprod, NULL, NULL, NULL};

static const lem_kernels *detect(const char *forced) {
    (void)forced;
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) return &NEON_DOTPROD;
#endif
    return &NEON;
}

/* ----------------------------------------------------------------------------------------- WebAssembly SIMD128 */
#elif defined(__wasm_simd128__)
#include <wasm_simd128.h>

static int32_t hsum_i32x4(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2)
           + wasm_i32x4_extract_lane(v, 3);
}

/* Lane k accumulates the products of columns c + k, and the lanes are summed as (0 + 1) + (2 + 3): the portable
 * kernel's four accumulators in the same order, so the results are bitwise the portable ones (WebAssembly has no
 * fused multiply-add to contract into). */
static void matvec_f32_simd128(const float *w, size_t rows, size_t cols, const float *x, float *y) {
    size_t r, c;
    for (r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        v128_t acc = wasm_f32x4_splat(0.0f);
        for (c = 0; c < cols; c += 4)
            acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(row + c), wasm_v128_load(x + c)));
        y[r] += (wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1))
                + (wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3));
    }
}

/* Exact int32 dot products: x is widened to int16 once per call, each row's int8 weights eight at a time by
 * v128.load8x8_s, and i32x4.dot_i16x8_s multiplies and adds pairs (x86 pmaddwd); four rows share each piece of x.
 * Then the portable kernel's float expression. */
#define SIMD128_X16_MAX 4096

static void matvec_i8_simd128(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                              float x_scale, float *y) {
    static v128_t x16[SIMD128_X16_MAX / 8]; /* one module instance is single-threaded */
    size_t r = 0, c;
    if (cols > SIMD128_X16_MAX) {
        matvec_i8_portable(w, row_scale, rows, cols, x, x_scale, y);
        return;
    }
    for (c = 0; c < cols; c += 16) {
        v128_t xv = wasm_v128_load(x + c);
        x16[c / 8] = wasm_i16x8_extend_low_i8x16(xv);
        x16[c / 8 + 1] = wasm_i16x8_extend_high_i8x16(xv);
    }
    for (; r + 4 <= rows; r += 4) {
        const int8_t *w0 = w + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
        for (c = 0; c < cols; c += 8) { /* load8x8: eight int8 weights widened by the load itself */
            v128_t xv = x16[c / 8];
            a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w0 + c), xv));
            a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w1 + c), xv));
            a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w2 + c), xv));
            a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w3 + c), xv));
        }
        y[r] += x_scale * row_scale[r] * (float)hsum_i32x4(a0);
        y[r + 1] += x_scale * row_scale[r + 1] * (float)hsum_i32x4(a1);
        y[r + 2] += x_scale * row_scale[r + 2] * (float)hsum_i32x4(a2);
        y[r + 3] += x_scale * row_scale[r + 3] * (float)hsum_i32x4(a3);
    }
    for (; r < rows; r++) {
        const int8_t *row = w + r * cols;
        v128_t acc = wasm_i32x4_splat(0);
        for (c = 0; c < cols; c += 8)
            acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(row + c), x16[c / 8]));
        y[r] += x_scale * row_scale[r] * (float)hsum_i32x4(acc);
    }
}

LEM_MATMAT_F32(matmat_f32_simd128, matvec_f32_simd128, 1)
LEM_MATMAT_I8(matmat_i8_simd128, matvec_i8_simd128, 4)

static const lem_kernels SIMD128 = {"wasm-simd128", quantize_portable, matvec_f32_simd128, matvec_i8_simd128, 0, 0,
                                    NULL, NULL, NULL, NULL, matmat_f32_simd128, matmat_i8_simd128, NULL, NULL, NULL};

static const lem_kernels *detect(const char *forced) {
    (void)forced;
    return &SIMD128; /* a module built with SIMD128 only loads where the engine has it */
}

#else
static const lem_kernels *detect(const char *forced) {
    (void)forced;
    return &PORTABLE;
}
#endif

const lem_kernels *lem_kernels_select(void) {
    const char *forced = getenv("LEM_KERNEL");
    if (forced != NULL && strcmp(forced, "portable") == 0) return &PORTABLE;
    return detect(forced);
}
