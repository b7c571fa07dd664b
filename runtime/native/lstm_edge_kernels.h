/*
 * Matrix-vector kernels of lstm_edge_model (internal). Matrices are row-major with a row stride ("cols") that is a
 * multiple of LEM_PAD; vectors are zero-padded to the same length, so no kernel has a tail loop over columns.
 */
#ifndef LSTM_EDGE_KERNELS_H
#define LSTM_EDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define LEM_PAD 32

typedef struct {
    const char *name;
    /* y[r] += dot(w[r, :cols], x[:cols]) for r < rows */
    void (*matvec_f32)(const float *w, size_t rows, size_t cols, const float *x, float *y);
    /* y[r] += x_scale * row_scale[r] * dot(w[r, :cols], x[:cols]), int8 values in [-127, 127] */
    void (*matvec_i8)(const int8_t *w, const float *row_scale, size_t rows, size_t cols, const int8_t *x,
                      float x_scale, float *y);
} lem_kernels;

/* The fastest kernels this CPU runs; the environment variable LEM_KERNEL=portable forces the portable ones. */
const lem_kernels *lem_kernels_select(void);
const lem_kernels *lem_kernels_portable(void);

#endif /* LSTM_EDGE_KERNELS_H */
