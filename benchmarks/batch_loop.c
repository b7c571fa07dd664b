/*
 * The C batch against separate C streams (benchmarks/bench_batch.py).
 *
 *   batch_loop MODEL.lec FRAMES N[,N...]
 *
 * For each N: N streams pushed one after another with lem_stream_push, and the same N streams pushed together with
 * lem_batch_push, FRAMES frames per push, interleaved round by round. Prints one JSON line per N: microseconds per
 * stream per push (median over rounds) for both.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lstm_edge_model.h"

#define ROUNDS 21

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int status = 0;
    lem_model *model;
    size_t frames, in_w, out_w;
    char *list, *item;
    if (argc != 4) {
        fprintf(stderr, "usage: batch_loop MODEL.lec FRAMES N[,N...]\n");
        return 2;
    }
    model = lem_model_from_file(argv[1], &status);
    if (model == NULL) {
        fprintf(stderr, "cannot load %s: %s (%s)\n", argv[1], lem_status_string(status), lem_last_error());
        return 1;
    }
    frames = (size_t)atol(argv[2]);
    in_w = lem_model_input_width(model);
    out_w = lem_model_output_width(model);
    list = argv[3];
    for (item = strtok(list, ","); item != NULL; item = strtok(NULL, ",")) {
        size_t n = (size_t)atol(item), i, v, round;
        size_t iterations = 20000 / (n * frames) + 5;
        double separate[ROUNDS], batched[ROUNDS], t0;
        lem_stream **streams = (lem_stream **)calloc(n, sizeof *streams);
        float *x = (float *)malloc(n * frames * in_w * sizeof(float));
        float *y = (float *)malloc(n * frames * out_w * sizeof(float));
        int *statuses = (int *)calloc(n, sizeof(int));
        lem_batch *batch = lem_batch_create(model, n, 16, &status);
        if (streams == NULL || x == NULL || y == NULL || statuses == NULL || batch == NULL) return 1;
        srand(1);
        for (i = 0; i < n * frames * in_w; i++) x[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        for (v = 0; v < n; v++) streams[v] = lem_stream_create(model, 16, &status);
        for (round = 0; round < ROUNDS; round++) {
            t0 = now_us();
            for (i = 0; i < iterations; i++)
                for (v = 0; v < n; v++)
                    if (lem_stream_push(streams[v], x + v * frames * in_w, frames, y + v * frames * out_w)) return 1;
            separate[round] = (now_us() - t0) / (double)(iterations * n);
            t0 = now_us();
            for (i = 0; i < iterations; i++)
                if (lem_batch_push(batch, streams, n, x, frames, y, statuses)) return 1;
            batched[round] = (now_us() - t0) / (double)(iterations * n);
        }
        qsort(separate, ROUNDS, sizeof(double), compare);
        qsort(batched, ROUNDS, sizeof(double), compare);
        printf("{\"n\": %lu, \"frames\": %lu, \"separate_us\": %.3f, \"batch_us\": %.3f}\n", (unsigned long)n,
               (unsigned long)frames, separate[ROUNDS / 2], batched[ROUNDS / 2]);
        for (v = 0; v < n; v++) lem_stream_free(streams[v]);
        lem_batch_free(batch);
        free(streams);
        free(x);
        free(y);
        free(statuses);
    }
    lem_model_free(model);
    return 0;
}
