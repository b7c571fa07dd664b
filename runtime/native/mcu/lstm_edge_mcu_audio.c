/* lstm_edge_mcu audio: float32 log-mel frontend and keyword detector without heap or libm per frame. */
#include "lstm_edge_mcu.h"
#include "../lstm_edge_common.h"

#include <math.h>
#include <string.h>

#define PI_D 3.14159265358979323846

/* ================================================================================================ frontend */
int lem_mcu_frontend_init(lem_mcu_frontend *fe, const lem_mcu_frontend_config *c) {
    int i, m, k, bits = 0, total = 0;
    double edges[LEM_MCU_MAX_MELS + 2], mel_lo, mel_hi;
    if (fe == NULL || c == NULL) return LEM_MCU_ERR_ARGUMENT;
    if (c->n_fft < 16 || c->n_fft > LEM_MCU_MAX_FFT || (c->n_fft & (c->n_fft - 1)) != 0 || c->win_length <= 0
        || c->win_length > c->n_fft || c->hop_length <= 0 || c->n_mels <= 0 || c->n_mels > LEM_MCU_MAX_MELS
        || c->sample_rate <= 0 || !(c->f_min >= 0.0 && c->f_min < c->f_max && c->f_max <= c->sample_rate / 2.0)
        || !(c->log_floor > 0.0))
        return LEM_MCU_ERR_CONFIG;
    memset(fe, 0, sizeof *fe);
    fe->config = *c;
    fe->half = c->n_fft / 2;
    fe->n_bins = fe->half + 1;
    fe->log_floor = (float)c->log_floor;
    for (i = 0; i < c->win_length; i++)
        fe->window[i] = (float)((0.5 - 0.5 * cos(2.0 * PI_D * i / c->win_length)) / 32768.0);
    while ((1 << bits) < fe->half) bits++;
    for (i = 0; i < fe->half; i++) {
        int r = 0, b;
        for (b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
        fe->bit_reverse[i] = (uint16_t)r;
    }
    /* twiddles in the order complex_fft reads them: per pair of stages (sub-transforms of length L -> 4L) the
     * L values (W_2L^j, W_4L^j), then for a last single stage (L -> 2L) the L values W_2L^j */
    for (i = 0, m = 4; 2 * m <= fe->half; m *= 4) {
        for (k = 0; k < m; k++, i += 4) {
            if (4 * m > fe->half) { /* a single stage is left */
                fe->twiddle[i] = (float)cos(-2.0 * PI_D * k / (2 * m));
                fe->twiddle[i + 1] = (float)sin(-2.0 * PI_D * k / (2 * m));
                i -= 2;
                continue;
            }
            fe->twiddle[i] = (float)cos(-2.0 * PI_D * k / (2 * m));
            fe->twiddle[i + 1] = (float)sin(-2.0 * PI_D * k / (2 * m));
            fe->twiddle[i + 2] = (float)cos(-2.0 * PI_D * k / (4 * m));
            fe->twiddle[i + 3] = (float)sin(-2.0 * PI_D * k / (4 * m));
        }
    }
    for (k = 0; k < fe->half; k++) {
        fe->split[2 * k] = (float)cos(-2.0 * PI_D * k / c->n_fft);
        fe->split[2 * k + 1] = (float)sin(-2.0 * PI_D * k / c->n_fft);
    }
    mel_lo = LEM_HZ_TO_MEL(c->f_min);
    mel_hi = LEM_HZ_TO_MEL(c->f_max);
    for (m = 0; m < c->n_mels + 2; m++) edges[m] = LEM_MEL_TO_HZ(lem_linspace_at(mel_lo, mel_hi, c->n_mels + 2, m));
    for (m = 0; m < c->n_mels; m++) {
        int first = -1, last = -1;
        for (k = 0; k < fe->n_bins; k++) {
            double f = lem_linspace_at(0.0, c->sample_rate / 2.0, fe->n_bins, k);
            if (lem_triangle_weight(f, edges[m], edges[m + 1], edges[m + 2]) > 0.0) {
                if (first < 0) first = k;
                last = k;
            }
        }
        fe->mel_first[m] = (uint16_t)(first < 0 ? 0 : first);
        fe->mel_count[m] = (uint16_t)(first < 0 ? 0 : last - first + 1);
        if (total + fe->mel_count[m] > 2 * (LEM_MCU_MAX_FFT / 2 + 1)) return LEM_MCU_ERR_CONFIG;
        for (k = 0; k < fe->mel_count[m]; k++) {
            double f = lem_linspace_at(0.0, c->sample_rate / 2.0, fe->n_bins, first + k);
            fe->mel_weight[total++] = (float)lem_triangle_weight(f, edges[m], edges[m + 1], edges[m + 2]);
        }
    }
    return LEM_MCU_OK;
}

void lem_mcu_frontend_reset(lem_mcu_frontend *fe) {
    if (fe == NULL) return;
    fe->fill = 0;
    fe->skip = 0;
}

/* ln(x) for x > 0 without libm: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m - 1) / (m + 1)) by its
 * series to s^9 (|s| < 0.172: error below 1e-8), plus e ln 2 in two parts. */
static float fast_log(float x) {
    uint32_t bits;
    int e;
    float m, s, s2, series;
    memcpy(&bits, &x, sizeof bits);
    e = (int)((bits >> 23) & 0xffu) - 127;
    bits = (bits & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    memcpy(&m, &bits, sizeof m);
    if (m > 1.41421356f) {
        m *= 0.5f;
        e += 1;
    }
    s = (m - 1.0f) / (m + 1.0f);
    s2 = s * s;
    series = 2.0f * s * (1.0f + s2 * (0.33333333f + s2 * (0.2f + s2 * (0.14285714f + s2 * 0.11111111f))));
    return (float)e * 0.693145751953125f + ((float)e * 1.428606765330187e-06f + series);
}

/* In-place radix-2 FFT of fe->re + i fe->im (half points, already in bit-reversed order): the first two stages
 * together without multiplications, then two stages per pass (and a last single one when the stage count is odd). */
static void complex_fft(lem_mcu_frontend *fe) {
    int n = fe->half, i, size;
    float *re = fe->re, *im = fe->im;
    const float *w = fe->twiddle;
    for (i = 0; i < n; i += 4) {
        float ar = re[i] + re[i + 1], ai = im[i] + im[i + 1], br = re[i] - re[i + 1], bi = im[i] - im[i + 1];
        float cr = re[i + 2] + re[i + 3], ci = im[i + 2] + im[i + 3];
        float dr = re[i + 2] - re[i + 3], di = im[i + 2] - im[i + 3];
        re[i] = ar + cr;
        im[i] = ai + ci;
        re[i + 2] = ar - cr;
        im[i + 2] = ai - ci;
        re[i + 1] = br + di; /* b + (-i) d */
        im[i + 1] = bi - dr;
        re[i + 3] = br - di;
        im[i + 3] = bi + dr;
    }
    for (size = 4; 4 * size <= n; size *= 4) { /* two radix-2 stages per pass: length size -> 4 size */
        int start, k, L = size;
        for (start = 0; start < n; start += 4 * L) {
            float *ar = re + start, *ai = im + start;
            const float *t = w;
            for (k = 0; k < L; k++, t += 4) {
                float wr = t[0], wi = t[1], vr = t[2], vi = t[3];
                float a_r = ar[k], a_i = ai[k], b_r = ar[k + L], b_i = ai[k + L];
                float c_r = ar[k + 2 * L], c_i = ai[k + 2 * L], d_r = ar[k + 3 * L], d_i = ai[k + 3 * L];
                float wb_r = b_r * wr - b_i * wi, wb_i = b_r * wi + b_i * wr;
                float wd_r = d_r * wr - d_i * wi, wd_i = d_r * wi + d_i * wr;
                float a2_r = a_r + wb_r, a2_i = a_i + wb_i, b2_r = a_r - wb_r, b2_i = a_i - wb_i;
                float c2_r = c_r + wd_r, c2_i = c_i + wd_i, d2_r = c_r - wd_r, d2_i = c_i - wd_i;
                float vc_r = c2_r * vr - c2_i * vi, vc_i = c2_r * vi + c2_i * vr;
                float vd_r = d2_r * vr - d2_i * vi, vd_i = d2_r * vi + d2_i * vr; /* then times -i */
                ar[k] = a2_r + vc_r;
                ai[k] = a2_i + vc_i;
                ar[k + 2 * L] = a2_r - vc_r;
                ai[k + 2 * L] = a2_i - vc_i;
                ar[k + L] = b2_r + vd_i;
                ai[k + L] = b2_i - vd_r;
                ar[k + 3 * L] = b2_r - vd_i;
                ai[k + 3 * L] = b2_i + vd_r;
            }
        }
        w += 4 * L;
    }
    if (2 * size == n) { /* one radix-2 stage left: length n / 2 -> n */
        int k, L = size;
        for (k = 0; k < L; k++) {
            float wr = w[2 * k], wi = w[2 * k + 1];
            float tr = re[k + L] * wr - im[k + L] * wi, ti = re[k + L] * wi + im[k + L] * wr;
            re[k + L] = re[k] - tr;
            im[k + L] = im[k] - ti;
            re[k] += tr;
            im[k] += ti;
        }
    }
}

static void frame_to_logmel(lem_mcu_frontend *fe, float *out) {
    const lem_mcu_frontend_config *c = &fe->config;
    int half = fe->half, n, k, m;
    const float *w = fe->mel_weight;
    /* z[n] = x[2n] + i x[2n+1], windowed, zero-padded, stored at the FFT's bit-reversed index */
    for (n = 0; 2 * n + 1 < c->win_length; n++) {
        int r = fe->bit_reverse[n];
        fe->re[r] = (float)fe->held[2 * n] * fe->window[2 * n];
        fe->im[r] = (float)fe->held[2 * n + 1] * fe->window[2 * n + 1];
    }
    for (; n < half; n++) {
        int r = fe->bit_reverse[n];
        fe->re[r] = 2 * n < c->win_length ? (float)fe->held[2 * n] * fe->window[2 * n] : 0.0f;
        fe->im[r] = 0.0f;
    }
    complex_fft(fe);
    /* the real spectrum from the half-length complex one: X[k] = E[k] + W^k O[k], E and O from Z[k], Z[half-k] */
    fe->power[0] = (fe->re[0] + fe->im[0]) * (fe->re[0] + fe->im[0]);
    fe->power[half] = (fe->re[0] - fe->im[0]) * (fe->re[0] - fe->im[0]);
    for (k = 1; 2 * k <= half; k++) { /* bins k and half - k share E and O (up to signs) */
        float zr = fe->re[k], zi = fe->im[k], cr = fe->re[half - k], ci = fe->im[half - k];
        float er = 0.5f * (zr + cr), ei = 0.5f * (zi - ci), orr = 0.5f * (zi + ci), oi = -0.5f * (zr - cr);
        float wr = fe->split[2 * k], wi = fe->split[2 * k + 1];
        float xr = er + wr * orr - wi * oi, xi = ei + wr * oi + wi * orr;
        fe->power[k] = xr * xr + xi * xi;
        wr = fe->split[2 * (half - k)];
        wi = fe->split[2 * (half - k) + 1];
        xr = er + wr * orr + wi * oi;
        xi = wi * orr - ei - wr * oi;
        fe->power[half - k] = xr * xr + xi * xi;
    }
    for (m = 0; m < c->n_mels; m++) {
        float sum = 0.0f;
        const float *p = fe->power + fe->mel_first[m];
        for (k = 0; k < fe->mel_count[m]; k++) sum += p[k] * w[k];
        w += fe->mel_count[m];
        out[m] = fast_log(sum > fe->log_floor ? sum : fe->log_floor);
    }
}

long lem_mcu_frontend_push(lem_mcu_frontend *fe, const int16_t *pcm, size_t n_samples, float *features,
                           size_t max_frames) {
    size_t i = 0, written = 0, needed, win, hop, fill, skip;
    if (fe == NULL || (n_samples > 0 && (pcm == NULL || features == NULL))) return LEM_MCU_ERR_ARGUMENT;
    win = (size_t)fe->config.win_length;
    hop = (size_t)fe->config.hop_length;
    /* frames this push completes: as the push loop below counts them */
    fill = (size_t)fe->fill;
    skip = (size_t)fe->skip;
    needed = 0;
    if (n_samples > skip) {
        size_t avail = fill + n_samples - skip;
        if (avail >= win) needed = (avail - win) / hop + 1;
    }
    if (needed > max_frames) return LEM_MCU_ERR_ARGUMENT;
    while (i < n_samples) {
        size_t take;
        if (fe->skip > 0) {
            take = n_samples - i < (size_t)fe->skip ? n_samples - i : (size_t)fe->skip;
            fe->skip -= (int)take;
            i += take;
            continue;
        }
        take = win - (size_t)fe->fill;
        if (take > n_samples - i) take = n_samples - i;
        memcpy(fe->held + fe->fill, pcm + i, take * sizeof(int16_t));
        fe->fill += (int)take;
        i += take;
        if ((size_t)fe->fill == win) {
            frame_to_logmel(fe, features + written * (size_t)fe->config.n_mels);
            written++;
            if (hop < win) {
                memmove(fe->held, fe->held + hop, (win - hop) * sizeof(int16_t));
                fe->fill = (int)(win - hop);
            } else {
                fe->fill = 0;
                fe->skip = (int)(hop - win);
            }
        }
    }
    return (long)written;
}

/* ================================================================================================ detector */
static long round_half_even(double v) {
    double f = floor(v), d = v - f;
    long r = (long)f;
    if (d > 0.5 || (d == 0.5 && (r & 1))) r++;
    return r;
}

int lem_mcu_detector_init(lem_mcu_detector *d, const lem_mcu_detector_config *c) {
    int i;
    double hop_s;
    long lookback;
    if (d == NULL || c == NULL || c->labels == NULL) return LEM_MCU_ERR_ARGUMENT;
    if (c->n_labels <= 0 || c->n_labels > LEM_MCU_MAX_LABELS || !(c->threshold > 0.0f && c->threshold < 1.0f)
        || c->smoothing_frames < 1 || c->sample_rate <= 0 || c->hop_length <= 0 || c->win_length <= 0
        || !(c->refractory_s >= 0.0f) || !(c->lookback_s >= 0.0f) || !(c->max_event_s > 0.0f))
        return LEM_MCU_ERR_CONFIG;
    memset(d, 0, sizeof *d);
    d->config = *c;
    hop_s = (double)c->hop_length / (double)c->sample_rate;
    d->refractory_frames = round_half_even((double)c->refractory_s / hop_s);
    lookback = round_half_even((double)c->lookback_s / hop_s) + 1;
    while ((double)d->max_event_frames * hop_s < (double)c->max_event_s) d->max_event_frames++;
    d->capacity = lookback > c->smoothing_frames ? lookback : c->smoothing_frames;
    if (d->capacity * c->n_labels > LEM_MCU_MAX_HISTORY_VALUES) return LEM_MCU_ERR_CONFIG;
    for (i = 0; i < c->n_labels; i++)
        d->is_keyword[i] = strcmp(c->labels[i], "_silence_") != 0 && strcmp(c->labels[i], "_unknown_") != 0;
    lem_mcu_detector_reset(d);
    return LEM_MCU_OK;
}

void lem_mcu_detector_reset(lem_mcu_detector *d) {
    if (d == NULL) return;
    d->history_len = 0;
    d->history_next = 0;
    d->frame = 0;
    d->open = 0;
    d->quiet_until = -1;
}

static const float *history_row(const lem_mcu_detector *d, long back) {
    long index = (d->history_next + d->capacity - 1 - back) % d->capacity;
    return d->history + index * d->config.n_labels;
}

/* Frame f ends at (f * hop + win) / sample_rate s; in ms, rounded (half up, on exact integers) */
static long frame_end_ms(const lem_mcu_detector *d, long frame) {
    long samples = frame * d->config.hop_length + d->config.win_length;
    return (samples * 1000 + d->config.sample_rate / 2) / d->config.sample_rate;
}

static void close_detection(lem_mcu_detector *d, long frame, lem_mcu_detection *out) {
    long onset_ms = (d->onset * d->config.hop_length * 1000 + d->config.sample_rate / 2) / d->config.sample_rate;
    d->open = 0;
    d->quiet_until = frame + d->refractory_frames;
    out->label_index = d->open_index;
    out->label = d->config.labels[d->open_index];
    out->start_ms = onset_ms > 0 ? onset_ms : 0;
    out->end_ms = frame_end_ms(d, frame);
    out->score = d->open_score;
}


int lem_mcu_detector_push(lem_mcu_detector *d, const float *x, lem_mcu_detection *detection) {
    int n = d->config.n_labels, i, best = -1;
    long smoothing = d->config.smoothing_frames, rows, back, frame;
    float *row = d->history + d->history_next * n, best_value = 0.0f;
    float mean[LEM_MCU_MAX_LABELS];
    if (d->config.scores_are_logits) {
        float top = x[0], sum = 0.0f, inv;
        for (i = 1; i < n; i++) top = x[i] > top ? x[i] : top;
        for (i = 0; i < n; i++) {
            row[i] = lem_fast_exp(x[i] - top);
            sum += row[i];
        }
        inv = 1.0f / sum;
        for (i = 0; i < n; i++) row[i] *= inv;
    } else {
        for (i = 0; i < n; i++) row[i] = x[i];
    }
    d->history_next = (d->history_next + 1) % d->capacity;
    if (d->history_len < d->capacity) d->history_len++;
    rows = d->history_len < smoothing ? d->history_len : smoothing;
    for (i = 0; i < n; i++) mean[i] = 0.0f;
    for (back = 0; back < rows; back++) { /* summed afresh each frame: no drift from a running sum */
        const float *r = history_row(d, back);
        for (i = 0; i < n; i++) mean[i] += r[i];
    }
    for (i = 0; i < n; i++) mean[i] /= (float)rows;
    frame = d->frame++;
    if (d->open) {
        float score = mean[d->open_index];
        if (score > d->open_score) d->open_score = score;
        if (score < d->config.threshold || frame - d->opened >= d->max_event_frames) {
            close_detection(d, frame, detection);
            return 1;
        }
        return 0;
    }
    if (frame < d->quiet_until) return 0;
    for (i = 0; i < n; i++) {
        if (!d->is_keyword[i]) continue;
        if (best < 0 || mean[i] > best_value) {
            best = i;
            best_value = mean[i];
        }
    }
    if (best >= 0 && best_value >= d->config.threshold) {
        d->open = 1;
        d->open_index = best;
        d->opened = frame;
        d->open_score = best_value;
        d->onset = frame;
        for (back = 0; back < d->history_len; back++) {
            if (history_row(d, back)[best] < d->config.onset_level) break;
            d->onset = frame - back;
        }
    }
    return 0;
}

int lem_mcu_detector_flush(lem_mcu_detector *d, lem_mcu_detection *detection) {
    if (d == NULL || detection == NULL || !d->open) return 0;
    close_detection(d, d->frame - 1, detection);
    return 1;
}
