/*
 * lstm_edge_mcu: the keyword spotter of lstm-edge on a microcontroller (C99, no heap, no libm on the hot path).
 *
 * Three parts, each a struct the caller places where it likes (static storage, its own arena): nothing here
 * allocates.
 *
 *   model     int8 model whose weights are `const` arrays (in flash), written by `lstm-edge build-c MODEL_DIR
 *             --target cortex-m4|cortex-m33|cortex-m55` from the directory's model.int8.lec (model_mcu.c). The
 *             layers are the C library's (docs/manifest.md, "C weight files") that a keyword spotter uses: linear,
 *             affine, residual add, ReLU/tanh/sigmoid and LSTM; the build refuses others by name. Arithmetic is
 *             lstm_edge_model.c's int8 path (per-frame input quantization, int32 dot products, float gates), so
 *             the outputs are bitwise those of the portable kernels of runtime/native given the same features.
 *   frontend  log-mel features of 16-bit PCM in float32 (the desktop library computes in double), tables made at
 *             init; a push never calls libm.
 *   detector  the streaming keyword detector of lstm_edge.runtime.kws (softmax, moving average, threshold,
 *             refractory time, onset search), float32.
 *
 * Kernels, chosen at compile time: Helium (MVE) when __ARM_FEATURE_MVE is set (Cortex-M55), the DSP extension's
 * dual 16-bit MACs (SMLAD) when __ARM_FEATURE_DSP is (Cortex-M4, M33), portable C otherwise; every set gives the
 * same int32 dot products, hence bitwise the same outputs. lem_mcu_kernel_name() says which one was built.
 */
#ifndef LSTM_EDGE_MCU_H
#define LSTM_EDGE_MCU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LEM_MCU_PAD 16        /* matrix rows and quantized vectors are padded to a multiple of this */
#define LEM_MCU_MAX_FFT 512   /* frontend limits (the struct holds its tables) */
#define LEM_MCU_MAX_MELS 64
#define LEM_MCU_MAX_LABELS 32
#define LEM_MCU_MAX_HISTORY_VALUES 1536 /* detector: rows kept (max(lookback frames + 1, smoothing)) x labels */

enum { LEM_MCU_OK = 0, LEM_MCU_ERR_ARGUMENT = -1, LEM_MCU_ERR_ARENA = -2, LEM_MCU_ERR_CONFIG = -3,
       LEM_MCU_ERR_NONFINITE = -4 };
enum { LEM_MCU_LINEAR = 1, LEM_MCU_AFFINE = 2, LEM_MCU_ADD = 3, LEM_MCU_ACT = 4, LEM_MCU_LSTM = 5 };
enum { LEM_MCU_RELU = 1, LEM_MCU_TANH = 2, LEM_MCU_SIGMOID = 3 };

/* An int8 matrix: rows x stride values (cols padded with zeros to a multiple of 16, or of 8 in layout 4), a scale
 * per row.
 * layout 0: row-major. layout 4 (the DSP kernels' own, written by build-c for Cortex-M4/M33): rows in blocks of
 * four, each block column group by column group, the four rows' next four values one after the other (16 bytes);
 * rows after the last whole block stay row-major. */
typedef struct {
    const int8_t *q;
    const float *scale;
    uint32_t rows, cols, stride, layout;
} lem_mcu_matrix;

/* One layer over numbered [width] float buffers (buffer 0 is the model input). p: LSTM hidden size and the
 * offsets of h and c in the state vector; activation kind. vec: linear bias / affine scale, shift / LSTM bias. */
typedef struct {
    uint32_t type, in0, in1, out;
    uint32_t p[3];
    lem_mcu_matrix w[2];
    const float *vec[2];
} lem_mcu_layer;

typedef struct {
    const char *name;
    uint32_t input_width, output_width, output_buffer, n_buffers, n_layers, state_size;
    const uint32_t *widths;     /* [n_buffers] */
    const lem_mcu_layer *layers;
    const float *initial_state; /* [state_size], or NULL for zeros */
    uint32_t max_gates, max_stride;
} lem_mcu_model;

/* The model's run-time memory, all inside the arena given to lem_mcu_stream_init. */
typedef struct {
    const lem_mcu_model *model;
    float *state;    /* [state_size] */
    float **buffers; /* [n_buffers] of [width padded] */
    float *gates;    /* [max_gates] */
    float *hidden;   /* [max hidden padded] */
    int8_t *quant;   /* [max_stride] */
    int32_t *quant16; /* [max_stride / 2] DSP kernels: the quantized vector as 16-bit pairs */
} lem_mcu_stream;

const char *lem_mcu_kernel_name(void);
/* The weight layout the kernels built here read (0 or 4, see lem_mcu_matrix); stream_init refuses others. */
uint32_t lem_mcu_kernel_layout(void);
/* Bytes of arena a stream of this model needs (model_mcu.h also has it as LEM_MCU_ARENA_BYTES). */
size_t lem_mcu_arena_bytes(const lem_mcu_model *model);
/* A stream at the model's initial state, its buffers carved from arena (aligned like a pointer, arena_bytes long). */
int lem_mcu_stream_init(lem_mcu_stream *stream, const lem_mcu_model *model, void *arena, size_t arena_bytes);
void lem_mcu_stream_reset(lem_mcu_stream *stream);
/* One frame: x[input_width] features -> y[output_width] outputs; the state is carried. LEM_MCU_ERR_NONFINITE: x
 * holds NaN or inf (nothing changed), or the outputs do (the state may too: reset the stream). */
int lem_mcu_stream_push(lem_mcu_stream *stream, const float *x, float *y);

/* ------------------------------------------------------------------------------------------------ frontend */
typedef struct {
    int sample_rate, n_fft, win_length, hop_length, n_mels;
    double f_min, f_max, log_floor;
} lem_mcu_frontend_config;

typedef struct {
    lem_mcu_frontend_config config;
    int half, n_bins;
    float log_floor;
    float window[LEM_MCU_MAX_FFT];          /* periodic Hann / 32768 (int16 samples in, unit scale) */
    float twiddle[LEM_MCU_MAX_FFT];         /* FFT twiddles in the order its passes read them */
    float split[LEM_MCU_MAX_FFT];           /* cos, sin of -2 pi k / n_fft, k < half */
    uint16_t bit_reverse[LEM_MCU_MAX_FFT / 2];
    uint16_t mel_first[LEM_MCU_MAX_MELS], mel_count[LEM_MCU_MAX_MELS];
    float mel_weight[2 * (LEM_MCU_MAX_FFT / 2 + 1)]; /* each bin lies in at most two triangles */
    int16_t held[LEM_MCU_MAX_FFT];
    int fill, skip;
    float re[LEM_MCU_MAX_FFT / 2], im[LEM_MCU_MAX_FFT / 2], power[LEM_MCU_MAX_FFT / 2 + 1];
} lem_mcu_frontend;

/* Tables from the config (cos, log10 and pow at init only); LEM_MCU_ERR_CONFIG when it exceeds the limits. */
int lem_mcu_frontend_init(lem_mcu_frontend *frontend, const lem_mcu_frontend_config *config);
void lem_mcu_frontend_reset(lem_mcu_frontend *frontend);
/* Append samples; writes each completed frame's n_mels features to features (room for max_frames frames) and
 * returns the frame count, or LEM_MCU_ERR_ARGUMENT when max_frames is too small (nothing consumed). */
long lem_mcu_frontend_push(lem_mcu_frontend *frontend, const int16_t *pcm, size_t n_samples, float *features,
                           size_t max_frames);

/* ------------------------------------------------------------------------------------------------ detector */
typedef struct {
    int n_labels;
    const char *const *labels; /* not copied: must outlive the detector */
    int scores_are_logits;
    float threshold;
    int smoothing_frames;
    float refractory_s, max_event_s, onset_level, lookback_s;
    int sample_rate, win_length, hop_length;
} lem_mcu_detector_config;

typedef struct {
    int label_index;
    const char *label;
    long start_ms, end_ms; /* from the start of the stream, rounded to 1 ms */
    float score;
} lem_mcu_detection;

typedef struct {
    lem_mcu_detector_config config;
    unsigned char is_keyword[LEM_MCU_MAX_LABELS];
    long refractory_frames, max_event_frames, capacity;
    float history[LEM_MCU_MAX_HISTORY_VALUES]; /* [capacity][n_labels] ring of posteriors */
    long history_len, history_next, frame;
    int open, open_index;
    long opened, onset, quiet_until;
    float open_score;
} lem_mcu_detector;

int lem_mcu_detector_init(lem_mcu_detector *detector, const lem_mcu_detector_config *config);
void lem_mcu_detector_reset(lem_mcu_detector *detector);
/* One frame of n_labels scores: 1 when it closes a detection (written to *detection), else 0. */
int lem_mcu_detector_push(lem_mcu_detector *detector, const float *scores, lem_mcu_detection *detection);
/* Close a detection still open at the end of the audio: 1 and *detection filled, or 0. */
int lem_mcu_detector_flush(lem_mcu_detector *detector, lem_mcu_detection *detection);

#ifdef __cplusplus
}
#endif

#endif /* LSTM_EDGE_MCU_H */
