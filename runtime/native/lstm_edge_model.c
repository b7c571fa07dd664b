/*
 * lstm_edge_model: reader of the C weight file and the layers it lists (see lstm_edge_model.h and
 * docs/manifest.md, "C weight file").
 */
#include "lstm_edge_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lstm_edge_common.h"
#include "lstm_edge_kernels.h"

enum { OP_LINEAR = 1, OP_AFFINE = 2, OP_ADD = 3, OP_ACT = 4, OP_LSTM = 5, OP_GRU = 6, OP_EMBED = 7,
       OP_LAYERNORM = 8, OP_LSTM_PROJ = 9, OP_CONV = 10, OP_GATHER = 11, OP_MUL = 12, OP_CONTEXT = 13,
       OP_POOL = 14 };
enum { ACT_RELU = 1, ACT_TANH = 2, ACT_SIGMOID = 3, ACT_SOFTMAX = 4, ACT_LOG_SOFTMAX = 5, ACT_SQRT = 6, ACT_ERF = 7,
       ACT_GELU = 8 };
enum { POOL_MAX = 1, POOL_AVERAGE = 2, POOL_AVERAGE_WITH_PADDING = 3 };
enum { DTYPE_F32 = 0, DTYPE_I8 = 1 };

#define HEADER_BYTES 64
#define MAX_BUFFERS 4096
#define MAX_OPS 4096
#define MAX_STATES 1024
#define MAX_DIM (1u << 24)
#define LEM_GATHER_ZERO 0xffffffffu

typedef struct {
    size_t rows, cols, stride; /* stride: cols rounded up to LEM_PAD */
    float *f;                  /* float32 values (rows x stride), or NULL */
    int8_t *q;                 /* int8 values (rows x stride), or NULL */
    float *scale;              /* int8: one scale per row */
    int packed;                /* f or q is in the kernels' packed layout (read by matvec only) */
} matrix;

typedef struct {
    uint32_t type, in0, in1, out;
    uint32_t p[6];
    uint32_t *index; /* gather: the source value of each output value (LEM_GATHER_ZERO: a zero) */
    uint32_t x[6]; /* causal conv: features in, kernel, stride, padding and dilation along features, features out */
    matrix m[4];
} op;

typedef struct {
    char *name;
    size_t offset, size;
} state_spec;

struct lem_model {
    const lem_kernels *kernels;
    int int8;
    uint32_t file_version; /* layer types 9 and 10 need version 2; 11 to 14 and float matrices in int8 files 3 */
    lem_input_kind input_kind;
    size_t input_width, output_width, output_buffer;
    size_t n_buffers, n_states, n_ops, state_size;
    size_t *widths;
    state_spec *states;
    float *initial_state;
    op *ops;
    size_t max_gates, max_hidden, max_stride; /* scratch sizes */
    size_t max_context, max_frame, max_patch, max_group_out; /* causal conv scratch: floats */
    size_t vocabulary;                        /* token-id models: rows of the embedding */
    char *metadata;                           /* "key=value" lines (labels, frontend, detector), or "" */
    size_t bytes;
};

struct lem_stream {
    const lem_model *model;
    size_t max_chunk;
    float *state, *backup;
    float **buffers; /* n_buffers of [max_chunk, stride] */
    float *gates;    /* [max_chunk, max_gates] */
    float *hidden;   /* [2 x max_hidden padded]: h, and a projected LSTM's unprojected o * tanh(c) */
    float *gates_h;  /* [max_gates] */
    int8_t *quant;   /* [max_stride] */
    int8_t *quant_chunk;  /* int8 models: [max_chunk, max_stride], every frame of a chunk quantized */
    float *quant_scales;  /* [max_chunk]: their scales */
    int32_t *ids;    /* [max_chunk] */
    float *window;   /* causal conv: carried + new frames */
    float *patch;    /* causal conv: one output's receptive field */
    float *conv_out; /* causal conv: one group's outputs */
};

static char last_error[256] = "";

static int fail(int status, int *out, const char *message) {
    if (message != NULL) snprintf(last_error, sizeof last_error, "%s", message);
    if (out != NULL) *out = status;
    return status;
}

const char *lem_last_error(void) { return last_error; }

const char *lem_kernel_name(void) { return lem_kernels_select()->name; }

const char *lem_status_string(int status) {
    switch (status) {
        case LEM_OK: return "ok";
        case LEM_ERR_ARGUMENT: return "bad argument (NULL pointer, zero count or wrong input kind)";
        case LEM_ERR_FORMAT: return "not a valid lstm-edge C weight file";
        case LEM_ERR_TRUNCATED: return "the C weight file is truncated";
        case LEM_ERR_CHECKSUM: return "the C weight file's checksum does not match (corrupt file)";
        case LEM_ERR_NO_MEMORY: return "out of memory";
        case LEM_ERR_NONFINITE_INPUT: return "the input chunk holds NaN or inf";
        case LEM_ERR_NONFINITE_RESULT: return "the output or new state would hold NaN or inf";
        case LEM_ERR_IO: return "the C weight file cannot be read";
        default: return "unknown status";
    }
}

/* ----------------------------------------------------------------------------------------------- reading */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    int error;
} reader;

static uint32_t read_u32(reader *r) {
    uint32_t v;
    if (r->error) return 0;
    if (r->size - r->pos < 4) {
        r->error = LEM_ERR_TRUNCATED;
        return 0;
    }
    v = (uint32_t)r->data[r->pos] | ((uint32_t)r->data[r->pos + 1] << 8) | ((uint32_t)r->data[r->pos + 2] << 16)
        | ((uint32_t)r->data[r->pos + 3] << 24);
    r->pos += 4;
    return v;
}

static float read_f32(reader *r) {
    uint32_t bits = read_u32(r);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static const uint8_t *read_bytes(reader *r, size_t n) {
    const uint8_t *p;
    if (r->error) return NULL;
    if (r->size - r->pos < n) {
        r->error = LEM_ERR_TRUNCATED;
        return NULL;
    }
    p = r->data + r->pos;
    r->pos += (n + 3u) & ~(size_t)3u; /* records are 4-byte aligned */
    if (r->pos > r->size) r->pos = r->size;
    return p;
}

static uint32_t crc32_of(const uint8_t *data, size_t n) {
    uint32_t table[256], crc = 0xffffffffu;
    uint32_t i, k;
    size_t j;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (k = 0; k < 8; k++) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    for (j = 0; j < n; j++) crc = table[(crc ^ data[j]) & 0xffu] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static size_t padded(size_t n) { return (n + LEM_PAD - 1) / LEM_PAD * LEM_PAD; }

static void *aligned_zeros(size_t bytes) {
    /* 64-byte aligned, zeroed; the pointer before the block keeps what malloc returned */
    uint8_t *raw = (uint8_t *)calloc(bytes + 64 + sizeof(void *), 1), *p;
    if (raw == NULL) return NULL;
    p = (uint8_t *)(((uintptr_t)(raw + sizeof(void *)) + 63u) & ~(uintptr_t)63u);
    memcpy(p - sizeof(void *), &raw, sizeof raw);
    return p;
}

static void aligned_free(void *p) {
    void *raw;
    if (p == NULL) return;
    memcpy(&raw, (uint8_t *)p - sizeof(void *), sizeof raw);
    free(raw);
}

/* One tensor record: dtype, rows, cols, values, int8 scales. Checks the expected shape (0: any). */
static int read_matrix(reader *r, matrix *m, size_t rows, size_t cols, const char *what, size_t *bytes) {
    uint32_t dtype = read_u32(r), nr = read_u32(r), nc = read_u32(r);
    size_t i;
    const uint8_t *values, *scales = NULL;
    if (r->error) return r->error;
    if (dtype > DTYPE_I8 || nr == 0 || nc == 0 || nr > MAX_DIM || nc > MAX_DIM || (rows && nr != rows)
        || (cols && nc != cols)) {
        snprintf(last_error, sizeof last_error, "%s: expected a [%lu, %lu] tensor, got dtype %lu [%lu, %lu]", what,
                 (unsigned long)rows, (unsigned long)cols, (unsigned long)dtype, (unsigned long)nr,
                 (unsigned long)nc);
        return LEM_ERR_FORMAT;
    }
    m->rows = nr;
    m->cols = nc;
    m->stride = padded(nc);
    values = read_bytes(r, (size_t)nr * nc * (dtype == DTYPE_F32 ? 4u : 1u));
    if (dtype == DTYPE_I8) scales = read_bytes(r, (size_t)nr * 4u);
    if (r->error) return r->error;
    if (dtype == DTYPE_F32) {
        m->f = (float *)aligned_zeros(nr * m->stride * sizeof(float));
        if (m->f == NULL) return LEM_ERR_NO_MEMORY;
        for (i = 0; i < nr; i++) memcpy(m->f + i * m->stride, values + i * nc * 4u, nc * 4u);
        *bytes += nr * m->stride * sizeof(float);
    } else {
        m->q = (int8_t *)aligned_zeros(nr * m->stride);
        m->scale = (float *)aligned_zeros(nr * sizeof(float));
        if (m->q == NULL || m->scale == NULL) return LEM_ERR_NO_MEMORY;
        for (i = 0; i < nr; i++) memcpy(m->q + i * m->stride, values + i * nc, nc);
        memcpy(m->scale, scales, nr * 4u);
        *bytes += nr * m->stride + nr * sizeof(float);
        for (i = 0; i < nr * m->stride; i++) {
            if (m->q[i] == -128) {
                snprintf(last_error, sizeof last_error, "%s: int8 weights must lie in [-127, 127]", what);
                return LEM_ERR_FORMAT;
            }
        }
    }
    /* little-endian hosts only store as read; big-endian float bit patterns would need swapping */
    return LEM_OK;
}

/* A matrix that only matvec reads moves to the kernels' packed layout, when they have one. */
static int pack_matrix(lem_model *m, matrix *w) {
    const lem_kernels *k = m->kernels;
    if (w->q != NULL && k->matvec_i8_packed != NULL) {
        size_t rows = lem_packed_rows(w->rows, k->i8_block);
        int8_t *packed = (int8_t *)aligned_zeros(rows * w->stride);
        if (packed == NULL) return LEM_ERR_NO_MEMORY;
        k->pack_i8(w->q, w->rows, w->stride, packed);
        aligned_free(w->q);
        w->q = packed;
        m->bytes += (rows - w->rows) * w->stride;
        w->packed = 1;
    } else if (w->f != NULL && k->matvec_f32_packed != NULL) {
        size_t rows = lem_packed_rows(w->rows, k->f32_block);
        float *packed = (float *)aligned_zeros(rows * w->stride * sizeof(float));
        if (packed == NULL) return LEM_ERR_NO_MEMORY;
        k->pack_f32(w->f, w->rows, w->stride, packed);
        aligned_free(w->f);
        w->f = packed;
        m->bytes += (rows - w->rows) * w->stride * sizeof(float);
        w->packed = 1;
    }
    return LEM_OK;
}

static int read_vector(reader *r, matrix *m, size_t n, const char *what, size_t *bytes) {
    int status = read_matrix(r, m, 1, n, what, bytes);
    if (status == LEM_OK && m->f == NULL) {
        snprintf(last_error, sizeof last_error, "%s: expected float32 values, got int8", what);
        return LEM_ERR_FORMAT;
    }
    return status;
}

static void free_matrix(matrix *m) {
    aligned_free(m->f);
    aligned_free(m->q);
    aligned_free(m->scale);
}

void lem_model_free(lem_model *model) {
    size_t i, k;
    if (model == NULL) return;
    if (model->ops != NULL) {
        for (i = 0; i < model->n_ops; i++) {
            for (k = 0; k < 4; k++) free_matrix(&model->ops[i].m[k]);
            free(model->ops[i].index);
        }
    }
    if (model->states != NULL) {
        for (i = 0; i < model->n_states; i++) free(model->states[i].name);
    }
    free(model->ops);
    free(model->states);
    free(model->widths);
    free(model->initial_state);
    free(model->metadata);
    free(model);
}

static int check_buffer(const lem_model *m, uint32_t index, size_t width, const char *what) {
    if (index >= m->n_buffers || (width && m->widths[index] != width)) {
        snprintf(last_error, sizeof last_error, "%s: buffer %lu of width %lu, expected a buffer of width %lu", what,
                 (unsigned long)index, index < m->n_buffers ? (unsigned long)m->widths[index] : 0ul,
                 (unsigned long)width);
        return LEM_ERR_FORMAT;
    }
    return LEM_OK;
}

static int check_state_slice(const lem_model *m, size_t offset, size_t n, const char *what) {
    if (offset > m->state_size || n > m->state_size - offset) {
        snprintf(last_error, sizeof last_error, "%s: state values [%lu, %lu) outside the state of %lu values",
                 what, (unsigned long)offset, (unsigned long)(offset + n), (unsigned long)m->state_size);
        return LEM_ERR_FORMAT;
    }
    return LEM_OK;
}

/* Float files hold float weights; int8 files int8 weights, and (version 3 on) float ones for the layers that mixed
 * precision keeps float. */
static int check_weight_dtype(const lem_model *m, const matrix *w, const char *what) {
    if (w->q != NULL ? m->int8 : (!m->int8 || m->file_version >= 3)) return LEM_OK;
    snprintf(last_error, sizeof last_error, "%s: %s weights in a%s file of version %lu", what,
             w->q != NULL ? "int8" : "float", m->int8 ? "n int8" : " float", (unsigned long)m->file_version);
    return LEM_ERR_FORMAT;
}

/* A gather's index table: one float32 per output value, a whole number below the input width, or -1 (a zero). */
static int read_gather(reader *r, lem_model *m, op *o, size_t in_w, size_t out_w, const char *what) {
    matrix table = {0};
    size_t j;
    int s = read_vector(r, &table, out_w, what, &m->bytes);
    if (s == LEM_OK) {
        o->index = (uint32_t *)calloc(out_w, sizeof(uint32_t));
        if (o->index == NULL) s = LEM_ERR_NO_MEMORY;
    }
    for (j = 0; s == LEM_OK && j < out_w; j++) {
        float v = table.f[j];
        if (v == -1.0f) {
            o->index[j] = LEM_GATHER_ZERO;
        } else if (v >= 0.0f && v < (float)in_w && v == floorf(v)) {
            o->index[j] = (uint32_t)v;
        } else {
            snprintf(last_error, sizeof last_error, "%s: gather index %g of value %lu outside [0, %lu) and not -1",
                     what, (double)v, (unsigned long)j, (unsigned long)in_w);
            s = LEM_ERR_FORMAT;
        }
    }
    free_matrix(&table);
    return s;
}

static int read_op(reader *r, lem_model *m, op *o, size_t index) {
    char what[64];
    size_t k, in_w, out_w, h;
    int s = LEM_OK;
    o->type = read_u32(r);
    o->in0 = read_u32(r);
    o->in1 = read_u32(r);
    o->out = read_u32(r);
    for (k = 0; k < 6; k++) o->p[k] = read_u32(r);
    if (r->error) return r->error;
    snprintf(what, sizeof what, "layer %lu (type %lu)", (unsigned long)index, (unsigned long)o->type);
    if (o->in0 >= m->n_buffers || o->out >= m->n_buffers) return check_buffer(m, MAX_BUFFERS, 0, what);
    if ((o->type >= OP_LSTM_PROJ && m->file_version < 2) || (o->type >= OP_GATHER && m->file_version < 3)) {
        snprintf(last_error, sizeof last_error, "%s: this layer type needs file version %d", what,
                 o->type >= OP_GATHER ? 3 : 2);
        return LEM_ERR_FORMAT;
    }
    in_w = m->widths[o->in0];
    out_w = m->widths[o->out];
    switch (o->type) {
        case OP_LINEAR:
            s = read_matrix(r, &o->m[0], out_w, in_w, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[1], out_w, what, &m->bytes);
            if (s == LEM_OK) s = check_weight_dtype(m, &o->m[0], what);
            break;
        case OP_AFFINE:
            if (in_w != out_w) return check_buffer(m, o->out, in_w, what);
            s = read_vector(r, &o->m[0], in_w, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[1], in_w, what, &m->bytes);
            break;
        case OP_ADD:
            s = check_buffer(m, o->in1, in_w, what);
            if (s == LEM_OK) s = check_buffer(m, o->out, in_w, what);
            break;
        case OP_ACT:
            if (o->p[0] < ACT_RELU || o->p[0] > ACT_GELU || (o->p[0] > ACT_LOG_SOFTMAX && m->file_version < 3)) {
                snprintf(last_error, sizeof last_error, "%s: unknown activation %lu", what, (unsigned long)o->p[0]);
                return LEM_ERR_FORMAT;
            }
            s = check_buffer(m, o->out, in_w, what);
            break;
        case OP_LSTM:
        case OP_GRU: {
            size_t n_gates = o->type == OP_LSTM ? 4 : 3;
            h = o->p[0];
            if (h == 0 || h > MAX_DIM || out_w != h) return check_buffer(m, o->out, h, what);
            s = check_state_slice(m, o->p[1], h, what);
            if (s == LEM_OK && o->type == OP_LSTM) s = check_state_slice(m, o->p[2], h, what);
            if (s == LEM_OK) s = read_matrix(r, &o->m[0], n_gates * h, in_w, what, &m->bytes);
            if (s == LEM_OK) s = read_matrix(r, &o->m[1], n_gates * h, h, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[2], n_gates * h, what, &m->bytes);
            if (s == LEM_OK && o->type == OP_GRU) s = read_vector(r, &o->m[3], n_gates * h, what, &m->bytes);
            if (s == LEM_OK) s = check_weight_dtype(m, &o->m[0], what);
            if (s == LEM_OK) s = check_weight_dtype(m, &o->m[1], what);
            if (n_gates * h > m->max_gates) m->max_gates = n_gates * h;
            if (h > m->max_hidden) m->max_hidden = h;
            break;
        }
        case OP_LSTM_PROJ: {
            size_t p = o->p[3];
            h = o->p[0];
            if (h == 0 || h > MAX_DIM || p == 0 || p > h || out_w != p) return check_buffer(m, o->out, p, what);
            s = check_state_slice(m, o->p[1], p, what);
            if (s == LEM_OK) s = check_state_slice(m, o->p[2], h, what);
            if (s == LEM_OK) s = read_matrix(r, &o->m[0], 4 * h, in_w, what, &m->bytes);
            if (s == LEM_OK) s = read_matrix(r, &o->m[1], 4 * h, p, what, &m->bytes);
            if (s == LEM_OK) s = read_matrix(r, &o->m[3], p, h, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[2], 4 * h, what, &m->bytes);
            for (k = 0; s == LEM_OK && k < 4; k++)
                if (k != 2) s = check_weight_dtype(m, &o->m[k], what);
            if (4 * h > m->max_gates) m->max_gates = 4 * h;
            if (h > m->max_hidden) m->max_hidden = h;
            break;
        }
        case OP_CONV: {
            size_t cin = o->p[1], groups = o->p[2], kt = o->p[3], dt = o->p[4], f_in, kf, sf, df, f_out, ctx;
            size_t cout, patch;
            for (k = 0; k < 6; k++) o->x[k] = read_u32(r);
            if (r->error) return r->error;
            f_in = o->x[0];
            kf = o->x[1];
            sf = o->x[2];
            df = o->x[4];
            f_out = o->x[5];
            if (cin == 0 || groups == 0 || cin % groups || kt == 0 || dt == 0 || kt > 65535 || dt > 65535
                || f_in == 0 || kf == 0 || sf == 0 || df == 0 || kf > 65535 || df > 65535 || f_out == 0
                || o->x[3] > 65535 || o->p[5] > 1 || f_in > MAX_DIM / cin || in_w != cin * f_in || out_w % f_out
                || (out_w / f_out) % groups) {
                snprintf(last_error, sizeof last_error, "%s: causal conv geometry does not fit its buffers "
                         "(%lu -> %lu values)", what, (unsigned long)in_w, (unsigned long)out_w);
                return LEM_ERR_FORMAT;
            }
            cout = out_w / f_out;
            ctx = (kt - 1) * dt;
            patch = cin / groups * kt;
            if (patch > MAX_DIM / kf || (ctx && ctx > MAX_DIM / in_w)) {
                snprintf(last_error, sizeof last_error, "%s: causal conv kernel too large", what);
                return LEM_ERR_FORMAT;
            }
            patch *= kf;
            if (ctx) s = check_state_slice(m, o->p[0], ctx * in_w, what);
            if (s == LEM_OK) s = read_matrix(r, &o->m[0], cout, patch, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[1], cout, what, &m->bytes);
            if (s == LEM_OK) s = check_weight_dtype(m, &o->m[0], what);
            if (ctx * in_w > m->max_context) m->max_context = ctx * in_w;
            if (in_w > m->max_frame) m->max_frame = in_w;
            if (padded(patch) > m->max_patch) m->max_patch = padded(patch);
            if (padded(patch) > m->max_stride) m->max_stride = padded(patch);
            if (cout / groups > m->max_group_out) m->max_group_out = cout / groups;
            break;
        }
        case OP_EMBED:
            if (o->in0 != 0 || m->input_kind != LEM_INPUT_TOKEN_IDS) {
                snprintf(last_error, sizeof last_error, "%s: an embedding must read the token-id input", what);
                return LEM_ERR_FORMAT;
            }
            s = read_matrix(r, &o->m[0], 0, out_w, what, &m->bytes);
            if (s == LEM_OK && o->m[0].f == NULL) s = LEM_ERR_FORMAT;
            if (s == LEM_OK) m->vocabulary = o->m[0].rows;
            break;
        case OP_LAYERNORM:
            s = check_buffer(m, o->out, in_w, what);
            if (s == LEM_OK) s = read_vector(r, &o->m[0], in_w, what, &m->bytes);
            if (s == LEM_OK) s = read_vector(r, &o->m[1], in_w, what, &m->bytes);
            break;
        case OP_GATHER:
            s = read_gather(r, m, o, in_w, out_w, what);
            break;
        case OP_MUL:
            s = check_buffer(m, o->in1, in_w, what);
            if (s == LEM_OK) s = check_buffer(m, o->out, in_w, what);
            break;
        case OP_CONTEXT: /* p: offset of the context in the state vector, its values C; out = [C carried, in] */
            if (o->p[1] == 0 || o->p[1] > MAX_DIM || out_w != o->p[1] + in_w)
                return check_buffer(m, o->out, o->p[1] + in_w, what);
            s = check_state_slice(m, o->p[0], o->p[1], what);
            break;
        case OP_POOL: { /* p: kind, channels, features in, kernel, stride, padding before (along features) */
            size_t ch = o->p[1], f_in = o->p[2], kf = o->p[3], sf = o->p[4], pf = o->p[5], f_out;
            if (o->p[0] < POOL_MAX || o->p[0] > POOL_AVERAGE_WITH_PADDING || ch == 0 || f_in == 0 || kf == 0
                || sf == 0 || pf >= kf || kf > 65535 || sf > 65535 || f_in > MAX_DIM / ch || in_w != ch * f_in
                || out_w % ch) {
                snprintf(last_error, sizeof last_error, "%s: pooling geometry does not fit its buffers "
                         "(%lu -> %lu values)", what, (unsigned long)in_w, (unsigned long)out_w);
                return LEM_ERR_FORMAT;
            }
            f_out = out_w / ch;
            if ((f_out - 1) * sf >= f_in + pf) { /* every window must hold a real value */
                snprintf(last_error, sizeof last_error, "%s: pooling window %lu starts after the features", what,
                         (unsigned long)(f_out - 1));
                return LEM_ERR_FORMAT;
            }
            break;
        }
        default:
            snprintf(last_error, sizeof last_error, "%s: unknown layer type", what);
            return LEM_ERR_FORMAT;
    }
    if (s == LEM_OK && o->type != OP_EMBED && m->input_kind == LEM_INPUT_TOKEN_IDS && o->in0 == 0) {
        snprintf(last_error, sizeof last_error, "%s reads the token ids as numbers; only an embedding may", what);
        return LEM_ERR_FORMAT;
    }
    return s;
}

lem_model *lem_model_from_memory(const void *data, size_t size, int *status) {
    reader r;
    lem_model *m;
    uint32_t payload, crc, precision, i, k, meta_bytes, file_version;
    int s;
    if (data == NULL) {
        fail(LEM_ERR_ARGUMENT, status, "no data");
        return NULL;
    }
    if (size < HEADER_BYTES || memcmp(data, "LEMW", 4) != 0) {
        fail(size < 4 ? LEM_ERR_TRUNCATED : LEM_ERR_FORMAT, status,
             "expected a lstm-edge C weight file (magic \"LEMW\" and a 64-byte header)");
        return NULL;
    }
    r.data = (const uint8_t *)data;
    r.size = size;
    r.pos = 4;
    r.error = 0;
    file_version = read_u32(&r);
    if (file_version < 1 || file_version > LEM_FILE_VERSION) {
        snprintf(last_error, sizeof last_error,
                 "unsupported C weight file version %lu (this library reads versions 1 to %d)",
                 (unsigned long)file_version, LEM_FILE_VERSION);
        fail(LEM_ERR_FORMAT, status, NULL);
        return NULL;
    }
    m = (lem_model *)calloc(1, sizeof *m);
    if (m == NULL) {
        fail(LEM_ERR_NO_MEMORY, status, "out of memory");
        return NULL;
    }
    m->file_version = file_version;
    precision = read_u32(&r);
    m->int8 = precision == 1;
    m->input_kind = (lem_input_kind)read_u32(&r);
    m->input_width = read_u32(&r);
    m->output_width = read_u32(&r);
    m->n_buffers = read_u32(&r);
    m->n_states = read_u32(&r);
    m->n_ops = read_u32(&r);
    m->output_buffer = read_u32(&r);
    payload = read_u32(&r);
    crc = read_u32(&r);
    meta_bytes = read_u32(&r);
    if (precision > 1 || m->input_kind > LEM_INPUT_TOKEN_IDS || m->n_buffers == 0 || m->n_buffers > MAX_BUFFERS
        || m->n_ops == 0 || m->n_ops > MAX_OPS || m->n_states > MAX_STATES || m->output_buffer >= m->n_buffers) {
        lem_model_free(m);
        fail(LEM_ERR_FORMAT, status, "C weight file header out of range (precision, input kind or counts)");
        return NULL;
    }
    if (size - HEADER_BYTES < payload) {
        snprintf(last_error, sizeof last_error, "C weight file truncated: expected %lu payload bytes, got %lu",
                 (unsigned long)payload, (unsigned long)(size - HEADER_BYTES));
        lem_model_free(m);
        fail(LEM_ERR_TRUNCATED, status, NULL);
        return NULL;
    }
    if (crc32_of(r.data + HEADER_BYTES, payload) != crc) {
        lem_model_free(m);
        fail(LEM_ERR_CHECKSUM, status, "C weight file payload does not match its CRC-32 (corrupt file)");
        return NULL;
    }
    r.size = HEADER_BYTES + (size_t)payload;
    r.pos = HEADER_BYTES;
    m->widths = (size_t *)calloc(m->n_buffers, sizeof(size_t));
    m->states = (state_spec *)calloc(m->n_states ? m->n_states : 1, sizeof(state_spec));
    m->ops = (op *)calloc(m->n_ops, sizeof(op));
    if (m->widths == NULL || m->states == NULL || m->ops == NULL) goto no_memory;
    for (i = 0; i < m->n_buffers; i++) {
        m->widths[i] = read_u32(&r);
        if (m->widths[i] == 0 || m->widths[i] > MAX_DIM) r.error = r.error ? r.error : LEM_ERR_FORMAT;
        if (padded(m->widths[i]) > m->max_stride) m->max_stride = padded(m->widths[i]);
    }
    if (!r.error && (m->widths[0] != (m->input_kind == LEM_INPUT_TOKEN_IDS ? 1 : m->input_width)
                     || m->widths[m->output_buffer] != m->output_width)) {
        r.error = LEM_ERR_FORMAT;
    }
    for (i = 0; i < m->n_states && !r.error; i++) {
        uint32_t name_len = read_u32(&r);
        const uint8_t *name = name_len <= 255 ? read_bytes(&r, name_len) : NULL;
        if (name == NULL) {
            r.error = r.error ? r.error : LEM_ERR_FORMAT;
            break;
        }
        m->states[i].name = (char *)calloc(name_len + 1u, 1);
        if (m->states[i].name == NULL) goto no_memory;
        memcpy(m->states[i].name, name, name_len);
        m->states[i].size = read_u32(&r);
        m->states[i].offset = m->state_size;
        if (m->states[i].size == 0 || m->states[i].size > MAX_DIM) r.error = r.error ? r.error : LEM_ERR_FORMAT;
        m->state_size += m->states[i].size;
    }
    if (r.error) {
        s = r.error;
        if (s == LEM_ERR_FORMAT) snprintf(last_error, sizeof last_error, "C weight file: bad buffer or state table");
        goto failed_status;
    }
    m->initial_state = (float *)calloc(m->state_size ? m->state_size : 1, sizeof(float));
    if (m->initial_state == NULL) goto no_memory;
    for (i = 0; i < m->n_states && !r.error; i++) {
        uint32_t learned = read_u32(&r);
        if (learned > 1) r.error = LEM_ERR_FORMAT;
        if (learned == 1) {
            for (k = 0; k < m->states[i].size; k++) m->initial_state[m->states[i].offset + k] = read_f32(&r);
        }
    }
    if (r.error) {
        s = r.error;
        snprintf(last_error, sizeof last_error, "C weight file: bad initial state table");
        goto failed_status;
    }
    for (i = 0; i < m->n_ops; i++) {
        s = read_op(&r, m, &m->ops[i], i);
        if (s != LEM_OK) goto failed_status;
    }
    if (meta_bytes > r.size - r.pos) {
        s = LEM_ERR_TRUNCATED;
        goto failed_status;
    }
    m->metadata = (char *)calloc(meta_bytes + 1u, 1);
    if (m->metadata == NULL) goto no_memory;
    if (meta_bytes) memcpy(m->metadata, read_bytes(&r, meta_bytes), meta_bytes);
    if (r.pos != r.size) {
        s = LEM_ERR_FORMAT;
        snprintf(last_error, sizeof last_error, "C weight file: %lu bytes left after the last layer",
                 (unsigned long)(r.size - r.pos));
        goto failed_status;
    }
    m->kernels = lem_kernels_select();
    for (i = 0; i < m->n_ops; i++) { /* the matrices of matvec */
        op *o = &m->ops[i];
        if (o->type == OP_LINEAR || o->type == OP_LSTM || o->type == OP_GRU || o->type == OP_LSTM_PROJ) {
            if (pack_matrix(m, &o->m[0]) != LEM_OK) goto no_memory;
            if (o->type != OP_LINEAR && pack_matrix(m, &o->m[1]) != LEM_OK) goto no_memory;
            if (o->type == OP_LSTM_PROJ && pack_matrix(m, &o->m[3]) != LEM_OK) goto no_memory; /* W_hr */
        }
    }
    m->bytes += sizeof *m + m->state_size * sizeof(float);
    if (status != NULL) *status = LEM_OK;
    return m;
no_memory:
    s = LEM_ERR_NO_MEMORY;
    snprintf(last_error, sizeof last_error, "out of memory");
failed_status:
    if (s == LEM_ERR_TRUNCATED) snprintf(last_error, sizeof last_error, "C weight file truncated inside a record");
    lem_model_free(m);
    fail(s, status, NULL);
    return NULL;
}

lem_model *lem_model_from_file(const char *path, int *status) {
    FILE *f;
    long size;
    void *data;
    lem_model *m;
    if (path == NULL) {
        fail(LEM_ERR_ARGUMENT, status, "no path");
        return NULL;
    }
    f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        if (f != NULL) fclose(f);
        snprintf(last_error, sizeof last_error, "cannot open %s", path);
        fail(LEM_ERR_IO, status, NULL);
        return NULL;
    }
    data = malloc(size ? (size_t)size : 1u);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(data);
        snprintf(last_error, sizeof last_error, "cannot read %s", path);
        fail(LEM_ERR_IO, status, NULL);
        return NULL;
    }
    fclose(f);
    m = lem_model_from_memory(data, (size_t)size, status);
    free(data);
    return m;
}

lem_input_kind lem_model_input_kind(const lem_model *model) { return model->input_kind; }
size_t lem_model_input_width(const lem_model *model) { return model->input_width; }
size_t lem_model_output_width(const lem_model *model) { return model->output_width; }
size_t lem_model_state_size(const lem_model *model) { return model->state_size; }
size_t lem_model_state_count(const lem_model *model) { return model->n_states; }
int lem_model_is_int8(const lem_model *model) { return model->int8; }
const char *lem_model_metadata(const lem_model *model) { return model->metadata; }
size_t lem_model_bytes(const lem_model *model) { return model->bytes; }

int lem_model_state_info(const lem_model *model, size_t index, lem_state_info *info) {
    if (model == NULL || info == NULL || index >= model->n_states) return LEM_ERR_ARGUMENT;
    info->name = model->states[index].name;
    info->offset = model->states[index].offset;
    info->size = model->states[index].size;
    return LEM_OK;
}

/* ----------------------------------------------------------------------------------------------- streams */
static size_t stream_floats(const lem_model *m, size_t max_chunk) {
    size_t i, n = 2 * m->state_size + max_chunk * m->max_gates + 2 * padded(m->max_hidden) + m->max_gates;
    for (i = 0; i < m->n_buffers; i++) n += max_chunk * padded(m->widths[i]);
    n += m->max_context + max_chunk * m->max_frame + m->max_patch + m->max_group_out;
    return n + max_chunk; /* quant_scales */
}

/* int8 models quantize all frames of a chunk before a matrix reads them (float models need no copy) */
static size_t chunk_quant_bytes(const lem_model *m, size_t max_chunk) {
    return m->int8 ? max_chunk * m->max_stride : 0;
}

size_t lem_stream_bytes_for(const lem_model *model, size_t max_chunk) {
    return sizeof(lem_stream) + model->n_buffers * sizeof(float *) + stream_floats(model, max_chunk) * sizeof(float)
           + model->max_stride + chunk_quant_bytes(model, max_chunk) + max_chunk * sizeof(int32_t)
           + 64u * (model->n_buffers + 8u);
}

void lem_stream_free(lem_stream *stream) {
    size_t i;
    if (stream == NULL) return;
    if (stream->buffers != NULL) {
        for (i = 0; i < stream->model->n_buffers; i++) aligned_free(stream->buffers[i]);
    }
    free(stream->buffers);
    aligned_free(stream->state);
    aligned_free(stream->backup);
    aligned_free(stream->gates);
    aligned_free(stream->hidden);
    aligned_free(stream->gates_h);
    aligned_free(stream->quant);
    aligned_free(stream->quant_chunk);
    aligned_free(stream->quant_scales);
    aligned_free(stream->ids);
    aligned_free(stream->window);
    aligned_free(stream->patch);
    aligned_free(stream->conv_out);
    free(stream);
}

lem_stream *lem_stream_create(const lem_model *model, size_t max_chunk, int *status) {
    lem_stream *s;
    size_t i, state_n;
    if (model == NULL || max_chunk == 0 || max_chunk > MAX_DIM) {
        fail(LEM_ERR_ARGUMENT, status, "lem_stream_create: expected a model and max_chunk >= 1");
        return NULL;
    }
    s = (lem_stream *)calloc(1, sizeof *s);
    if (s == NULL) goto no_memory;
    s->model = model;
    s->max_chunk = max_chunk;
    state_n = model->state_size ? model->state_size : 1;
    s->state = (float *)aligned_zeros(state_n * sizeof(float));
    s->backup = (float *)aligned_zeros(state_n * sizeof(float));
    s->gates = (float *)aligned_zeros((max_chunk * model->max_gates + 1) * sizeof(float));
    s->hidden = (float *)aligned_zeros((2 * padded(model->max_hidden) + LEM_PAD) * sizeof(float));
    s->gates_h = (float *)aligned_zeros((model->max_gates + 1) * sizeof(float));
    s->quant = (int8_t *)aligned_zeros(model->max_stride + LEM_PAD);
    s->quant_chunk = (int8_t *)aligned_zeros(chunk_quant_bytes(model, max_chunk) + LEM_PAD);
    s->quant_scales = (float *)aligned_zeros(max_chunk * sizeof(float));
    s->ids = (int32_t *)aligned_zeros(max_chunk * sizeof(int32_t));
    s->buffers = (float **)calloc(model->n_buffers, sizeof(float *));
    s->window = (float *)aligned_zeros((model->max_context + max_chunk * model->max_frame + 1) * sizeof(float));
    s->patch = (float *)aligned_zeros((model->max_patch + LEM_PAD) * sizeof(float));
    s->conv_out = (float *)aligned_zeros((model->max_group_out + 1) * sizeof(float));
    if (s->window == NULL || s->patch == NULL || s->conv_out == NULL) goto no_memory;
    if (s->state == NULL || s->backup == NULL || s->gates == NULL || s->hidden == NULL || s->gates_h == NULL
        || s->quant == NULL || s->quant_chunk == NULL || s->quant_scales == NULL || s->ids == NULL
        || s->buffers == NULL)
        goto no_memory;
    for (i = 0; i < model->n_buffers; i++) {
        s->buffers[i] = (float *)aligned_zeros(max_chunk * padded(model->widths[i]) * sizeof(float));
        if (s->buffers[i] == NULL) goto no_memory;
    }
    lem_stream_reset(s);
    if (status != NULL) *status = LEM_OK;
    return s;
no_memory:
    lem_stream_free(s);
    fail(LEM_ERR_NO_MEMORY, status, "out of memory");
    return NULL;
}

void lem_stream_reset(lem_stream *stream) {
    if (stream == NULL) return;
    memcpy(stream->state, stream->model->initial_state, stream->model->state_size * sizeof(float));
}


int lem_stream_get_state(const lem_stream *stream, float *state) {
    if (stream == NULL || state == NULL) return LEM_ERR_ARGUMENT;
    memcpy(state, stream->state, stream->model->state_size * sizeof(float));
    return LEM_OK;
}

int lem_stream_set_state(lem_stream *stream, const float *state) {
    if (stream == NULL || state == NULL) return LEM_ERR_ARGUMENT;
    if (!lem_all_finite(state, stream->model->state_size)) return LEM_ERR_NONFINITE_INPUT;
    memmove(stream->state, state, stream->model->state_size * sizeof(float));
    return LEM_OK;
}

/* ----------------------------------------------------------------------------------------------- layers */
/* y[:rows] += W x, float or int8 */
static void matvec(lem_stream *s, const matrix *w, const float *x, float *y) {
    const lem_kernels *k = s->model->kernels;
    if (w->q != NULL) {
        float xs = k->quantize(x, w->cols, s->quant);
        if (xs != 0.0f)
            (w->packed ? k->matvec_i8_packed : k->matvec_i8)(w->q, w->scale, w->rows, w->stride, s->quant, xs, y);
    } else {
        (w->packed ? k->matvec_f32_packed : k->matvec_f32)(w->f, w->rows, w->stride, x, y);
    }
}

/* The recurrent product of frame t. A matrix larger than the L1 cache comes from L2 every frame when its rows are
 * read in the same order each time (the least recently used rows are the next ones needed); odd frames read it
 * from the last quarter back to the first, so each frame starts on the rows the previous one left in L1. Quarters
 * start at multiples of 64 rows, a multiple of every packed block and row unrolling, so each row sees the same
 * operations as in one call and the result is bitwise the same. */
#define L1_ROWS_BYTES 32768u
static void matvec_recurrent(lem_stream *s, const matrix *w, const float *x, float *y, size_t t) {
    const lem_kernels *k = s->model->kernels;
    size_t row_bytes = w->stride * (w->q != NULL ? 1 : sizeof(float)), quarter, r0, n, i;
    if (t % 2 == 0 || w->rows * row_bytes <= L1_ROWS_BYTES || w->rows < 256) {
        matvec(s, w, x, y);
        return;
    }
    quarter = (w->rows / 4 + 63) / 64 * 64;
    if (w->q != NULL) {
        float xs = k->quantize(x, w->cols, s->quant);
        if (xs == 0.0f) return;
        for (i = 4; i-- > 0;) {
            r0 = i * quarter;
            if (r0 >= w->rows) continue;
            n = w->rows - r0 < quarter ? w->rows - r0 : quarter;
            (w->packed ? k->matvec_i8_packed : k->matvec_i8)(w->q + r0 * w->stride, w->scale + r0, n, w->stride,
                                                             s->quant, xs, y + r0);
        }
    } else {
        for (i = 4; i-- > 0;) {
            r0 = i * quarter;
            if (r0 >= w->rows) continue;
            n = w->rows - r0 < quarter ? w->rows - r0 : quarter;
            (w->packed ? k->matvec_f32_packed : k->matvec_f32)(w->f + r0 * w->stride, n, w->stride, x, y + r0);
        }
    }
}

/* y[t * y_stride + :rows] += W x[t * x_stride + :cols] for the n frames of a chunk, bitwise what n matvec calls
 * give: each frame quantized on its own, then the kernels read every weight block once for all frames. */
static void matmat(lem_stream *s, const matrix *w, const float *x, size_t x_stride, size_t n, float *y,
                   size_t y_stride) {
    const lem_kernels *k = s->model->kernels;
    size_t t;
    if (n == 1) {
        matvec(s, w, x, y);
    } else if (w->q != NULL) {
        for (t = 0; t < n; t++)
            s->quant_scales[t] = k->quantize(x + t * x_stride, w->cols, s->quant_chunk + t * w->stride);
        (w->packed ? k->matmat_i8_packed : k->matmat_i8)(w->q, w->scale, w->rows, w->stride, s->quant_chunk,
                                                         s->quant_scales, n, w->stride, y, y_stride);
    } else {
        (w->packed ? k->matmat_f32_packed : k->matmat_f32)(w->f, w->rows, w->stride, x, n, x_stride, y, y_stride);
    }
}

/* The gate loops' copies: on x86-64 Linux GCC also emits an AVX2 and (GCC 12 on) an AVX-512 copy of a function,
 * chosen at load time (8 or 16 floats per instruction instead of SSE2's 4). Each copy does the same float operations
 * per value (ISO C mode: no contraction into FMA), so they agree bitwise. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && !defined(__clang__)
#if __GNUC__ >= 12
#define LEM_GATE_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define LEM_GATE_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#else
#define LEM_GATE_CLONES
#endif

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

/* lem_fast_exp on four lanes: the same operations in the same order (clamps as pmin/pmax keep NaN as the C
 * comparisons do; no fused multiply-add exists), so every lane is bitwise the scalar result. clang does not
 * vectorise the scalar gate loop for WebAssembly, where it took a third of a keyword-spotter frame. */
static v128_t fast_exp4(v128_t x) {
    const v128_t magic = wasm_f32x4_splat(12582912.0f);
    v128_t shifted, n, r, p, bits;
    x = wasm_f32x4_pmin(x, wasm_f32x4_splat(88.0f));  /* 88 < x ? 88 : x */
    x = wasm_f32x4_pmax(x, wasm_f32x4_splat(-87.0f)); /* x < -87 ? -87 : x */
    shifted = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504f)), magic);
    n = wasm_f32x4_sub(shifted, magic);
    r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693145751953125f))),
                       wasm_f32x4_mul(n, wasm_f32x4_splat(1.428606765330187e-06f)));
    p = wasm_f32x4_add(wasm_f32x4_splat(0.008333334f), wasm_f32x4_mul(r, wasm_f32x4_splat(0.0013888889f)));
    p = wasm_f32x4_add(wasm_f32x4_splat(0.041666668f), wasm_f32x4_mul(r, p));
    p = wasm_f32x4_add(wasm_f32x4_splat(0.16666667f), wasm_f32x4_mul(r, p));
    p = wasm_f32x4_add(wasm_f32x4_splat(0.5f), wasm_f32x4_mul(r, p));
    p = wasm_f32x4_add(wasm_f32x4_splat(1.0f), wasm_f32x4_mul(r, p));
    p = wasm_f32x4_add(wasm_f32x4_splat(1.0f), wasm_f32x4_mul(r, p));
    bits = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_sub(shifted, wasm_i32x4_splat(0x4b400000)),
                                         wasm_i32x4_splat(127)), 23);
    return wasm_f32x4_mul(p, bits);
}

static v128_t fast_sigmoid4(v128_t x) {
    const v128_t one = wasm_f32x4_splat(1.0f);
    return wasm_f32x4_div(one, wasm_f32x4_add(one, fast_exp4(wasm_f32x4_neg(x))));
}

static v128_t fast_tanh4(v128_t x) {
    const v128_t one = wasm_f32x4_splat(1.0f);
    return wasm_f32x4_sub(one, wasm_f32x4_div(wasm_f32x4_splat(2.0f),
                                              wasm_f32x4_add(fast_exp4(wasm_f32x4_mul(wasm_f32x4_splat(2.0f), x)),
                                                             one)));
}
#endif

/* The gate arithmetic of one LSTM frame (torch gate order i, f, g, o). */
LEM_GATE_CLONES static void lstm_gates_loop(const float *g, float *c, float *hidden, size_t h) {
    size_t j = 0;
#if defined(__wasm_simd128__)
    for (; j + 4 <= h; j += 4) {
        v128_t i_gate = fast_sigmoid4(wasm_v128_load(g + j)), f_gate = fast_sigmoid4(wasm_v128_load(g + h + j));
        v128_t g_gate = fast_tanh4(wasm_v128_load(g + 2 * h + j));
        v128_t o_gate = fast_sigmoid4(wasm_v128_load(g + 3 * h + j));
        v128_t cell = wasm_f32x4_add(wasm_f32x4_mul(f_gate, wasm_v128_load(c + j)), wasm_f32x4_mul(i_gate, g_gate));
        wasm_v128_store(c + j, cell);
        wasm_v128_store(hidden + j, wasm_f32x4_mul(o_gate, fast_tanh4(cell)));
    }
#endif
    for (; j < h; j++) {
        float i_gate = lem_fast_sigmoid(g[j]), f_gate = lem_fast_sigmoid(g[h + j]);
        float g_gate = lem_fast_tanh(g[2 * h + j]), o_gate = lem_fast_sigmoid(g[3 * h + j]);
        c[j] = f_gate * c[j] + i_gate * g_gate;
        hidden[j] = o_gate * lem_fast_tanh(c[j]);
    }
}

/* The kernel set's gate arithmetic where it has one (bitwise the loop's; it overwrites g), else the loop. */
static void lstm_gates(const lem_model *m, float *g, float *c, float *hidden, size_t h) {
    if (m->kernels->lstm_gates != NULL) m->kernels->lstm_gates(g, c, hidden, h);
    else lstm_gates_loop(g, c, hidden, h);
}

static void run_lstm(lem_stream *s, const op *o, const float *in, size_t in_stride, float *out,
                     size_t out_stride, size_t n) {
    size_t h = o->p[0], t;
    float *state_h = s->state + o->p[1], *c = s->state + o->p[2], *hidden = s->hidden, *g;
    const float *bias = o->m[2].f;
    for (t = 0; t < n; t++) memcpy(s->gates + t * 4 * h, bias, 4 * h * sizeof(float));
    matmat(s, &o->m[0], in, in_stride, n, s->gates, 4 * h); /* input part of every frame first: W_ih x_t + b */
    memcpy(hidden, state_h, h * sizeof(float));
    for (t = 0; t < n; t++) {
        g = s->gates + t * 4 * h;
        matvec_recurrent(s, &o->m[1], hidden, g, t);
        lstm_gates(s->model, g, c, hidden, h);
        memcpy(out + t * out_stride, hidden, h * sizeof(float));
    }
    memcpy(state_h, hidden, h * sizeof(float));
}

/* LSTM with a projection (torch's proj_size): the recurrent product reads the projected h (P values), the gates
 * give u = o * tanh(c) (H values) and h = W_hr u. */
static void run_lstm_proj(lem_stream *s, const op *o, const float *in, size_t in_stride, float *out,
                          size_t out_stride, size_t n) {
    size_t h = o->p[0], p = o->p[3], t;
    float *state_h = s->state + o->p[1], *c = s->state + o->p[2], *hidden = s->hidden;
    float *u = s->hidden + padded(s->model->max_hidden), *g;
    for (t = 0; t < n; t++) memcpy(s->gates + t * 4 * h, o->m[2].f, 4 * h * sizeof(float));
    matmat(s, &o->m[0], in, in_stride, n, s->gates, 4 * h);
    memcpy(hidden, state_h, p * sizeof(float));
    for (t = 0; t < n; t++) {
        g = s->gates + t * 4 * h;
        matvec_recurrent(s, &o->m[1], hidden, g, t);
        lstm_gates(s->model, g, c, u, h);
        memset(hidden, 0, p * sizeof(float));
        matvec(s, &o->m[3], u, hidden);
        memcpy(out + t * out_stride, hidden, p * sizeof(float));
    }
    memcpy(state_h, hidden, p * sizeof(float));
}

/* Causal convolution over time (and a second spatial axis of F features): output frame t reads input frames
 * t - (K-1)*D .. t, the first of them carried in the state (the last (K-1)*D input frames, zeros at the start).
 * A frame is [channels, F]; each output value is one group's matrix times the receptive field, gathered. */
/* Where carried frame a, channel ci, feature j of a conv's context lies in its state tensor. */
static size_t conv_state_index(int time_last, size_t ci, size_t a, size_t j, size_t ctx, size_t f_in) {
    return time_last ? (ci * f_in + j) * ctx + a : (ci * ctx + a) * f_in + j;
}

static void run_conv(lem_stream *s, const op *o, const float *in, size_t in_stride, float *out, size_t out_stride,
                     size_t n) {
    const lem_kernels *k = s->model->kernels;
    const matrix *w = &o->m[0];
    size_t cin = o->p[1], groups = o->p[2], kt = o->p[3], dt = o->p[4];
    size_t f_in = o->x[0], kf = o->x[1], sf = o->x[2], pf = o->x[3], df = o->x[4], f_out = o->x[5];
    size_t frame = cin * f_in, ctx = (kt - 1) * dt, cg = cin / groups, og = w->rows / groups;
    size_t t, fo, g, ci, a, b, j;
    float *win = s->window, *state = s->state + o->p[0], *patch = s->patch, *y = s->conv_out;
    int time_last = o->p[5] != 0; /* state laid out [channels, F, frames] instead of [channels, frames, F] */
    for (ci = 0; ci < cin; ci++)
        for (a = 0; a < ctx; a++)
            for (j = 0; j < f_in; j++)
                win[a * frame + ci * f_in + j] = state[conv_state_index(time_last, ci, a, j, ctx, f_in)];
    for (t = 0; t < n; t++) memcpy(win + (ctx + t) * frame, in + t * in_stride, frame * sizeof(float));
    for (t = 0; t < n; t++) {
        for (fo = 0; fo < f_out; fo++) {
            for (g = 0; g < groups; g++) {
                for (ci = 0; ci < cg; ci++) {
                    for (a = 0; a < kt; a++) {
                        const float *row = win + (t + a * dt) * frame + (g * cg + ci) * f_in;
                        float *dst = patch + (ci * kt + a) * kf;
                        for (b = 0; b < kf; b++) {
                            long fi = (long)(fo * sf + b * df) - (long)pf;
                            dst[b] = fi >= 0 && fi < (long)f_in ? row[fi] : 0.0f;
                        }
                    }
                }
                memcpy(y, o->m[1].f + g * og, og * sizeof(float));
                if (w->q != NULL) {
                    float xs = k->quantize(patch, w->cols, s->quant);
                    if (xs != 0.0f)
                        k->matvec_i8(w->q + g * og * w->stride, w->scale + g * og, og, w->stride, s->quant, xs, y);
                } else {
                    k->matvec_f32(w->f + g * og * w->stride, og, w->stride, patch, y);
                }
                for (j = 0; j < og; j++) out[t * out_stride + (g * og + j) * f_out + fo] = y[j];
            }
        }
    }
    for (ci = 0; ci < cin; ci++)
        for (a = 0; a < ctx; a++)
            for (j = 0; j < f_in; j++)
                state[conv_state_index(time_last, ci, a, j, ctx, f_in)] = win[(n + a) * frame + ci * f_in + j];
}

/* The gate arithmetic of one GRU frame (torch gate order r, z, n; the reset gate after the recurrent product):
 * gi = W_ih x + b_ih, gh = W_hh h + b_hh. Same clones and same float operations per value as lstm_gates. */
LEM_GATE_CLONES static void gru_gates(const float *gi, const float *gh, float *hidden, size_t h) {
    size_t j;
    for (j = 0; j < h; j++) {
        float r = lem_fast_sigmoid(gi[j] + gh[j]), z = lem_fast_sigmoid(gi[h + j] + gh[h + j]);
        float cand = lem_fast_tanh(gi[2 * h + j] + r * gh[2 * h + j]);
        hidden[j] = (1.0f - z) * cand + z * hidden[j];
    }
}

static void run_gru(lem_stream *s, const op *o, const float *in, size_t in_stride, float *out, size_t out_stride,
                    size_t n) {
    size_t h = o->p[0], t;
    float *state_h = s->state + o->p[1], *hidden = s->hidden, *gi, *gh = s->gates_h;
    for (t = 0; t < n; t++) memcpy(s->gates + t * 3 * h, o->m[2].f, 3 * h * sizeof(float));
    matmat(s, &o->m[0], in, in_stride, n, s->gates, 3 * h);
    memcpy(hidden, state_h, h * sizeof(float));
    for (t = 0; t < n; t++) {
        gi = s->gates + t * 3 * h;
        memcpy(gh, o->m[3].f, 3 * h * sizeof(float));
        matvec_recurrent(s, &o->m[1], hidden, gh, t);
        gru_gates(gi, gh, hidden, h);
        memcpy(out + t * out_stride, hidden, h * sizeof(float));
    }
    memcpy(state_h, hidden, h * sizeof(float));
}

static void run_activation(uint32_t kind, const float *x, float *y, size_t w) {
    size_t j;
    float peak, total;
    switch (kind) {
        case ACT_RELU:
            for (j = 0; j < w; j++) y[j] = x[j] > 0.0f ? x[j] : 0.0f;
            break;
        case ACT_TANH:
            for (j = 0; j < w; j++) y[j] = lem_fast_tanh(x[j]);
            break;
        case ACT_SIGMOID:
            for (j = 0; j < w; j++) y[j] = lem_fast_sigmoid(x[j]);
            break;
        case ACT_SQRT:
            for (j = 0; j < w; j++) y[j] = sqrtf(x[j]);
            break;
        case ACT_ERF:
            for (j = 0; j < w; j++) y[j] = erff(x[j]);
            break;
        case ACT_GELU: /* x * Phi(x), the exact (erf) form */
            for (j = 0; j < w; j++) y[j] = 0.5f * x[j] * (1.0f + erff(x[j] * 0.70710678118654752f));
            break;
        default: /* softmax, log-softmax over the frame */
            peak = x[0];
            for (j = 1; j < w; j++) peak = x[j] > peak ? x[j] : peak;
            total = 0.0f;
            for (j = 0; j < w; j++) total += expf(x[j] - peak);
            if (kind == ACT_SOFTMAX) {
                for (j = 0; j < w; j++) y[j] = expf(x[j] - peak) / total;
            } else {
                float log_total = logf(total);
                for (j = 0; j < w; j++) y[j] = x[j] - peak - log_total;
            }
            break;
    }
}

/* Pooling over the features of each channel (max, or average with or without the padding counted). */
static void run_pool(const op *o, const float *x, float *y, size_t out_w) {
    size_t ch = o->p[1], f_in = o->p[2], kf = o->p[3], sf = o->p[4], f_out = out_w / ch, c, fo, b;
    long pf = (long)o->p[5];
    for (c = 0; c < ch; c++) {
        const float *row = x + c * f_in;
        for (fo = 0; fo < f_out; fo++) {
            float acc = 0.0f;
            size_t count = 0;
            for (b = 0; b < kf; b++) {
                long fi = (long)(fo * sf + b) - pf;
                if (fi < 0 || fi >= (long)f_in) continue;
                if (o->p[0] == POOL_MAX)
                    acc = count == 0 || row[fi] > acc ? row[fi] : acc;
                else
                    acc += row[fi];
                count++;
            }
            if (o->p[0] == POOL_AVERAGE)
                acc /= (float)count;
            else if (o->p[0] == POOL_AVERAGE_WITH_PADDING)
                acc /= (float)kf;
            y[c * f_out + fo] = acc;
        }
    }
}

/* A context window along the features of each step: out_t = [context_t, in_t], context_{t+1} the last C values of
 * out_t (the first context from the state, the last one written back to it). */
static void run_context(lem_stream *s, const op *o, const float *in, size_t in_stride, float *out, size_t out_stride,
                        size_t n, size_t in_w) {
    size_t c = o->p[1], t;
    float *state = s->state + o->p[0];
    for (t = 0; t < n; t++) {
        const float *carried = t == 0 ? state : out + (t - 1) * out_stride + in_w;
        memcpy(out + t * out_stride, carried, c * sizeof(float));
        memcpy(out + t * out_stride + c, in + t * in_stride, in_w * sizeof(float));
    }
    memcpy(state, out + (n - 1) * out_stride + in_w, c * sizeof(float));
}

/* One layer over the n frames in the stream's buffers (run_ops runs them all; a batch runs them one at a time). */
static void run_op(lem_stream *s, const op *o, size_t n) {
    const lem_model *m = s->model;
    size_t t, j;
    {
        const float *in = s->buffers[o->in0];
        float *out = s->buffers[o->out];
        size_t in_stride = padded(m->widths[o->in0]), out_stride = padded(m->widths[o->out]);
        size_t w = m->widths[o->out];
        switch (o->type) {
            case OP_LINEAR:
                for (t = 0; t < n; t++) memcpy(out + t * out_stride, o->m[1].f, w * sizeof(float));
                matmat(s, &o->m[0], in, in_stride, n, out, out_stride);
                break;
            case OP_AFFINE:
                for (t = 0; t < n; t++)
                    for (j = 0; j < w; j++)
                        out[t * out_stride + j] = in[t * in_stride + j] * o->m[0].f[j] + o->m[1].f[j];
                break;
            case OP_ADD: {
                const float *in1 = s->buffers[o->in1];
                for (t = 0; t < n; t++)
                    for (j = 0; j < w; j++)
                        out[t * out_stride + j] = in[t * in_stride + j] + in1[t * in_stride + j];
                break;
            }
            case OP_MUL: {
                const float *in1 = s->buffers[o->in1];
                for (t = 0; t < n; t++)
                    for (j = 0; j < w; j++)
                        out[t * out_stride + j] = in[t * in_stride + j] * in1[t * in_stride + j];
                break;
            }
            case OP_GATHER:
                for (t = 0; t < n; t++)
                    for (j = 0; j < w; j++)
                        out[t * out_stride + j] = o->index[j] == LEM_GATHER_ZERO ? 0.0f
                                                                                : in[t * in_stride + o->index[j]];
                break;
            case OP_CONTEXT:
                run_context(s, o, in, in_stride, out, out_stride, n, m->widths[o->in0]);
                break;
            case OP_POOL:
                for (t = 0; t < n; t++) run_pool(o, in + t * in_stride, out + t * out_stride, w);
                break;
            case OP_ACT:
                for (t = 0; t < n; t++) run_activation(o->p[0], in + t * in_stride, out + t * out_stride, w);
                break;
            case OP_LSTM:
                run_lstm(s, o, in, in_stride, out, out_stride, n);
                break;
            case OP_GRU:
                run_gru(s, o, in, in_stride, out, out_stride, n);
                break;
            case OP_LSTM_PROJ:
                run_lstm_proj(s, o, in, in_stride, out, out_stride, n);
                break;
            case OP_CONV:
                run_conv(s, o, in, in_stride, out, out_stride, n);
                break;
            case OP_EMBED:
                for (t = 0; t < n; t++)
                    memcpy(out + t * out_stride, o->m[0].f + (size_t)s->ids[t] * o->m[0].stride, w * sizeof(float));
                break;
            case OP_LAYERNORM: {
                float eps;
                memcpy(&eps, &o->p[0], sizeof eps);
                for (t = 0; t < n; t++) {
                    const float *x = in + t * in_stride;
                    float mean = 0.0f, var = 0.0f, inv;
                    for (j = 0; j < w; j++) mean += x[j];
                    mean /= (float)w;
                    for (j = 0; j < w; j++) var += (x[j] - mean) * (x[j] - mean);
                    inv = 1.0f / sqrtf(var / (float)w + eps);
                    for (j = 0; j < w; j++)
                        out[t * out_stride + j] = (x[j] - mean) * inv * o->m[0].f[j] + o->m[1].f[j];
                }
                break;
            }
            default:
                break;
        }
    }
}

static void run_ops(lem_stream *s, size_t n) {
    size_t i;
    for (i = 0; i < s->model->n_ops; i++) run_op(s, &s->model->ops[i], n);
}

static int push_any(lem_stream *s, const float *x, const int32_t *ids, size_t n_frames, float *y) {
    const lem_model *m;
    size_t done, n, t, in_w, out_w, out_stride, vocabulary = 0;
    if (s == NULL || y == NULL || (x == NULL && ids == NULL) || n_frames == 0) return LEM_ERR_ARGUMENT;
    m = s->model;
    if ((m->input_kind == LEM_INPUT_TOKEN_IDS) != (ids != NULL)) return LEM_ERR_ARGUMENT;
    in_w = m->input_width;
    out_w = m->output_width;
    if (ids == NULL) {
        if (!lem_all_finite(x, n_frames * in_w)) return LEM_ERR_NONFINITE_INPUT;
    } else {
        vocabulary = m->vocabulary;
        for (t = 0; t < n_frames; t++)
            if (ids[t] < 0 || (size_t)ids[t] >= vocabulary) return LEM_ERR_ARGUMENT;
    }
    memcpy(s->backup, s->state, m->state_size * sizeof(float));
    out_stride = padded(out_w);
    for (done = 0; done < n_frames; done += n) {
        n = n_frames - done < s->max_chunk ? n_frames - done : s->max_chunk;
        if (ids == NULL) {
            size_t stride = padded(in_w);
            for (t = 0; t < n; t++) memcpy(s->buffers[0] + t * stride, x + (done + t) * in_w, in_w * sizeof(float));
        } else {
            memcpy(s->ids, ids + done, n * sizeof(int32_t));
        }
        run_ops(s, n);
        for (t = 0; t < n; t++)
            memcpy(y + (done + t) * out_w, s->buffers[m->output_buffer] + t * out_stride, out_w * sizeof(float));
    }
    if (!lem_all_finite(y, n_frames * out_w) || !lem_all_finite(s->state, m->state_size)) {
        memcpy(s->state, s->backup, m->state_size * sizeof(float));
        return LEM_ERR_NONFINITE_RESULT;
    }
    return LEM_OK;
}

int lem_stream_push(lem_stream *stream, const float *x, size_t n_frames, float *y) {
    return push_any(stream, x, NULL, n_frames, y);
}

int lem_stream_push_ids(lem_stream *stream, const int32_t *ids, size_t n_frames, float *y) {
    return push_any(stream, NULL, ids, n_frames, y);
}

int lem_stream_run(lem_stream *stream, const void *x, size_t n_frames, const float *state_in, float *state_out,
                   float *y) {
    int status;
    if (stream == NULL || state_in == NULL || state_out == NULL) return LEM_ERR_ARGUMENT;
    memmove(stream->state, state_in, stream->model->state_size * sizeof(float));
    if (stream->model->input_kind == LEM_INPUT_TOKEN_IDS)
        status = push_any(stream, NULL, (const int32_t *)x, n_frames, y);
    else
        status = push_any(stream, (const float *)x, NULL, n_frames, y);
    if (status == LEM_OK) memmove(state_out, stream->state, stream->model->state_size * sizeof(float));
    return status;
}

int lem_stream_run_parts(lem_stream *stream, const void *x, size_t n_frames, const float *const *state_in,
                         float *state_out, float *y) {
    size_t i;
    if (stream == NULL || state_in == NULL || state_out == NULL) return LEM_ERR_ARGUMENT;
    for (i = 0; i < stream->model->n_states; i++) {
        const state_spec *spec = &stream->model->states[i];
        if (state_in[i] == NULL) return LEM_ERR_ARGUMENT;
        memmove(stream->state + spec->offset, state_in[i], spec->size * sizeof(float));
    }
    return lem_stream_run(stream, x, n_frames, stream->state, state_out, y);
}

/* ----------------------------------------------------------------------------------------------- batches */
/*
 * Several streams of one model stepped together (lem_batch_push). The batch's scratch is a stream of
 * max_streams * max_chunk frames ("work"), whose buffers hold every active stream's frames stream after stream
 * (row k * n + t: stream k, frame t). Layers that treat frames independently (linear, affine, add, activation,
 * embedding, layer norm) run once over all those rows; the input products of LSTM layers too; their recurrent
 * products run once per frame for all streams (the kernels' matmat with one vector per stream: each weight block
 * read once per step). Any other layer (GRU, causal conv, layers added later) runs stream by stream in the
 * stream's own scratch. Every value is computed by the same operations in the same order as lem_stream_push, so
 * results are bitwise those of separate streams.
 */
struct lem_batch {
    const lem_model *model;
    size_t max_streams, max_chunk;
    lem_stream *work;     /* scratch of max_streams * max_chunk frames */
    float *hidden;        /* [max_streams, hp] h of each stream, then [max_streams, hp] a projected LSTM's u */
    lem_stream **active;  /* the streams that run in this push (input accepted) */
    size_t *where;        /* their index in the caller's arrays */
};

static size_t batch_hidden_stride(const lem_model *m) { return padded(m->max_hidden ? m->max_hidden : 1); }

size_t lem_batch_bytes_for(const lem_model *model, size_t max_streams, size_t max_chunk) {
    if (model == NULL) return 0;
    return sizeof(lem_batch) + lem_stream_bytes_for(model, max_streams * max_chunk)
           + (2 * max_streams * batch_hidden_stride(model) + LEM_PAD) * sizeof(float) + 64u
           + max_streams * (sizeof(lem_stream *) + sizeof(size_t));
}

void lem_batch_free(lem_batch *batch) {
    if (batch == NULL) return;
    lem_stream_free(batch->work);
    aligned_free(batch->hidden);
    free(batch->active);
    free(batch->where);
    free(batch);
}

lem_batch *lem_batch_create(const lem_model *model, size_t max_streams, size_t max_chunk, int *status) {
    lem_batch *b;
    if (model == NULL || max_streams == 0 || max_chunk == 0 || max_streams > MAX_DIM || max_chunk > MAX_DIM
        || max_streams * max_chunk > MAX_DIM) {
        fail(LEM_ERR_ARGUMENT, status, "lem_batch_create: expected a model, max_streams >= 1 and max_chunk >= 1");
        return NULL;
    }
    b = (lem_batch *)calloc(1, sizeof *b);
    if (b == NULL) goto no_memory;
    b->model = model;
    b->max_streams = max_streams;
    b->max_chunk = max_chunk;
    b->work = lem_stream_create(model, max_streams * max_chunk, status);
    b->hidden = (float *)aligned_zeros((2 * max_streams * batch_hidden_stride(model) + LEM_PAD) * sizeof(float));
    b->active = (lem_stream **)calloc(max_streams, sizeof(lem_stream *));
    b->where = (size_t *)calloc(max_streams, sizeof(size_t));
    if (b->work == NULL || b->hidden == NULL || b->active == NULL || b->where == NULL) goto no_memory;
    if (status != NULL) *status = LEM_OK;
    return b;
no_memory:
    lem_batch_free(b);
    fail(LEM_ERR_NO_MEMORY, status, "out of memory");
    return NULL;
}

size_t lem_batch_max_streams(const lem_batch *batch) { return batch == NULL ? 0 : batch->max_streams; }

/* An LSTM layer (projected or not) for m streams of n frames each: rows k * n + t of the work buffers. */
static void batch_lstm(lem_batch *b, const op *o, size_t m, size_t n) {
    lem_stream *w = b->work;
    const lem_model *model = b->model;
    size_t h = o->p[0], p = o->type == OP_LSTM_PROJ ? o->p[3] : h, hp = batch_hidden_stride(model);
    size_t in_stride = padded(model->widths[o->in0]), out_stride = padded(model->widths[o->out]);
    size_t rows = m * n, k, t, r;
    const float *in = w->buffers[o->in0];
    float *out = w->buffers[o->out], *hidden = b->hidden, *u = b->hidden + b->max_streams * hp;
    for (r = 0; r < rows; r++) memcpy(w->gates + r * 4 * h, o->m[2].f, 4 * h * sizeof(float));
    matmat(w, &o->m[0], in, in_stride, rows, w->gates, 4 * h); /* W_ih x_t + b for every frame of every stream */
    for (k = 0; k < m; k++) memcpy(hidden + k * hp, b->active[k]->state + o->p[1], p * sizeof(float));
    for (t = 0; t < n; t++) {
        /* frame t of every stream: its gates rows are n * 4h apart */
        matmat(w, &o->m[1], hidden, hp, m, w->gates + t * 4 * h, n * 4 * h);
        for (k = 0; k < m; k++) {
            float *c = b->active[k]->state + o->p[2], *g = w->gates + (k * n + t) * 4 * h;
            if (o->type == OP_LSTM_PROJ) {
                lstm_gates(model, g, c, u + k * hp, h);
                memset(hidden + k * hp, 0, p * sizeof(float));
            } else {
                lstm_gates(model, g, c, hidden + k * hp, h);
                memcpy(out + (k * n + t) * out_stride, hidden + k * hp, h * sizeof(float));
            }
        }
        if (o->type == OP_LSTM_PROJ) {
            matmat(w, &o->m[3], u, hp, m, hidden, hp); /* h = W_hr u */
            for (k = 0; k < m; k++) memcpy(out + (k * n + t) * out_stride, hidden + k * hp, p * sizeof(float));
        }
    }
    for (k = 0; k < m; k++) memcpy(b->active[k]->state + o->p[1], hidden + k * hp, p * sizeof(float));
}

/* A layer run stream by stream in each stream's own buffers (its rows copied in and the result copied back). */
static void batch_op_each(lem_batch *b, const op *o, size_t m, size_t n) {
    const lem_model *model = b->model;
    lem_stream *w = b->work;
    size_t k, in0 = o->in0, in1 = o->in1, out = o->out;
    size_t in0_rows = n * padded(model->widths[in0]), out_rows = n * padded(model->widths[out]);
    for (k = 0; k < m; k++) {
        lem_stream *s = b->active[k];
        memcpy(s->buffers[in0], w->buffers[in0] + k * in0_rows, in0_rows * sizeof(float));
        if (in1 < model->n_buffers && in1 != in0) {
            size_t in1_rows = n * padded(model->widths[in1]);
            memcpy(s->buffers[in1], w->buffers[in1] + k * in1_rows, in1_rows * sizeof(float));
        }
        run_op(s, o, n);
        memcpy(w->buffers[out] + k * out_rows, s->buffers[out], out_rows * sizeof(float));
    }
}

static void batch_run_ops(lem_batch *b, size_t m, size_t n) {
    size_t i;
    for (i = 0; i < b->model->n_ops; i++) {
        const op *o = &b->model->ops[i];
        switch (o->type) {
            case OP_LINEAR:
            case OP_AFFINE:
            case OP_ADD:
            case OP_ACT:
            case OP_EMBED:
            case OP_LAYERNORM:
                run_op(b->work, o, m * n); /* frame by frame: all streams' rows at once */
                break;
            case OP_LSTM:
            case OP_LSTM_PROJ:
                batch_lstm(b, o, m, n);
                break;
            default:
                batch_op_each(b, o, m, n);
                break;
        }
    }
}

static int batch_push_any(lem_batch *b, lem_stream *const *streams, size_t n_streams, const float *x,
                          const int32_t *ids, size_t n_frames, float *y, int *statuses) {
    const lem_model *model;
    size_t v, k, t, m = 0, piece, done, n, in_w, out_w, in_stride, out_stride;
    int first = LEM_OK;
    if (b == NULL || streams == NULL || y == NULL || statuses == NULL || (x == NULL && ids == NULL)
        || n_frames == 0 || n_streams == 0 || n_streams > b->max_streams)
        return LEM_ERR_ARGUMENT;
    model = b->model;
    if ((model->input_kind == LEM_INPUT_TOKEN_IDS) != (ids != NULL)) return LEM_ERR_ARGUMENT;
    for (v = 0; v < n_streams; v++)
        if (streams[v] == NULL || streams[v]->model != model) return LEM_ERR_ARGUMENT;
    if (n_streams == 1) /* the stream's own push: the same results, without the batch's copies */
        return statuses[0] = push_any(streams[0], x, ids, n_frames, y);
    in_w = model->input_width;
    out_w = model->output_width;
    in_stride = padded(in_w);
    out_stride = padded(out_w);
    piece = b->max_chunk;
    for (v = 0; v < n_streams; v++) { /* a stream whose input is refused is left as it was */
        lem_stream *s = streams[v];
        statuses[v] = LEM_OK;
        if (ids == NULL) {
            if (!lem_all_finite(x + v * n_frames * in_w, n_frames * in_w)) statuses[v] = LEM_ERR_NONFINITE_INPUT;
        } else {
            for (t = 0; t < n_frames; t++) {
                int32_t id = ids[v * n_frames + t];
                if (id < 0 || (size_t)id >= model->vocabulary) statuses[v] = LEM_ERR_ARGUMENT;
            }
        }
        if (statuses[v] != LEM_OK) continue;
        memcpy(s->backup, s->state, model->state_size * sizeof(float));
        if (s->max_chunk < piece) piece = s->max_chunk;
        b->active[m] = s;
        b->where[m++] = v;
    }
    for (done = 0; m > 0 && done < n_frames; done += n) {
        lem_stream *w = b->work;
        n = n_frames - done < piece ? n_frames - done : piece;
        for (k = 0; k < m; k++) {
            size_t at = b->where[k] * n_frames + done;
            if (ids == NULL) {
                for (t = 0; t < n; t++)
                    memcpy(w->buffers[0] + (k * n + t) * in_stride, x + (at + t) * in_w, in_w * sizeof(float));
            } else {
                memcpy(w->ids + k * n, ids + at, n * sizeof(int32_t));
            }
        }
        batch_run_ops(b, m, n);
        for (k = 0; k < m; k++) {
            size_t at = b->where[k] * n_frames + done;
            for (t = 0; t < n; t++)
                memcpy(y + (at + t) * out_w, w->buffers[model->output_buffer] + (k * n + t) * out_stride,
                       out_w * sizeof(float));
        }
    }
    for (k = 0; k < m; k++) {
        lem_stream *s = b->active[k];
        if (!lem_all_finite(y + b->where[k] * n_frames * out_w, n_frames * out_w)
            || !lem_all_finite(s->state, model->state_size)) {
            memcpy(s->state, s->backup, model->state_size * sizeof(float));
            statuses[b->where[k]] = LEM_ERR_NONFINITE_RESULT;
        }
    }
    for (v = 0; v < n_streams && first == LEM_OK; v++) first = statuses[v];
    return first;
}

int lem_batch_push(lem_batch *batch, lem_stream *const *streams, size_t n_streams, const float *x,
                   size_t n_frames, float *y, int *statuses) {
    if (x == NULL) return LEM_ERR_ARGUMENT;
    return batch_push_any(batch, streams, n_streams, x, NULL, n_frames, y, statuses);
}

int lem_batch_push_ids(lem_batch *batch, lem_stream *const *streams, size_t n_streams, const int32_t *ids,
                       size_t n_frames, float *y, int *statuses) {
    if (ids == NULL) return LEM_ERR_ARGUMENT;
    return batch_push_any(batch, streams, n_streams, NULL, ids, n_frames, y, statuses);
}
