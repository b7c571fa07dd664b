/*
 * lstm-edge-run: stream frames through a C weight file (lstm_edge_model, C99).
 *
 *   lstm-edge-run [--chunk N] [--precision float|int8] [--info] MODEL < frames > outputs
 *
 * MODEL is a C weight file (model.lec, model.int8.lec) or a model directory (then model.lec for --precision float,
 * the default, or model.int8.lec for int8). stdin: raw little-endian float32 frames of input_width values (token-id
 * models: int32 ids, one per frame); stdout: raw float32 outputs, output_width per frame. The state is carried
 * from chunk to chunk; --chunk N frames are pushed per call (default 10; the last push may be shorter).
 * --info prints the model's sizes and the kernels in use as JSON on stdout and exits.
 * Exit status: 0, 1 on a model or input error (message on stderr), 2 on a usage error.
 */
#include "lstm_edge_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *message, const char *detail) {
    fprintf(stderr, "lstm-edge-run: error: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
    return 1;
}

static int usage(void) {
    fprintf(stderr, "usage: lstm-edge-run [--chunk N] [--precision float|int8] [--info] MODEL < frames > outputs\n");
    return 2;
}

static int is_directory_path(const char *path) {
    size_t n = strlen(path);
    FILE *f;
    if (n >= 4 && strcmp(path + n - 4, ".lec") == 0) return 0;
    f = fopen(path, "rb");
    if (f == NULL) return 1;
    /* a directory opens on glibc but cannot be read */
    if (fgetc(f) == EOF && ferror(f)) {
        fclose(f);
        return 1;
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL, *precision = "float";
    char path[4096];
    long chunk = 10;
    int i, status, info = 0, ids;
    lem_model *model;
    lem_stream *stream;
    size_t in_w, out_w, item, got;
    unsigned char *x;
    float *y;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
            chunk = strtol(argv[++i], NULL, 10);
            if (chunk < 1 || chunk > 1000000) return fail("--chunk: expected a frame count >= 1", argv[i]);
        } else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            precision = argv[++i];
            if (strcmp(precision, "float") != 0 && strcmp(precision, "int8") != 0)
                return fail("--precision: expected float or int8", precision);
        } else if (strcmp(argv[i], "--info") == 0) {
            info = 1;
        } else if (argv[i][0] == '-' || model_arg != NULL) {
            return usage();
        } else {
            model_arg = argv[i];
        }
    }
    if (model_arg == NULL) return usage();
    if (is_directory_path(model_arg))
        snprintf(path, sizeof path, "%s/%s", model_arg, strcmp(precision, "int8") == 0 ? "model.int8.lec" : "model.lec");
    else
        snprintf(path, sizeof path, "%s", model_arg);
    model = lem_model_from_file(path, &status);
    if (model == NULL) {
        fprintf(stderr, "lstm-edge-run: error: %s: %s (%s)\n", path, lem_status_string(status), lem_last_error());
        return 1;
    }
    stream = lem_stream_create(model, (size_t)chunk, &status);
    if (stream == NULL) return fail(lem_status_string(status), NULL);
    ids = lem_model_input_kind(model) == LEM_INPUT_TOKEN_IDS;
    in_w = ids ? 1 : lem_model_input_width(model);
    out_w = lem_model_output_width(model);
    if (info) {
        printf("{\"kernels\": \"%s\", \"int8\": %d, \"input_width\": %lu, \"output_width\": %lu, "
               "\"state_values\": %lu, \"model_bytes\": %lu, \"stream_bytes\": %lu}\n",
               lem_kernel_name(), lem_model_is_int8(model), (unsigned long)in_w, (unsigned long)out_w,
               (unsigned long)lem_model_state_size(model), (unsigned long)lem_model_bytes(model),
               (unsigned long)lem_stream_bytes_for(model, (size_t)chunk));
        return 0;
    }
    item = (ids ? sizeof(int32_t) : sizeof(float)) * in_w;
    x = (unsigned char *)malloc(item * (size_t)chunk);
    y = (float *)malloc(sizeof(float) * out_w * (size_t)chunk);
    if (x == NULL || y == NULL) return fail("out of memory", NULL);
    for (;;) {
        got = fread(x, 1, item * (size_t)chunk, stdin);
        if (got == 0) break;
        if (got % item != 0) {
            /* a short read of a pipe: complete the frame */
            size_t more = fread(x + got, 1, item - got % item, stdin);
            got += more;
            if (got % item != 0) return fail("stdin ends inside a frame", NULL);
        }
        status = ids ? lem_stream_push_ids(stream, (const int32_t *)x, got / item, y)
                     : lem_stream_push(stream, (const float *)x, got / item, y);
        if (status != LEM_OK) return fail(lem_status_string(status), NULL);
        if (fwrite(y, sizeof(float) * out_w, got / item, stdout) != got / item) return fail("cannot write", NULL);
    }
    fflush(stdout);
    free(x);
    free(y);
    lem_stream_free(stream);
    lem_model_free(model);
    return 0;
}
