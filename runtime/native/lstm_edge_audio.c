/* lstm_edge_audio: streaming log-mel frontend and keyword detector (C99, libm only). See lstm_edge_audio.h. */
#include "lstm_edge_audio.h"
#include "lstm_edge_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LE_PI 3.14159265358979323846

static const char *last_config_error = "";

const char *le_status_string(int status) {
    switch (status) {
    case LE_OK: return "ok";
    case LE_ERR_ARGUMENT: return "bad argument (NULL pointer)";
    case LE_ERR_CONFIG: return "bad config";
    case LE_ERR_NO_MEMORY: return "out of memory";
    case LE_ERR_OUTPUT_SPACE: return "output buffer too small";
    case LE_ERR_NONFINITE: return "NaN or inf in the input";
    default: return "unknown status";
    }
}

const char *le_last_config_error(void) { return last_config_error; }

static int config_error(const char *message, int *status) {
    last_config_error = message;
    if (status) *status = LE_ERR_CONFIG;
    return LE_ERR_CONFIG;
}

/* ================================================================================================ frontend */
struct le_frontend {
    le_frontend_config config;
    int half;         /* n_fft / 2: length of the complex FFT behind the real one */
    int n_bins;       /* n_fft / 2 + 1 */
    double *window;   /* [win_length] periodic Hann */
    int *bit_reverse; /* [half] */
    double *twiddle;  /* cos, sin of -2 pi k / size for each FFT stage size >= 8, k < size / 2 */
    double *split;    /* [2 * half] cos, sin of -2 pi k / n_fft for k < half (interleaved) */
    int *mel_first;   /* [n_mels] first bin of each triangle */
    int *mel_count;   /* [n_mels] bins in each triangle */
    double *mel_weight; /* concatenated non-zero weights */
    float *held;      /* [win_length] samples of the frame being filled */
    size_t fill;      /* samples in held */
    size_t skip;      /* samples still to drop before the next frame starts (hop_length > win_length) */
    double *re, *im;  /* [half] FFT work */
    double *power;    /* [n_bins] */
};

le_frontend_config le_frontend_default_config(void) {
    le_frontend_config c;
    c.sample_rate = 16000;
    c.n_fft = 512;
    c.win_length = 400;
    c.hop_length = 160;
    c.n_mels = 40;
    c.f_min = 20.0;
    c.f_max = 7600.0;
    c.log_floor = 1e-6;
    return c;
}

static int check_frontend_config(const le_frontend_config *c, int *status) {
    if (c->sample_rate <= 0) return config_error("sample_rate: expected > 0", status);
    if (c->n_fft < 4 || (c->n_fft & (c->n_fft - 1)) != 0)
        return config_error("n_fft: expected a power of two >= 4", status);
    if (c->win_length <= 0 || c->win_length > c->n_fft) return config_error("win_length: expected in (0, n_fft]", status);
    if (c->hop_length <= 0) return config_error("hop_length: expected > 0", status);
    if (c->n_mels <= 0) return config_error("n_mels: expected > 0", status);
    if (!(c->f_min >= 0.0)) return config_error("f_min: expected >= 0", status);
    if (!(c->f_min < c->f_max && c->f_max <= c->sample_rate / 2.0))
        return config_error("f_max: expected in (f_min, sample_rate / 2]", status);
    if (!(c->log_floor > 0.0)) return config_error("log_floor: expected > 0", status);
    return LE_OK;
}

static int build_mel(le_frontend *fe) {
    const le_frontend_config *c = &fe->config;
    int m, k, total = 0, n_edges = c->n_mels + 2;
    double mel_lo = LEM_HZ_TO_MEL(c->f_min), mel_hi = LEM_HZ_TO_MEL(c->f_max);
    double *edges = (double *)malloc(sizeof(double) * (size_t)n_edges);
    if (!edges) return LE_ERR_NO_MEMORY;
    for (m = 0; m < n_edges; m++) edges[m] = LEM_MEL_TO_HZ(lem_linspace_at(mel_lo, mel_hi, n_edges, m));
    /* Two passes: count the non-zero weights, then store them. */
    for (m = 0; m < c->n_mels; m++) {
        int first = -1, last = -1;
        for (k = 0; k < fe->n_bins; k++) {
            double f = lem_linspace_at(0.0, c->sample_rate / 2.0, fe->n_bins, k);
            if (lem_triangle_weight(f, edges[m], edges[m + 1], edges[m + 2]) > 0.0) {
                if (first < 0) first = k;
                last = k;
            }
        }
        fe->mel_first[m] = first < 0 ? 0 : first;
        fe->mel_count[m] = first < 0 ? 0 : last - first + 1;
        total += fe->mel_count[m];
    }
    fe->mel_weight = (double *)malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    if (!fe->mel_weight) {
        free(edges);
        return LE_ERR_NO_MEMORY;
    }
    total = 0;
    for (m = 0; m < c->n_mels; m++) {
        for (k = 0; k < fe->mel_count[m]; k++) {
            int bin = fe->mel_first[m] + k;
            double f = lem_linspace_at(0.0, c->sample_rate / 2.0, fe->n_bins, bin);
            fe->mel_weight[total++] = lem_triangle_weight(f, edges[m], edges[m + 1], edges[m + 2]);
        }
    }
    free(edges);
    return LE_OK;
}

le_frontend *le_frontend_create(const le_frontend_config *config, int *status) {
    le_frontend *fe;
    int i, bits = 0, half;
    if (!config) {
        if (status) *status = LE_ERR_ARGUMENT;
        return NULL;
    }
    if (check_frontend_config(config, status) != LE_OK) return NULL;
    fe = (le_frontend *)calloc(1, sizeof(*fe));
    if (!fe) goto no_memory;
    fe->config = *config;
    half = fe->half = config->n_fft / 2;
    fe->n_bins = half + 1;
    fe->window = (double *)malloc(sizeof(double) * (size_t)config->win_length);
    fe->bit_reverse = (int *)malloc(sizeof(int) * (size_t)half);
    fe->twiddle = (double *)malloc(sizeof(double) * 2 * (size_t)half);
    fe->split = (double *)malloc(sizeof(double) * 2 * (size_t)half);
    fe->mel_first = (int *)malloc(sizeof(int) * (size_t)config->n_mels);
    fe->mel_count = (int *)malloc(sizeof(int) * (size_t)config->n_mels);
    fe->held = (float *)malloc(sizeof(float) * (size_t)config->win_length);
    fe->re = (double *)malloc(sizeof(double) * (size_t)half);
    fe->im = (double *)malloc(sizeof(double) * (size_t)half);
    fe->power = (double *)malloc(sizeof(double) * (size_t)fe->n_bins);
    if (!fe->window || !fe->bit_reverse || !fe->twiddle || !fe->split || !fe->mel_first || !fe->mel_count ||
        !fe->held || !fe->re || !fe->im || !fe->power)
        goto no_memory;
    for (i = 0; i < config->win_length; i++)
        fe->window[i] = 0.5 - 0.5 * cos(2.0 * LE_PI * (double)i / (double)config->win_length);
    while ((1 << bits) < half) bits++;
    for (i = 0; i < half; i++) {
        int b, r = 0;
        for (b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
        fe->bit_reverse[i] = r;
    }
    {
        /* Twiddles exp(-2 pi i k / size) of every stage from size 8 up, k < size / 2, stage after stage. */
        int size, k, at = 0;
        for (size = 8; size <= half; size <<= 1) {
            for (k = 0; k < size / 2; k++, at += 2) {
                fe->twiddle[at] = cos(-2.0 * LE_PI * (double)k / (double)size);
                fe->twiddle[at + 1] = sin(-2.0 * LE_PI * (double)k / (double)size);
            }
        }
    }
    for (i = 0; i < half; i++) {
        fe->split[2 * i] = cos(-2.0 * LE_PI * (double)i / (double)config->n_fft);
        fe->split[2 * i + 1] = sin(-2.0 * LE_PI * (double)i / (double)config->n_fft);
    }
    if (build_mel(fe) != LE_OK) goto no_memory;
    if (status) *status = LE_OK;
    return fe;
no_memory:
    le_frontend_free(fe);
    if (status) *status = LE_ERR_NO_MEMORY;
    return NULL;
}

void le_frontend_free(le_frontend *fe) {
    if (!fe) return;
    free(fe->window);
    free(fe->bit_reverse);
    free(fe->twiddle);
    free(fe->split);
    free(fe->mel_first);
    free(fe->mel_count);
    free(fe->mel_weight);
    free(fe->held);
    free(fe->re);
    free(fe->im);
    free(fe->power);
    free(fe);
}

void le_frontend_reset(le_frontend *fe) {
    if (!fe) return;
    fe->fill = 0;
    fe->skip = 0;
}

int le_frontend_n_mels(const le_frontend *fe) { return fe ? fe->config.n_mels : 0; }

size_t le_frontend_pending_samples(const le_frontend *fe) { return fe ? fe->fill : 0; }

size_t le_frontend_frames_for(const le_frontend *fe, size_t n_samples) {
    size_t win, hop, available;
    if (!fe) return 0;
    win = (size_t)fe->config.win_length;
    hop = (size_t)fe->config.hop_length;
    if (n_samples < fe->skip) return 0;
    available = fe->fill + (n_samples - fe->skip);
    if (available < win) return 0;
    return (available - win) / hop + 1;
}

size_t le_frontend_max_frames(const le_frontend *fe, size_t n_samples) {
    if (!fe) return 0;
    return n_samples / (size_t)fe->config.hop_length + 1;
}

/* In-place radix-2 decimation-in-time complex FFT of fe->re/fe->im (length fe->half >= 2). The first two stages
 * (twiddles 1 and -i) run as one radix-4 pass without multiplications; later stages read their twiddles from
 * fe->twiddle, laid out stage after stage so that each stage reads them in order. */
static void complex_fft(le_frontend *fe) {
    int n = fe->half, i, size;
    double *re = fe->re, *im = fe->im;
    const double *w = fe->twiddle;
    for (i = 0; i < n; i++) {
        int j = fe->bit_reverse[i];
        if (j > i) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    if (n == 2) {
        double r0 = re[0], i0 = im[0];
        re[0] = r0 + re[1];
        im[0] = i0 + im[1];
        re[1] = r0 - re[1];
        im[1] = i0 - im[1];
        return;
    }
    for (i = 0; i < n; i += 4) {
        double ar = re[i] + re[i + 1], ai = im[i] + im[i + 1];
        double br = re[i] - re[i + 1], bi = im[i] - im[i + 1];
        double cr = re[i + 2] + re[i + 3], ci = im[i + 2] + im[i + 3];
        double dr = re[i + 2] - re[i + 3], di = im[i + 2] - im[i + 3];
        re[i] = ar + cr;
        im[i] = ai + ci;
        re[i + 2] = ar - cr;
        im[i + 2] = ai - ci;
        re[i + 1] = br + di; /* b + (-i) d */
        im[i + 1] = bi - dr;
        re[i + 3] = br - di;
        im[i + 3] = bi + dr;
    }
    for (size = 8; size <= n; size <<= 1) {
        int halfsize = size / 2, start, k;
        for (start = 0; start < n; start += size) {
            double *ra = re + start, *ia = im + start, *rb = ra + halfsize, *ib = ia + halfsize;
            for (k = 0; k < halfsize; k++) {
                double wr = w[2 * k], wi = w[2 * k + 1];
                double tr = rb[k] * wr - ib[k] * wi;
                double ti = rb[k] * wi + ib[k] * wr;
                rb[k] = ra[k] - tr;
                ib[k] = ia[k] - ti;
                ra[k] += tr;
                ia[k] += ti;
            }
        }
        w += size; /* halfsize (cos, sin) pairs */
    }
}

/* Log-mel of the full frame in fe->held, written to out[n_mels]. */
static void frame_to_logmel(le_frontend *fe, float *out) {
    const le_frontend_config *c = &fe->config;
    int half = fe->half, n, k, m;
    const double *w = fe->mel_weight;
    /* Pack the windowed, zero-padded real frame as half complex values: z[n] = x[2n] + i x[2n+1]. */
    for (n = 0; n < half; n++) {
        int even = 2 * n, odd = even + 1;
        fe->re[n] = even < c->win_length ? (double)fe->held[even] * fe->window[even] : 0.0;
        fe->im[n] = odd < c->win_length ? (double)fe->held[odd] * fe->window[odd] : 0.0;
    }
    complex_fft(fe);
    /* Split into the real spectrum X[k], k = 0..half, and keep |X[k]|^2. */
    for (k = 0; k <= half; k++) {
        int a = k < half ? k : 0, b = k > 0 ? half - k : 0;
        double zr = fe->re[a], zi = fe->im[a], cr = fe->re[b], ci = fe->im[b];
        double er = 0.5 * (zr + cr), ei = 0.5 * (zi - ci);
        double orr = 0.5 * (zi + ci), oi = -0.5 * (zr - cr);
        double wr = k < half ? fe->split[2 * k] : -1.0, wi = k < half ? fe->split[2 * k + 1] : 0.0;
        double xr = er + wr * orr - wi * oi, xi = ei + wr * oi + wi * orr;
        fe->power[k] = xr * xr + xi * xi;
    }
    for (m = 0; m < c->n_mels; m++) {
        double sum = 0.0;
        const double *p = fe->power + fe->mel_first[m];
        for (k = 0; k < fe->mel_count[m]; k++) sum += p[k] * w[k];
        w += fe->mel_count[m];
        out[m] = (float)log(sum > c->log_floor ? sum : c->log_floor);
    }
}

/* Feed samples (int16 when pcm16 is not NULL, else float) through the framer. */
static long push_samples(le_frontend *fe, const int16_t *pcm16, const float *pcmf, size_t n_samples, float *features,
                         size_t max_frames) {
    size_t win, hop, i = 0, written = 0, needed;
    if (!fe || (n_samples > 0 && ((!pcm16 && !pcmf) || !features))) return LE_ERR_ARGUMENT;
    needed = le_frontend_frames_for(fe, n_samples);
    if (needed > max_frames) return LE_ERR_OUTPUT_SPACE;
    if (pcmf) {
        for (i = 0; i < n_samples; i++)
            if (!isfinite(pcmf[i])) return LE_ERR_NONFINITE;
        i = 0;
    }
    win = (size_t)fe->config.win_length;
    hop = (size_t)fe->config.hop_length;
    while (i < n_samples) {
        size_t take, j;
        if (fe->skip > 0) {
            take = n_samples - i < fe->skip ? n_samples - i : fe->skip;
            fe->skip -= take;
            i += take;
            continue;
        }
        take = win - fe->fill;
        if (take > n_samples - i) take = n_samples - i;
        if (pcm16) {
            for (j = 0; j < take; j++) fe->held[fe->fill + j] = (float)pcm16[i + j] * (1.0f / 32768.0f);
        } else {
            memcpy(fe->held + fe->fill, pcmf + i, take * sizeof(float));
        }
        fe->fill += take;
        i += take;
        if (fe->fill == win) {
            frame_to_logmel(fe, features + written * (size_t)fe->config.n_mels);
            written++;
            if (hop < win) {
                memmove(fe->held, fe->held + hop, (win - hop) * sizeof(float));
                fe->fill = win - hop;
            } else {
                fe->fill = 0;
                fe->skip = hop - win;
            }
        }
    }
    return (long)written;
}

long le_frontend_push_int16(le_frontend *fe, const int16_t *pcm, size_t n_samples, float *features,
                            size_t max_frames) {
    if (n_samples > 0 && !pcm) return LE_ERR_ARGUMENT;
    return push_samples(fe, pcm, NULL, n_samples, features, max_frames);
}

long le_frontend_push_float(le_frontend *fe, const float *pcm, size_t n_samples, float *features,
                            size_t max_frames) {
    if (n_samples > 0 && !pcm) return LE_ERR_ARGUMENT;
    return push_samples(fe, NULL, pcm, n_samples, features, max_frames);
}

/* ================================================================================================ detector */
struct le_detector {
    le_detector_config config;
    char **labels;
    unsigned char *is_keyword;
    double hop_s, window_s;
    long refractory_frames;
    size_t capacity; /* rows of posterior history kept: max(lookback frames, smoothing_frames) */
    double *history; /* [capacity][n_labels] ring */
    size_t history_len, history_next;
    double *window_sum, *row; /* [n_labels] */
    long frame;
    int open;
    int open_index;
    long opened, onset, quiet_until;
    double open_score;
};

le_detector_config le_detector_default_config(void) {
    le_detector_config c;
    memset(&c, 0, sizeof(c));
    c.scores_are_logits = 1;
    c.threshold = 0.6;
    c.smoothing_frames = 8;
    c.refractory_s = 0.6;
    c.max_event_s = 1.0;
    c.onset_level = 0.2;
    c.lookback_s = 1.2;
    c.sample_rate = 16000;
    c.win_length = 400;
    c.hop_length = 160;
    return c;
}

le_detector *le_detector_create(const le_detector_config *config, int *status) {
    le_detector *d;
    int i;
    long lookback;
    if (!config || (config->n_labels > 0 && !config->labels)) {
        if (status) *status = LE_ERR_ARGUMENT;
        return NULL;
    }
    if (config->n_labels <= 0) {
        config_error("n_labels: expected > 0", status);
        return NULL;
    }
    for (i = 0; i < config->n_labels; i++) {
        if (!config->labels[i]) {
            if (status) *status = LE_ERR_ARGUMENT;
            return NULL;
        }
    }
    if (!(config->threshold > 0.0 && config->threshold < 1.0)) {
        config_error("threshold: expected a value in (0, 1)", status);
        return NULL;
    }
    if (config->smoothing_frames < 1) {
        config_error("smoothing_frames: expected >= 1", status);
        return NULL;
    }
    if (config->sample_rate <= 0 || config->hop_length <= 0 || config->win_length <= 0) {
        config_error("sample_rate, hop_length, win_length: expected > 0", status);
        return NULL;
    }
    if (!(config->refractory_s >= 0.0) || !(config->lookback_s >= 0.0) || !(config->max_event_s > 0.0)) {
        config_error("refractory_s, lookback_s: expected >= 0; max_event_s: expected > 0", status);
        return NULL;
    }
    d = (le_detector *)calloc(1, sizeof(*d));
    if (!d) goto no_memory;
    d->config = *config;
    d->config.labels = NULL;
    d->hop_s = (double)config->hop_length / (double)config->sample_rate;
    d->window_s = (double)config->win_length / (double)config->sample_rate;
    /* nearbyint rounds half to even under the default rounding mode, like Python's round(). */
    d->refractory_frames = (long)nearbyint(config->refractory_s / d->hop_s);
    lookback = (long)nearbyint(config->lookback_s / d->hop_s) + 1;
    d->capacity = (size_t)(lookback > config->smoothing_frames ? lookback : config->smoothing_frames);
    d->labels = (char **)calloc((size_t)config->n_labels, sizeof(char *));
    d->is_keyword = (unsigned char *)malloc((size_t)config->n_labels);
    d->history = (double *)malloc(sizeof(double) * d->capacity * (size_t)config->n_labels);
    d->window_sum = (double *)malloc(sizeof(double) * (size_t)config->n_labels);
    d->row = (double *)malloc(sizeof(double) * (size_t)config->n_labels);
    if (!d->labels || !d->is_keyword || !d->history || !d->window_sum || !d->row) goto no_memory;
    for (i = 0; i < config->n_labels; i++) {
        size_t length = strlen(config->labels[i]);
        d->labels[i] = (char *)malloc(length + 1);
        if (!d->labels[i]) goto no_memory;
        memcpy(d->labels[i], config->labels[i], length + 1);
        d->is_keyword[i] = strcmp(d->labels[i], "_silence_") != 0 && strcmp(d->labels[i], "_unknown_") != 0;
    }
    le_detector_reset(d);
    if (status) *status = LE_OK;
    return d;
no_memory:
    le_detector_free(d);
    if (status) *status = LE_ERR_NO_MEMORY;
    return NULL;
}

void le_detector_free(le_detector *d) {
    int i;
    if (!d) return;
    if (d->labels)
        for (i = 0; i < d->config.n_labels; i++) free(d->labels[i]);
    free(d->labels);
    free(d->is_keyword);
    free(d->history);
    free(d->window_sum);
    free(d->row);
    free(d);
}

void le_detector_reset(le_detector *d) {
    int i;
    if (!d) return;
    d->history_len = 0;
    d->history_next = 0;
    for (i = 0; i < d->config.n_labels; i++) d->window_sum[i] = 0.0;
    d->frame = 0;
    d->open = 0;
    d->quiet_until = -1;
}

size_t le_detector_max_detections(size_t n_frames) { return (n_frames + 1) / 2; }

/* History row `back` rows before the newest (back = 0: the newest). */
static const double *history_row(const le_detector *d, size_t back) {
    size_t index = (d->history_next + d->capacity - 1 - back) % d->capacity;
    return d->history + index * (size_t)d->config.n_labels;
}

static double frame_time(const le_detector *d, long frame) { return (double)frame * d->hop_s + d->window_s; }

static void close_detection(le_detector *d, long frame, le_detection *out) {
    double start = frame_time(d, d->onset) - d->window_s;
    d->open = 0;
    d->quiet_until = frame + d->refractory_frames;
    out->label_index = d->open_index;
    out->label = d->labels[d->open_index];
    out->start_s = start > 0.0 ? start : 0.0;
    out->end_s = frame_time(d, frame);
    out->score = d->open_score;
}

/* The first frame of the run (within the history) where this label's raw posterior stayed >= onset_level. */
static long find_onset(const le_detector *d, int index, long frame) {
    long onset = frame;
    size_t back;
    for (back = 0; back < d->history_len; back++) {
        if (history_row(d, back)[index] < d->config.onset_level) break;
        onset = frame - (long)back;
    }
    return onset;
}

long le_detector_push(le_detector *d, const float *scores, size_t n_frames, le_detection *detections,
                      size_t max_detections) {
    size_t t, written = 0;
    int n, i;
    if (!d || (n_frames > 0 && (!scores || !detections))) return LE_ERR_ARGUMENT;
    if (max_detections < le_detector_max_detections(n_frames)) return LE_ERR_OUTPUT_SPACE;
    n = d->config.n_labels;
    for (t = 0; t < n_frames * (size_t)n; t++)
        if (!isfinite(scores[t])) return LE_ERR_NONFINITE;
    for (t = 0; t < n_frames; t++) {
        const float *x = scores + t * (size_t)n;
        double *slot, divisor, best_value;
        size_t smoothing = (size_t)d->config.smoothing_frames;
        long frame;
        int best;
        if (d->config.scores_are_logits) {
            double top = x[0], sum = 0.0;
            for (i = 1; i < n; i++)
                if (x[i] > top) top = x[i];
            for (i = 0; i < n; i++) {
                d->row[i] = exp((double)x[i] - top);
                sum += d->row[i];
            }
            for (i = 0; i < n; i++) d->row[i] /= sum;
        } else {
            for (i = 0; i < n; i++) d->row[i] = (double)x[i];
        }
        if (d->history_len >= smoothing) {
            const double *old = history_row(d, smoothing - 1);
            for (i = 0; i < n; i++) d->window_sum[i] -= old[i];
        }
        slot = d->history + d->history_next * (size_t)n;
        memcpy(slot, d->row, sizeof(double) * (size_t)n);
        d->history_next = (d->history_next + 1) % d->capacity;
        if (d->history_len < d->capacity) d->history_len++;
        for (i = 0; i < n; i++) d->window_sum[i] += d->row[i];
        divisor = (double)(d->history_len < smoothing ? d->history_len : smoothing);
        frame = d->frame++;
        if (d->open) {
            double score = d->window_sum[d->open_index] / divisor;
            if (score > d->open_score) d->open_score = score;
            if (score < d->config.threshold || (double)(frame - d->opened) * d->hop_s >= d->config.max_event_s)
                close_detection(d, frame, &detections[written++]);
            continue;
        }
        if (frame < d->quiet_until) continue;
        best = -1;
        best_value = 0.0;
        for (i = 0; i < n; i++) {
            double value;
            if (!d->is_keyword[i]) continue;
            value = d->window_sum[i] / divisor;
            if (best < 0 || value > best_value) {
                best = i;
                best_value = value;
            }
        }
        if (best >= 0 && best_value >= d->config.threshold) {
            d->open = 1;
            d->open_index = best;
            d->opened = frame;
            d->open_score = best_value;
            d->onset = find_onset(d, best, frame);
        }
    }
    return (long)written;
}

int le_detector_flush(le_detector *d, le_detection *detection) {
    if (!d || !detection || !d->open) return 0;
    close_detection(d, d->frame - 1, detection);
    return 1;
}
