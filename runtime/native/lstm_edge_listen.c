/*
 * lstm-edge-listen: keyword spotting from 16 kHz PCM to detections, in C99 (lstm_edge_audio + lstm_edge_model).
 *
 *   lstm-edge-listen [--precision float|int8] [--threshold P] MODEL < audio.s16le > detections.jsonl
 *
 * MODEL is a keyword-spotting model directory (model.lec or model.int8.lec is read) or a C weight file; the
 * frontend settings, labels and detector settings come from the weight file's metadata (written from the
 * manifest). stdin: raw little-endian mono int16 PCM at the model's sample rate, fed in 100 ms chunks like
 * `lstm-edge listen`; stdout: one JSON object per detection, {"label", "start", "end", "score"}, as
 * `lstm-edge listen --json` prints them (times rounded to 1 ms, scores to 1e-4).
 * Exit status: 0, 1 on a model or input error, 2 on a usage error.
 */
#include "lstm_edge_audio.h"
#include "lstm_edge_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 256

static int fail(const char *message, const char *detail) {
    fprintf(stderr, "lstm-edge-listen: error: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
    return 1;
}

/* The value of "key=" in the metadata lines, copied into out (size n); 1 when found. */
static int meta_value(const char *meta, const char *key, char *out, size_t n) {
    size_t k = strlen(key);
    const char *line = meta;
    while (line != NULL && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > k && strncmp(line, key, k) == 0 && line[k] == '=') {
            size_t v = len - k - 1 < n - 1 ? len - k - 1 : n - 1;
            memcpy(out, line + k + 1, v);
            out[v] = '\0';
            return 1;
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

static void meta_double(const char *meta, const char *key, double *value) {
    char text[64];
    if (meta_value(meta, key, text, sizeof text)) *value = atof(text);
}

static void meta_int(const char *meta, const char *key, int *value) {
    char text[64];
    if (meta_value(meta, key, text, sizeof text)) *value = atoi(text);
}

static void print_detection(const le_detection *d) {
    const char *c;
    printf("{\"label\": \"");
    for (c = d->label; *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        putchar(*c);
    }
    printf("\", \"start\": %.3f, \"end\": %.3f, \"score\": %.4f}\n", d->start_s, d->end_s, d->score);
}

static int is_weight_file(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".lec") == 0;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL, *precision = "float";
    char path[4096], semantics[64] = "logits", *label_text, *cursor;
    const char *labels[MAX_LABELS], *meta;
    double threshold = -1.0;
    int i, status, n_labels = 0;
    size_t chunk_samples, max_frames, n_mels, out_w, got;
    le_frontend_config fc = le_frontend_default_config();
    le_detector_config dc = le_detector_default_config();
    le_frontend *frontend;
    le_detector *detector;
    le_detection *found, last;
    lem_model *model;
    lem_stream *stream;
    int16_t *pcm;
    float *features, *scores;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            precision = argv[++i];
            if (strcmp(precision, "float") != 0 && strcmp(precision, "int8") != 0)
                return fail("--precision: expected float or int8", precision);
        } else if (strcmp(argv[i], "--threshold") == 0 && i + 1 < argc) {
            threshold = atof(argv[++i]);
        } else if (argv[i][0] == '-' || model_arg != NULL) {
            fprintf(stderr, "usage: lstm-edge-listen [--precision float|int8] [--threshold P] MODEL < pcm\n");
            return 2;
        } else {
            model_arg = argv[i];
        }
    }
    if (model_arg == NULL) {
        fprintf(stderr, "usage: lstm-edge-listen [--precision float|int8] [--threshold P] MODEL < pcm\n");
        return 2;
    }
    if (is_weight_file(model_arg))
        snprintf(path, sizeof path, "%s", model_arg);
    else
        snprintf(path, sizeof path, "%s/%s", model_arg, strcmp(precision, "int8") == 0 ? "model.int8.lec" : "model.lec");
    model = lem_model_from_file(path, &status);
    if (model == NULL) {
        fprintf(stderr, "lstm-edge-listen: error: %s: %s (%s)\n", path, lem_status_string(status), lem_last_error());
        return 1;
    }
    meta = lem_model_metadata(model);
    label_text = (char *)malloc(strlen(meta) + 1);
    if (label_text == NULL) return fail("out of memory", NULL);
    if (!meta_value(meta, "labels", label_text, strlen(meta) + 1) || lem_model_input_kind(model) != LEM_INPUT_FEATURES)
        return fail("not a keyword-spotting model: the weight file has no labels", path);
    labels[n_labels++] = label_text;
    for (cursor = label_text; *cursor && n_labels < MAX_LABELS; cursor++)
        if (*cursor == ',') {
            *cursor = '\0';
            labels[n_labels++] = cursor + 1;
        }
    meta_int(meta, "frontend.sample_rate", &fc.sample_rate);
    meta_int(meta, "frontend.n_fft", &fc.n_fft);
    meta_int(meta, "frontend.win_length", &fc.win_length);
    meta_int(meta, "frontend.hop_length", &fc.hop_length);
    meta_int(meta, "frontend.n_mels", &fc.n_mels);
    meta_double(meta, "frontend.f_min", &fc.f_min);
    meta_double(meta, "frontend.f_max", &fc.f_max);
    meta_double(meta, "frontend.log_floor", &fc.log_floor);
    meta_double(meta, "detector.threshold", &dc.threshold);
    meta_int(meta, "detector.smoothing_frames", &dc.smoothing_frames);
    meta_double(meta, "detector.refractory_s", &dc.refractory_s);
    meta_double(meta, "detector.max_event_s", &dc.max_event_s);
    meta_double(meta, "detector.onset_level", &dc.onset_level);
    meta_double(meta, "detector.lookback_s", &dc.lookback_s);
    meta_value(meta, "output.semantics", semantics, sizeof semantics);
    if (threshold > 0.0) dc.threshold = threshold;
    dc.n_labels = n_labels;
    dc.labels = labels;
    dc.scores_are_logits = strcmp(semantics, "probabilities") != 0;
    dc.sample_rate = fc.sample_rate;
    dc.win_length = fc.win_length;
    dc.hop_length = fc.hop_length;
    n_mels = (size_t)fc.n_mels;
    out_w = lem_model_output_width(model);
    if (lem_model_input_width(model) != n_mels || out_w != (size_t)n_labels)
        return fail("the weight file's frontend, labels and model widths disagree", path);
    frontend = le_frontend_create(&fc, &status);
    if (frontend == NULL) return fail(le_status_string(status), le_last_config_error());
    detector = le_detector_create(&dc, &status);
    if (detector == NULL) return fail(le_status_string(status), le_last_config_error());
    chunk_samples = (size_t)fc.sample_rate / 10u;
    max_frames = le_frontend_max_frames(frontend, chunk_samples);
    stream = lem_stream_create(model, max_frames, &status);
    pcm = (int16_t *)malloc(chunk_samples * sizeof(int16_t));
    features = (float *)malloc(max_frames * n_mels * sizeof(float));
    scores = (float *)malloc(max_frames * out_w * sizeof(float));
    found = (le_detection *)malloc((le_detector_max_detections(max_frames) + 1) * sizeof(le_detection));
    if (stream == NULL || pcm == NULL || features == NULL || scores == NULL || found == NULL)
        return fail("out of memory", NULL);
    while ((got = fread(pcm, sizeof(int16_t), chunk_samples, stdin)) > 0) {
        long frames = le_frontend_push_int16(frontend, pcm, got, features, max_frames), count, k;
        if (frames < 0) return fail(le_status_string((int)frames), NULL);
        if (frames == 0) continue;
        status = lem_stream_push(stream, features, (size_t)frames, scores);
        if (status != LEM_OK) return fail(lem_status_string(status), NULL);
        count = le_detector_push(detector, scores, (size_t)frames, found, le_detector_max_detections(max_frames) + 1);
        if (count < 0) return fail(le_status_string((int)count), NULL);
        for (k = 0; k < count; k++) print_detection(&found[k]);
    }
    if (le_detector_flush(detector, &last)) print_detection(&last);
    fflush(stdout);
    free(found);
    free(scores);
    free(features);
    free(pcm);
    free(label_text);
    lem_stream_free(stream);
    le_detector_free(detector);
    le_frontend_free(frontend);
    lem_model_free(model);
    return 0;
}
