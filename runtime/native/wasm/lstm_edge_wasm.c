/*
 * lstm_edge_wasm: the few entry points the JavaScript module needs on top of lstm_edge_model and lstm_edge_audio,
 * with flat arguments (numbers and pointers into the module's memory) instead of structs, so the loader needs no
 * knowledge of C struct layouts. Everything else (lem_stream_push, le_frontend_push_float, ...) is called as it is.
 * Built by devices/wasm_build.py with clang --target=wasm32-wasi (a reactor module: no main). Apache-2.0.
 */
#include "../lstm_edge_audio.h"
#include "../lstm_edge_model.h"

#include <stdlib.h>

#define EXPORT(name) __attribute__((export_name(#name)))

EXPORT(lew_malloc) void *lew_malloc(size_t n) { return malloc(n); }
EXPORT(lew_free) void lew_free(void *p) { free(p); }

EXPORT(lew_frontend_create)
le_frontend *lew_frontend_create(int sample_rate, int n_fft, int win_length, int hop_length, int n_mels, double f_min,
                                 double f_max, double log_floor, int *status) {
    le_frontend_config config;
    config.sample_rate = sample_rate;
    config.n_fft = n_fft;
    config.win_length = win_length;
    config.hop_length = hop_length;
    config.n_mels = n_mels;
    config.f_min = f_min;
    config.f_max = f_max;
    config.log_floor = log_floor;
    return le_frontend_create(&config, status);
}

/* labels: n_labels pointers to NUL-terminated names (copied by the detector) */
EXPORT(lew_detector_create)
le_detector *lew_detector_create(int n_labels, const char *const *labels, int scores_are_logits, double threshold,
                                 int smoothing_frames, double refractory_s, double max_event_s, double onset_level,
                                 double lookback_s, int sample_rate, int win_length, int hop_length, int *status) {
    le_detector_config config;
    config.n_labels = n_labels;
    config.labels = labels;
    config.scores_are_logits = scores_are_logits;
    config.threshold = threshold;
    config.smoothing_frames = smoothing_frames;
    config.refractory_s = refractory_s;
    config.max_event_s = max_event_s;
    config.onset_level = onset_level;
    config.lookback_s = lookback_s;
    config.sample_rate = sample_rate;
    config.win_length = win_length;
    config.hop_length = hop_length;
    return le_detector_create(&config, status);
}

static void put(const le_detection *d, double *out) {
    out[0] = (double)d->label_index;
    out[1] = d->start_s;
    out[2] = d->end_s;
    out[3] = d->score;
}

/* le_detector_push with each detection written as 4 doubles: label index, start_s, end_s, score. Returns the
 * number written or a negative le_status. */
EXPORT(lew_detector_push)
long lew_detector_push(le_detector *detector, const float *scores, size_t n_frames, double *out, size_t max_out) {
    le_detection found[64];
    long count, k;
    if (max_out > 64) max_out = 64;
    count = le_detector_push(detector, scores, n_frames, found, max_out);
    for (k = 0; k < count; k++) put(&found[k], out + 4 * k);
    return count;
}

/* le_detector_flush: 1 and the detection's 4 doubles in out, or 0 */
EXPORT(lew_detector_flush)
int lew_detector_flush(le_detector *detector, double *out) {
    le_detection last;
    if (!le_detector_flush(detector, &last)) return 0;
    put(&last, out);
    return 1;
}
