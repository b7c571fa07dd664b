/*
 * The C model's push loop and the int8 matrix-vector floor it is measured against (benchmarks/bench_native.py).
 *
 *   native_loop MODEL.lec ITERATIONS ROWSxCOLS[,ROWSxCOLS...]
 *
 * Prints one JSON line: microseconds of the thread's CPU time per push at T=1, per frame at T=10, and the floor: per
 * frame, one matrix-vector product (int8 or float as the model, the same kernel and weight layout the model uses)
 * for each listed matrix, with nothing else around it.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lstm_edge_kernels.h"
#include "lstm_edge_model.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU time: other processes on a shared machine do not count */
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median over 15 rounds of (time of `iterations` calls) / (iterations * per) */
#define ROUNDS 15

int main(int argc, char **argv) {
    int status, round;
    long i, iterations;
    lem_model *model;
    lem_stream *stream;
    size_t in_w, out_w, k, n_mats = 0, rows[64], cols[64];
    float *x, *y, *fy, floor_x[4096];
    int8_t *mats[64], qx[4096];
    float *scales[64], *fmats[64], fx[4096];
    int int8;
    double t1[ROUNDS], t10[ROUNDS], tf[ROUNDS], start;
    const lem_kernels *kernels = lem_kernels_select();
    void (*matvec_i8)(const int8_t *, const float *, size_t, size_t, const int8_t *, float, float *) =
        kernels->matvec_i8_packed != NULL ? kernels->matvec_i8_packed : kernels->matvec_i8;
    void (*matvec_f32)(const float *, size_t, size_t, const float *, float *) =
        kernels->matvec_f32_packed != NULL ? kernels->matvec_f32_packed : kernels->matvec_f32;
    char *spec, *token;
    if (argc != 4) {
        fprintf(stderr, "usage: native_loop MODEL.lec ITERATIONS ROWSxCOLS[,...]\n");
        return 2;
    }
    iterations = atol(argv[2]);
    model = lem_model_from_file(argv[1], &status);
    if (model == NULL) {
        fprintf(stderr, "%s: %s\n", lem_status_string(status), lem_last_error());
        return 1;
    }
    stream = lem_stream_create(model, 10, &status);
    int8 = lem_model_is_int8(model);
    in_w = lem_model_input_width(model);
    out_w = lem_model_output_width(model);
    x = (float *)calloc(10 * in_w, sizeof(float));
    y = (float *)calloc(10 * out_w, sizeof(float));
    for (k = 0; k < 10 * in_w; k++) x[k] = (float)((k * 7919u) % 1000u) / 500.0f - 1.0f;
    spec = argv[3];
    for (token = strtok(spec, ","); token != NULL && n_mats < 64; token = strtok(NULL, ",")) {
        size_t r, c, pad;
        if (sscanf(token, "%lux%lu", (unsigned long *)&r, (unsigned long *)&c) != 2) return 2;
        pad = (c + LEM_PAD - 1) / LEM_PAD * LEM_PAD;
        rows[n_mats] = r;
        cols[n_mats] = pad;
        mats[n_mats] = (int8_t *)calloc(r * pad, 1);
        scales[n_mats] = (float *)calloc(r, sizeof(float));
        for (k = 0; k < r * pad; k++) mats[n_mats][k] = (int8_t)((int)((k * 2654435761u) >> 24) % 255 - 127);
        for (k = 0; k < r; k++) scales[n_mats][k] = 1e-3f;
        fmats[n_mats] = NULL;
        if (!int8) { /* the same values as float, in the float kernels' layout */
            void *packed = NULL;
            float *plain = (float *)calloc(r * pad, sizeof(float));
            size_t n_rows = kernels->matvec_f32_packed != NULL ? lem_packed_rows(r, kernels->f32_block) : r;
            if (plain == NULL || posix_memalign(&packed, 64, n_rows * pad * sizeof(float)) != 0) return 1;
            for (k = 0; k < r * pad; k++) plain[k] = 1e-3f * (float)mats[n_mats][k];
            if (kernels->matvec_f32_packed != NULL) {
                kernels->pack_f32(plain, r, pad, (float *)packed);
                free(plain);
                fmats[n_mats] = (float *)packed;
            } else {
                free(packed);
                fmats[n_mats] = plain;
            }
        }
        if (kernels->matvec_i8_packed != NULL) {
            void *packed = NULL;
            if (posix_memalign(&packed, 64, lem_packed_rows(r, kernels->i8_block) * pad) != 0) return 1;
            kernels->pack_i8(mats[n_mats], r, pad, (int8_t *)packed);
            free(mats[n_mats]);
            mats[n_mats] = (int8_t *)packed;
        }
        n_mats++;
    }
    for (k = 0; k < 4096; k++) {
        floor_x[k] = 0.0f;
        qx[k] = (int8_t)(k % 200 - 100);
        fx[k] = 0.01f * (float)qx[k];
    }
    fy = floor_x;
    for (round = 0; round < ROUNDS; round++) {
        start = now_us();
        for (i = 0; i < iterations; i++) lem_stream_push(stream, x, 1, y);
        t1[round] = (now_us() - start) / (double)iterations;
        start = now_us();
        for (i = 0; i < iterations / 10 + 1; i++) lem_stream_push(stream, x, 10, y);
        t10[round] = (now_us() - start) / (double)((iterations / 10 + 1) * 10);
        start = now_us();
        for (i = 0; i < iterations; i++) {
            for (k = 0; k < n_mats; k++) {
                if (int8)
                    matvec_i8(mats[k], scales[k], rows[k], cols[k], qx, 1e-3f, fy);
                else
                    matvec_f32(fmats[k], rows[k], cols[k], fx, fy);
            }
        }
        tf[round] = (now_us() - start) / (double)iterations;
    }
    qsort(t1, ROUNDS, sizeof(double), compare);
    qsort(t10, ROUNDS, sizeof(double), compare);
    qsort(tf, ROUNDS, sizeof(double), compare);
    printf("{\"kernels\": \"%s\", \"int8\": %d, \"push_t1_us\": %.4f, \"push_t10_us_per_frame\": %.4f, "
           "\"floor_us_per_frame\": %.4f, \"check\": %g}\n",
           kernels->name, int8, t1[ROUNDS / 2], t10[ROUNDS / 2], tf[ROUNDS / 2],
           (double)(y[0] + fy[0]));
    return 0;
}
