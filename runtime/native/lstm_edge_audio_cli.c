/*
 * Command-line driver of lstm_edge_audio (C99): what the tests and `run.sh --self-test` run.
 *
 *   lstm_edge_audio_cli features [KEY=VALUE...] < pcm > features
 *       stdin: raw little-endian mono samples (input=int16, the default, or input=float32);
 *       stdout: raw float32 features, n_mels per frame.
 *       Keys: the le_frontend_config fields (sample_rate=16000 n_fft=512 ...), chunks=FILE (whitespace-separated
 *       chunk lengths in samples, used in turn and cycled; default 1600), repeat=N (run the input N times,
 *       resetting the stream in between; the output then holds N copies).
 *   lstm_edge_audio_cli detect labels=A,B,C [KEY=VALUE...] < scores > detections.jsonl
 *       stdin: raw float32 scores, one row of n_labels per frame; stdout: one JSON object per detection
 *       {"label", "index", "start", "end", "score"}, then the detection flushed at the end.
 *       Keys: the le_detector_config fields (threshold=0.6 smoothing_frames=8 scores_are_logits=1 ...),
 *       chunks=FILE (chunk lengths in frames; default 10), repeat=N (as for features).
 */
#include "lstm_edge_audio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *message, const char *detail) {
    fprintf(stderr, "error: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
    return 1;
}

static unsigned char *read_all(FILE *in, size_t *size) {
    size_t capacity = 1 << 16, used = 0, got;
    unsigned char *data = (unsigned char *)malloc(capacity);
    if (!data) return NULL;
    while ((got = fread(data + used, 1, capacity - used, in)) > 0) {
        used += got;
        if (used == capacity) {
            unsigned char *bigger = (unsigned char *)realloc(data, capacity * 2);
            if (!bigger) {
                free(data);
                return NULL;
            }
            data = bigger;
            capacity *= 2;
        }
    }
    *size = used;
    return data;
}

/* Chunk lengths from a file (NULL: one length, fallback). */
static size_t *read_chunks(const char *path, size_t fallback, size_t *count) {
    size_t capacity = 64, n = 0;
    long value;
    size_t *chunks = (size_t *)malloc(capacity * sizeof(size_t));
    FILE *f;
    if (!chunks) return NULL;
    if (!path) {
        chunks[0] = fallback;
        *count = 1;
        return chunks;
    }
    f = fopen(path, "r");
    if (!f) {
        free(chunks);
        return NULL;
    }
    while (fscanf(f, "%ld", &value) == 1) {
        if (value <= 0) continue;
        if (n == capacity) {
            size_t *bigger = (size_t *)realloc(chunks, capacity * 2 * sizeof(size_t));
            if (!bigger) break;
            chunks = bigger;
            capacity *= 2;
        }
        chunks[n++] = (size_t)value;
    }
    fclose(f);
    if (n == 0) chunks[n++] = fallback;
    *count = n;
    return chunks;
}

static const char *value_of(const char *arg, const char *key) {
    size_t length = strlen(key);
    return strncmp(arg, key, length) == 0 && arg[length] == '=' ? arg + length + 1 : NULL;
}

static int run_features(int argc, char **argv) {
    le_frontend_config config = le_frontend_default_config();
    const char *chunk_path = NULL, *v;
    int float_input = 0, status, i, repeat = 1, round;
    size_t size, n_samples, n_chunks, offset, next, max_chunk = 0, sample_size;
    unsigned char *data;
    size_t *chunks;
    float *features, *samples = NULL;
    int16_t *pcm16 = NULL;
    le_frontend *fe;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((v = value_of(a, "sample_rate"))) config.sample_rate = atoi(v);
        else if ((v = value_of(a, "n_fft"))) config.n_fft = atoi(v);
        else if ((v = value_of(a, "win_length"))) config.win_length = atoi(v);
        else if ((v = value_of(a, "hop_length"))) config.hop_length = atoi(v);
        else if ((v = value_of(a, "n_mels"))) config.n_mels = atoi(v);
        else if ((v = value_of(a, "f_min"))) config.f_min = atof(v);
        else if ((v = value_of(a, "f_max"))) config.f_max = atof(v);
        else if ((v = value_of(a, "log_floor"))) config.log_floor = atof(v);
        else if ((v = value_of(a, "chunks"))) chunk_path = v;
        else if ((v = value_of(a, "repeat"))) repeat = atoi(v);
        else if ((v = value_of(a, "input"))) {
            if (strcmp(v, "float32") == 0) float_input = 1;
            else if (strcmp(v, "int16") != 0) return fail("input: expected int16 or float32, got", v);
        } else return fail("unknown argument", a);
    }
    fe = le_frontend_create(&config, &status);
    if (!fe) return fail(le_status_string(status), status == LE_ERR_CONFIG ? le_last_config_error() : NULL);
    data = read_all(stdin, &size);
    chunks = read_chunks(chunk_path, 1600, &n_chunks);
    if (!data || !chunks) return fail("cannot read the input or the chunk file", chunk_path);
    sample_size = float_input ? sizeof(float) : sizeof(int16_t);
    if (size % sample_size) return fail("input: expected whole samples, got a trailing partial one", NULL);
    n_samples = size / sample_size;
    if (float_input) samples = (float *)data;
    else pcm16 = (int16_t *)data;
    for (i = 0; i < (int)n_chunks; i++)
        if (chunks[i] > max_chunk) max_chunk = chunks[i];
    /* One output buffer, allocated once: the streaming loop below does not allocate. */
    features = (float *)malloc(sizeof(float) * le_frontend_max_frames(fe, max_chunk) * (size_t)config.n_mels);
    if (!features) return fail("out of memory", NULL);
    for (round = 0; round < repeat; round++) {
        le_frontend_reset(fe);
        for (offset = 0, next = 0; offset < n_samples;) {
            size_t length = chunks[next++ % n_chunks];
            long frames;
            if (length > n_samples - offset) length = n_samples - offset;
            frames = float_input ? le_frontend_push_float(fe, samples + offset, length, features,
                                                          le_frontend_max_frames(fe, max_chunk))
                                 : le_frontend_push_int16(fe, pcm16 + offset, length, features,
                                                          le_frontend_max_frames(fe, max_chunk));
            if (frames < 0) return fail(le_status_string((int)frames), NULL);
            fwrite(features, sizeof(float), (size_t)frames * (size_t)config.n_mels, stdout);
            offset += length;
        }
    }
    free(features);
    free(chunks);
    free(data);
    le_frontend_free(fe);
    return 0;
}

static void print_detection(const le_detection *d) {
    const char *c;
    printf("{\"label\": \"");
    for (c = d->label; *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        putchar(*c);
    }
    printf("\", \"index\": %d, \"start\": %.17g, \"end\": %.17g, \"score\": %.17g}\n", d->label_index, d->start_s,
           d->end_s, d->score);
}

static int run_detect(int argc, char **argv) {
    le_detector_config config = le_detector_default_config();
    const char *chunk_path = NULL, *labels_arg = NULL, *v;
    char *label_text, *cursor;
    const char **labels;
    int status, i, n_labels = 1, repeat = 1, round;
    size_t size, n_rows, n_chunks, offset, next, max_chunk = 0;
    unsigned char *data;
    size_t *chunks;
    le_detection *found, last;
    le_detector *detector;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((v = value_of(a, "labels"))) labels_arg = v;
        else if ((v = value_of(a, "scores_are_logits"))) config.scores_are_logits = atoi(v);
        else if ((v = value_of(a, "threshold"))) config.threshold = atof(v);
        else if ((v = value_of(a, "smoothing_frames"))) config.smoothing_frames = atoi(v);
        else if ((v = value_of(a, "refractory_s"))) config.refractory_s = atof(v);
        else if ((v = value_of(a, "max_event_s"))) config.max_event_s = atof(v);
        else if ((v = value_of(a, "onset_level"))) config.onset_level = atof(v);
        else if ((v = value_of(a, "lookback_s"))) config.lookback_s = atof(v);
        else if ((v = value_of(a, "sample_rate"))) config.sample_rate = atoi(v);
        else if ((v = value_of(a, "win_length"))) config.win_length = atoi(v);
        else if ((v = value_of(a, "hop_length"))) config.hop_length = atoi(v);
        else if ((v = value_of(a, "chunks"))) chunk_path = v;
        else if ((v = value_of(a, "repeat"))) repeat = atoi(v);
        else return fail("unknown argument", a);
    }
    if (!labels_arg) return fail("detect needs labels=A,B,C (manifest.json labels, in order)", NULL);
    label_text = (char *)malloc(strlen(labels_arg) + 1);
    if (!label_text) return fail("out of memory", NULL);
    strcpy(label_text, labels_arg);
    for (cursor = label_text; *cursor; cursor++)
        if (*cursor == ',') n_labels++;
    labels = (const char **)malloc(sizeof(char *) * (size_t)n_labels);
    if (!labels) return fail("out of memory", NULL);
    labels[0] = label_text;
    for (i = 1, cursor = label_text; *cursor; cursor++)
        if (*cursor == ',') {
            *cursor = '\0';
            labels[i++] = cursor + 1;
        }
    config.n_labels = n_labels;
    config.labels = labels;
    detector = le_detector_create(&config, &status);
    if (!detector) return fail(le_status_string(status), status == LE_ERR_CONFIG ? le_last_config_error() : NULL);
    data = read_all(stdin, &size);
    chunks = read_chunks(chunk_path, 10, &n_chunks);
    if (!data || !chunks) return fail("cannot read the input or the chunk file", chunk_path);
    if (size % (sizeof(float) * (size_t)n_labels))
        return fail("input: expected whole rows of n_labels float32 scores", NULL);
    n_rows = size / (sizeof(float) * (size_t)n_labels);
    for (i = 0; i < (int)n_chunks; i++)
        if (chunks[i] > max_chunk) max_chunk = chunks[i];
    found = (le_detection *)malloc(sizeof(le_detection) * (le_detector_max_detections(max_chunk) + 1));
    if (!found) return fail("out of memory", NULL);
    for (round = 0; round < repeat; round++) {
        le_detector_reset(detector);
        for (offset = 0, next = 0; offset < n_rows;) {
            size_t length = chunks[next++ % n_chunks];
            long count, k;
            if (length > n_rows - offset) length = n_rows - offset;
            count = le_detector_push(detector, (const float *)data + offset * (size_t)n_labels, length, found,
                                     le_detector_max_detections(max_chunk) + 1);
            if (count < 0) return fail(le_status_string((int)count), NULL);
            for (k = 0; k < count; k++) print_detection(&found[k]);
            offset += length;
        }
        if (le_detector_flush(detector, &last)) print_detection(&last);
    }
    free(found);
    free(chunks);
    free(data);
    free(labels);
    free(label_text);
    le_detector_free(detector);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "features") == 0) return run_features(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "detect") == 0) return run_detect(argc, argv);
    fprintf(stderr, "usage: %s features [KEY=VALUE...] < pcm > features | detect labels=A,B,... < scores\n",
            argc > 0 ? argv[0] : "lstm_edge_audio_cli");
    return 2;
}
