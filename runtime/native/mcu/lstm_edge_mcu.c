/* lstm_edge_mcu: int8 model over const weights, no heap (see lstm_edge_mcu.h). */
#include "lstm_edge_mcu.h"

#include <string.h>

#if defined(__GNUC__) /* inlined: the gates call exp five times per unit (out of line gcc 12 costs ~7k insns) */
#define LEM_COMMON_INLINE static inline __attribute__((always_inline))
#endif
#include "../lstm_edge_common.h"

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
#define LEM_MCU_KERNEL "helium"
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define LEM_MCU_KERNEL "dsp"
#define LEM_MCU_PAIRS 1 /* the quantized vector is also kept as 16-bit pairs for SMLAD */
#else
#define LEM_MCU_KERNEL "portable"
#endif

const char *lem_mcu_kernel_name(void) { return LEM_MCU_KERNEL; }

#if defined(LEM_MCU_PAIRS)
#define LEM_MCU_STRIDE_UNIT 8 /* the SMLAD loop takes 8 columns a turn */
uint32_t lem_mcu_kernel_layout(void) { return 4; }
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define LEM_MCU_STRIDE_UNIT 16 /* one Helium vector */
uint32_t lem_mcu_kernel_layout(void) { return 0; }
#else
#define LEM_MCU_STRIDE_UNIT 1
uint32_t lem_mcu_kernel_layout(void) { return 0; }
#endif

static size_t padded(size_t n) { return (n + LEM_MCU_PAD - 1) / LEM_MCU_PAD * LEM_MCU_PAD; }

/* ----------------------------------------------------------------------------------------------- kernels */
/* Round to nearest (ties to even) for |v| < 2^22 with IEEE float arithmetic, as lstm_edge_kernels.c does. */
static float round_near(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

#ifndef LEM_MCU_PAIRS
/* q[:n] = round(v / s), s = max|v| / 127; returns s (0 for an all-zero vector): lstm_edge_kernels.c's quantize for
 * finite v (a push refuses non-finite input; layers keep values finite or the push reports it). */
static float quantize(const float *v, size_t n, int8_t *q) {
    size_t i;
    uint32_t top = 0, bits;
    float peak, inv;
    for (i = 0; i < n; i++) { /* max |v| on the bit patterns: for finite floats their order is the values' order */
        memcpy(&bits, v + i, sizeof bits);
        bits &= 0x7fffffffu;
        top = bits > top ? bits : top;
    }
    memcpy(&peak, &top, sizeof peak);
    if (peak == 0.0f) return 0.0f;
    inv = 127.0f / peak;
    for (i = 0; i < n; i++) q[i] = (int8_t)(int)round_near(v[i] * inv);
    return peak / 127.0f;
}
#endif

#ifdef LEM_MCU_PAIRS
/* quantize's values, written straight as 16-bit pairs: values 4k..4k+3 -> words (q0, q2) and (q1, q3), what
 * SXTB16 makes of a weight word and of the same word rotated by 8 bits; zeros from n up to stride. */
static float quantize_pairs(const float *v, size_t n, size_t stride, int32_t *pairs) {
    size_t i, k;
    uint32_t top = 0, bits;
    float peak, inv;
    for (i = 0; i < n; i++) {
        memcpy(&bits, v + i, sizeof bits);
        bits &= 0x7fffffffu;
        top = bits > top ? bits : top;
    }
    memcpy(&peak, &top, sizeof peak);
    if (peak == 0.0f) return 0.0f;
    inv = 127.0f / peak;
    for (i = 0; i + 4 <= n; i += 4) {
        int32_t q0 = (int)round_near(v[i] * inv), q1 = (int)round_near(v[i + 1] * inv);
        int32_t q2 = (int)round_near(v[i + 2] * inv), q3 = (int)round_near(v[i + 3] * inv);
        pairs[i / 2] = (int32_t)(((uint32_t)q0 & 0xffffu) | ((uint32_t)q2 << 16));
        pairs[i / 2 + 1] = (int32_t)(((uint32_t)q1 & 0xffffu) | ((uint32_t)q3 << 16));
    }
    if (i < n) {
        int32_t q[4] = {0, 0, 0, 0};
        for (k = 0; i + k < n; k++) q[k] = (int)round_near(v[i + k] * inv);
        pairs[i / 2] = (int32_t)(((uint32_t)q[0] & 0xffffu) | ((uint32_t)q[2] << 16));
        pairs[i / 2 + 1] = (int32_t)(((uint32_t)q[1] & 0xffffu) | ((uint32_t)q[3] << 16));
        i += 4;
    }
    for (; i < stride; i += 4) pairs[i / 2] = pairs[i / 2 + 1] = 0;
    return peak / 127.0f;
}
#endif

#if defined(LEM_MCU_PAIRS)
static uint32_t load_word(const int8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Bytes 1 and 3 of a word as signed 16-bit halves: SXTB16 with its rotation (ACLE's __sxtb16 has none, and GCC 12
 * does not fold a separate rotate into it). */
static inline int32_t sxtb16_ror8(uint32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* Four bytes of a row against the matching two words of 16-bit pairs: SXTB16 splits the word into bytes 0, 2
 * and (rotated by 8) 1, 3; two SMLADs add the four exact products. */
#define LEM_MCU_MAC4(acc, word, xa, xb) \
    acc = __smlad(sxtb16_ror8(word), xb, __smlad(__sxtb16((int32_t)(word)), xa, acc))
#endif

/* y[r] += x_scale * scale[r] * dot(W[r], q) for every row: the exact int32 dot products of the int8 rows and the
 * quantized vector (stride values), then lstm_edge_kernels.c's float expression. */
static void rows_i8(const lem_mcu_matrix *m, const int8_t *x, const int32_t *pairs, float x_scale, float *y) {
    uint32_t r = 0;
    size_t c, stride = m->stride;
#if defined(LEM_MCU_PAIRS)
    (void)x;
    if (m->layout == 4) {
        const int8_t *w = m->q;
        for (; r + 4 <= m->rows; r += 4) { /* a block of four rows, read in one sequential pass */
            const int32_t *xp = pairs, *end = pairs + stride / 2;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#if defined(__GNUC__)
            /* The same SXTB16 / SMLAD sequence as LEM_MCU_MAC4, scheduled by hand: GCC 12 spills the four
             * accumulators of the C loop and spends ~1.6 instructions per MAC; this loop takes 40 instructions
             * for 32 MACs (per 16: one LDRD of the vector, two of the block, 8 SXTB16, 8 SMLAD; then compare and
             * branch). A turn covers 8 columns: stride is a multiple of 16. */
            uint32_t t0, t1, u;
            int32_t xa, xb;
            __asm__ volatile(
                "1:\n\t"
                "ldrd %[xa], %[xb], [%[xp]], #8\n\t"
                "ldrd %[t0], %[t1], [%[w]], #8\n\t"
                "sxtb16 %[u], %[t0]\n\tsmlad %[a0], %[u], %[xa], %[a0]\n\t"
                "sxtb16 %[u], %[t0], ror #8\n\tsmlad %[a0], %[u], %[xb], %[a0]\n\t"
                "sxtb16 %[u], %[t1]\n\tsmlad %[a1], %[u], %[xa], %[a1]\n\t"
                "sxtb16 %[u], %[t1], ror #8\n\tsmlad %[a1], %[u], %[xb], %[a1]\n\t"
                "ldrd %[t0], %[t1], [%[w]], #8\n\t"
                "sxtb16 %[u], %[t0]\n\tsmlad %[a2], %[u], %[xa], %[a2]\n\t"
                "sxtb16 %[u], %[t0], ror #8\n\tsmlad %[a2], %[u], %[xb], %[a2]\n\t"
                "sxtb16 %[u], %[t1]\n\tsmlad %[a3], %[u], %[xa], %[a3]\n\t"
                "sxtb16 %[u], %[t1], ror #8\n\tsmlad %[a3], %[u], %[xb], %[a3]\n\t"
                "ldrd %[xa], %[xb], [%[xp]], #8\n\t"
                "ldrd %[t0], %[t1], [%[w]], #8\n\t"
                "sxtb16 %[u], %[t0]\n\tsmlad %[a0], %[u], %[xa], %[a0]\n\t"
                "sxtb16 %[u], %[t0], ror #8\n\tsmlad %[a0], %[u], %[xb], %[a0]\n\t"
                "sxtb16 %[u], %[t1]\n\tsmlad %[a1], %[u], %[xa], %[a1]\n\t"
                "sxtb16 %[u], %[t1], ror #8\n\tsmlad %[a1], %[u], %[xb], %[a1]\n\t"
                "ldrd %[t0], %[t1], [%[w]], #8\n\t"
                "sxtb16 %[u], %[t0]\n\tsmlad %[a2], %[u], %[xa], %[a2]\n\t"
                "sxtb16 %[u], %[t0], ror #8\n\tsmlad %[a2], %[u], %[xb], %[a2]\n\t"
                "sxtb16 %[u], %[t1]\n\tsmlad %[a3], %[u], %[xa], %[a3]\n\t"
                "sxtb16 %[u], %[t1], ror #8\n\tsmlad %[a3], %[u], %[xb], %[a3]\n\t"
                "cmp %[xp], %[end]\n\t"
                "bne 1b"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [t0] "=&r"(t0), [t1] "=&r"(t1),
                  [u] "=&r"(u), [xa] "=&r"(xa), [xb] "=&r"(xb), [xp] "+r"(xp), [w] "+r"(w)
                : [end] "r"(end)
                : "cc", "memory");
#else
            while (xp < end) {
                int32_t xa = xp[0], xb = xp[1];
                uint32_t t0 = load_word(w), t1 = load_word(w + 4), t2 = load_word(w + 8), t3 = load_word(w + 12);
                LEM_MCU_MAC4(a0, t0, xa, xb);
                LEM_MCU_MAC4(a1, t1, xa, xb);
                LEM_MCU_MAC4(a2, t2, xa, xb);
                LEM_MCU_MAC4(a3, t3, xa, xb);
                w += 16;
                xp += 2;
            }
#endif
            y[r] += x_scale * m->scale[r] * (float)a0;
            y[r + 1] += x_scale * m->scale[r + 1] * (float)a1;
            y[r + 2] += x_scale * m->scale[r + 2] * (float)a2;
            y[r + 3] += x_scale * m->scale[r + 3] * (float)a3;
        }
    }
    for (; r < m->rows; r++) {
        const int8_t *w = m->q + (size_t)r * stride;
        int32_t acc = 0;
        for (c = 0; c < stride; c += 4) LEM_MCU_MAC4(acc, load_word(w + c), pairs[c / 2], pairs[c / 2 + 1]);
        y[r] += x_scale * m->scale[r] * (float)acc;
    }
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
    (void)pairs;
    for (; r + 4 <= m->rows; r += 4) { /* four rows share each load of the vector */
        const int8_t *w0 = m->q + (size_t)r * stride, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (c = 0; c < stride; c += 16) {
            int8x16_t xv = vld1q_s8(x + c);
            a0 = vmladavaq_s8(a0, vld1q_s8(w0 + c), xv);
            a1 = vmladavaq_s8(a1, vld1q_s8(w1 + c), xv);
            a2 = vmladavaq_s8(a2, vld1q_s8(w2 + c), xv);
            a3 = vmladavaq_s8(a3, vld1q_s8(w3 + c), xv);
        }
        y[r] += x_scale * m->scale[r] * (float)a0;
        y[r + 1] += x_scale * m->scale[r + 1] * (float)a1;
        y[r + 2] += x_scale * m->scale[r + 2] * (float)a2;
        y[r + 3] += x_scale * m->scale[r + 3] * (float)a3;
    }
    for (; r < m->rows; r++) {
        const int8_t *w = m->q + (size_t)r * stride;
        int32_t acc = 0;
        for (c = 0; c < stride; c += 16) acc = vmladavaq_s8(acc, vld1q_s8(w + c), vld1q_s8(x + c));
        y[r] += x_scale * m->scale[r] * (float)acc;
    }
#else
    (void)pairs;
    for (; r < m->rows; r++) {
        const int8_t *w = m->q + (size_t)r * stride;
        int32_t acc = 0;
        for (c = 0; c < stride; c++) acc += (int32_t)w[c] * (int32_t)x[c];
        y[r] += x_scale * m->scale[r] * (float)acc;
    }
#endif
}

/* y[:rows] += W v with v quantized first (skipped for an all-zero v, as lstm_edge_model.c skips it). */
static void matvec(lem_mcu_stream *s, const lem_mcu_matrix *m, const float *v, float *y) {
#ifdef LEM_MCU_PAIRS
    float xs = quantize_pairs(v, m->cols, m->stride, s->quant16);
    if (xs != 0.0f) rows_i8(m, NULL, s->quant16, xs, y);
#else
    float xs = quantize(v, m->cols, s->quant);
    if (xs == 0.0f) return;
    memset(s->quant + m->cols, 0, m->stride - m->cols);
    rows_i8(m, s->quant, NULL, xs, y);
#endif
}

/* ----------------------------------------------------------------------------------------------- streams */
size_t lem_mcu_arena_bytes(const lem_mcu_model *m) {
    size_t i, floats;
    if (m == NULL) return 0;
    /* state, buffers, gates, the widest LSTM's h (at most max_gates / 4); then the quantized vector (bytes) and,
     * for the DSP kernels, its 16-bit pairs (two bytes per value) */
    floats = m->state_size + m->max_gates + LEM_MCU_PAD + padded(m->max_gates / 4);
    for (i = 0; i < m->n_buffers; i++) floats += padded(m->widths[i]);
    return floats * sizeof(float) + m->n_buffers * sizeof(float *) + 3 * (size_t)m->max_stride;
}

int lem_mcu_stream_init(lem_mcu_stream *s, const lem_mcu_model *m, void *arena, size_t arena_bytes) {
    uint8_t *p = (uint8_t *)arena;
    size_t i;
    if (s == NULL || m == NULL || arena == NULL || (uintptr_t)arena % sizeof(void *) != 0) return LEM_MCU_ERR_ARGUMENT;
    if (arena_bytes < lem_mcu_arena_bytes(m)) return LEM_MCU_ERR_ARENA;
    for (i = 0; i < 2 * (size_t)m->n_layers; i++) { /* weights written for other kernels: rebuild for this core */
        const lem_mcu_matrix *w = &m->layers[i / 2].w[i % 2];
        if (w->q != NULL && (w->layout != lem_mcu_kernel_layout() || w->stride % LEM_MCU_STRIDE_UNIT != 0))
            return LEM_MCU_ERR_ARGUMENT;
    }
    s->model = m;
    s->buffers = (float **)(void *)p;
    p += m->n_buffers * sizeof(float *);
    s->state = (float *)(void *)p;
    p += m->state_size * sizeof(float);
    for (i = 0; i < m->n_buffers; i++) {
        s->buffers[i] = (float *)(void *)p;
        memset(p, 0, padded(m->widths[i]) * sizeof(float));
        p += padded(m->widths[i]) * sizeof(float);
    }
    s->gates = (float *)(void *)p;
    p += (m->max_gates + LEM_MCU_PAD) * sizeof(float);
    s->hidden = (float *)(void *)p;
    p += padded(m->max_gates / 4) * sizeof(float);
    s->quant16 = (int32_t *)(void *)p;
    p += 2 * m->max_stride;
    s->quant = (int8_t *)p;
    lem_mcu_stream_reset(s);
    return LEM_MCU_OK;
}

void lem_mcu_stream_reset(lem_mcu_stream *s) {
    if (s == NULL) return;
    if (s->model->initial_state != NULL)
        memcpy(s->state, s->model->initial_state, s->model->state_size * sizeof(float));
    else
        memset(s->state, 0, s->model->state_size * sizeof(float));
}


/* One LSTM frame (torch gate order i, f, g, o): gates = b + W_ih x + W_hh h, in lstm_edge_model.c's order. */
static void run_lstm(lem_mcu_stream *s, const lem_mcu_layer *o, const float *in, float *out) {
    uint32_t h = o->p[0], j;
    float *state_h = s->state + o->p[1], *c = s->state + o->p[2], *g = s->gates, *hidden = s->hidden;
    memcpy(g, o->vec[0], 4 * h * sizeof(float));
    matvec(s, &o->w[0], in, g);
    memcpy(hidden, state_h, h * sizeof(float));
    matvec(s, &o->w[1], hidden, g);
    for (j = 0; j < h; j++) {
        float i_gate = lem_fast_sigmoid(g[j]), f_gate = lem_fast_sigmoid(g[h + j]);
        float g_gate = lem_fast_tanh(g[2 * h + j]), o_gate = lem_fast_sigmoid(g[3 * h + j]);
        c[j] = f_gate * c[j] + i_gate * g_gate;
        hidden[j] = o_gate * lem_fast_tanh(c[j]);
    }
    memcpy(out, hidden, h * sizeof(float));
    memcpy(state_h, hidden, h * sizeof(float));
}

int lem_mcu_stream_push(lem_mcu_stream *s, const float *x, float *y) {
    const lem_mcu_model *m;
    uint32_t i, j;
    if (s == NULL || x == NULL || y == NULL) return LEM_MCU_ERR_ARGUMENT;
    m = s->model;
    if (!lem_all_finite(x, m->input_width)) return LEM_MCU_ERR_NONFINITE;
    memcpy(s->buffers[0], x, m->input_width * sizeof(float));
    for (i = 0; i < m->n_layers; i++) {
        const lem_mcu_layer *o = &m->layers[i];
        const float *in = s->buffers[o->in0];
        float *out = s->buffers[o->out];
        uint32_t w = m->widths[o->out];
        switch (o->type) {
            case LEM_MCU_LINEAR:
                memcpy(out, o->vec[0], w * sizeof(float));
                matvec(s, &o->w[0], in, out);
                break;
            case LEM_MCU_AFFINE:
                for (j = 0; j < w; j++) out[j] = in[j] * o->vec[0][j] + o->vec[1][j];
                break;
            case LEM_MCU_ADD:
                for (j = 0; j < w; j++) out[j] = in[j] + s->buffers[o->in1][j];
                break;
            case LEM_MCU_ACT:
                for (j = 0; j < w; j++) {
                    float v = in[j];
                    out[j] = o->p[0] == LEM_MCU_RELU ? (v > 0.0f ? v : 0.0f)
                             : o->p[0] == LEM_MCU_TANH ? lem_fast_tanh(v) : lem_fast_sigmoid(v);
                }
                break;
            case LEM_MCU_LSTM:
                run_lstm(s, o, in, out);
                break;
            default:
                return LEM_MCU_ERR_ARGUMENT;
        }
    }
    memcpy(y, s->buffers[m->output_buffer], m->output_width * sizeof(float));
    return lem_all_finite(y, m->output_width) ? LEM_MCU_OK : LEM_MCU_ERR_NONFINITE;
}
