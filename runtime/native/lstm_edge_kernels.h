/*
 * Matrix-vector kernels of lstm_edge_model (internal). Matrices are row-major with a row stride ("cols") that is a
 * multiple of LEM_PAD; vectors are zero-padded to the same length, so no kernel has a tail loop over columns.
 *
 * A kernel set may also have "packed" versions over a weight layout of its own, made once at load by its pack
 * functions from the row-major matrix: rows in blocks of f32_block / i8_block rows (the last block padded with
 * zero rows), so that one vector instruction updates a whole block of rows and no row needs a horizontal sum.
 * Every int8 kernel computes the exact int32 dot product and the same float expression after it, and every
 * quantize the same values, so all kernel sets give bitwise the same int8 results.
 */
#ifndef LSTM_EDGE_KERNELS_H
#define LSTM_EDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define LEM_PAD 32

typedef struct {
    const char *name;
    /* q[:n] = round(v[:n] / s) with s = max|v| / 127 (ties to even), returns s (0 for an all-zero vector) */
    float (*quantize)(const float *v, size_t n, int8_t *q);
    /* y[r] += dot(w[r, :cols], x[:cols]) for r < rows */
    void (*matvec_f32)(const float *w, size_t rows, size_t cols, const float *x, float *y);
    /* y[r] += x_scale * row_scale[r] * dot(w[r, :cols], x[:cols]), int8 values in [-127, 127] */
    void (*matvec_i8)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                      float x_scale, float *y);
    /* Packed versions (all NULL / 0 when the set has none). pack_* writes lem_packed_rows(rows, block) * cols
     * values; matvec_*_packed take the packed matrix in place of w, with the same rows and cols. */
    size_t f32_block, i8_block;
    void (*pack_f32)(const float *w, size_t rows, size_t cols, float *packed);
    void (*pack_i8)(const int8_t *w, size_t rows, size_t cols, int8_t *packed);
    void (*matvec_f32_packed)(const float *w, size_t rows, size_t cols, const float *x, float *y);
    void (*matvec_i8_packed)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                             float x_scale, float *y);
    /* Several vectors at once: for v < n_vec, what matvec_* does with x + v * x_stride and y + v * y_stride (int8:
     * x_scale[v]; a vector whose x_scale is 0 leaves its y alone, as callers skip matvec for it). Each weight block
     * is read once for all the vectors; every y value is bitwise what the set's matvec gives (same operations in
     * the same order). The row-major pair is there in every set; the packed pair where the packed matvecs are. */
    void (*matmat_f32)(const float *w, size_t rows, size_t cols, const float *x, size_t n_vec, size_t x_stride,
                       float *y, size_t y_stride);
    void (*matmat_i8)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                      const float *x_scale, size_t n_vec, size_t x_stride, float *y, size_t y_stride);
    void (*matmat_f32_packed)(const float *w, size_t rows, size_t cols, const float *x, size_t n_vec,
                              size_t x_stride, float *y, size_t y_stride);
    void (*matmat_i8_packed)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                             const float *x_scale, size_t n_vec, size_t x_stride, float *y, size_t y_stride);
    /* One LSTM frame's gate arithmetic (torch order i, f, g, o in g[:4h], which it overwrites), bitwise what the
     * model's portable gate loop gives; NULL: the model runs that loop. */
    void (*lstm_gates)(float *g, float *c, float *hidden, size_t h);
} lem_kernels;

/* The fastest kernels this CPU runs. The environment variable LEM_KERNEL names a set to use instead ("portable",
 * or on x86-64 "avx2"); a set the CPU cannot run is not chosen. */
const lem_kernels *lem_kernels_select(void);
const lem_kernels *lem_kernels_portable(void);
/* rows rounded up to whole blocks (rows itself for block 0) */
size_t lem_packed_rows(size_t rows, size_t block);

#endif /* LSTM_EDGE_KERNELS_H */
