/*
 * lstm_edge_model: the streaming models of lstm-edge in dependency-free C99 (libm only), float32 or int8.
 *
 * A model is read at run time from the directory's C weight file (model.lec / model.int8.lec, format in
 * docs/manifest.md, "C weight file"): a short list of layers (linear, LSTM, projected LSTM, GRU, causal convolution,
 * embedding, layer norm, elementwise affine, activations, residual add) over [T, width] buffers, with their weights. The model is
 * immutable after create and may be shared by many threads; each stream owns its state and scratch memory and
 * belongs to one thread at a time (as a Python Stream does).
 *
 * State: the same named tensors as the manifest's "states", in manifest order, concatenated as float32 into one
 * vector of lem_model_state_size() values (lem_model_state_info() gives each one's name, offset and size).
 *
 * int8 (model.int8.lec): linear and recurrent weights are int8 with one float scale per output row; each input
 * vector of a matrix product (a frame's activations, an LSTM's h) is quantized to int8 with its own scale
 * (max|v| / 127) at run time; biases, state, gate arithmetic and every other layer stay float32.
 *
 * Kernels: portable C everywhere; AVX2 or AVX-512 VNNI on x86-64 and NEON (with the dot-product extension when the
 * CPU has it) on aarch64, chosen at lem_model_create from what the CPU reports. lem_kernel_name() says which one runs.
 *
 * Memory: create allocates the weights (copied into an aligned arena, columns padded to 32) and stream_create
 * allocates the state and [max_chunk, width] scratch buffers; push, reset and state calls never allocate.
 * A push of more than max_chunk frames is run max_chunk frames at a time.
 */
#ifndef LSTM_EDGE_MODEL_H
#define LSTM_EDGE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LEM_VERSION "0.1.0"
#define LEM_FILE_VERSION 3 /* reads versions 1 to 3 */

typedef enum {
    LEM_OK = 0,
    LEM_ERR_ARGUMENT = -1,     /* a NULL pointer, a zero count or a wrong input kind */
    LEM_ERR_FORMAT = -2,       /* the weight file is not a lstm-edge C weight file; see lem_last_error() */
    LEM_ERR_TRUNCATED = -3,    /* the weight file ends before its header says it does */
    LEM_ERR_CHECKSUM = -4,     /* the weight file's payload does not match its CRC-32 */
    LEM_ERR_NO_MEMORY = -5,
    LEM_ERR_NONFINITE_INPUT = -6,  /* the chunk holds NaN or inf: nothing changed */
    LEM_ERR_NONFINITE_RESULT = -7, /* the output or new state would hold NaN or inf: the state was kept */
    LEM_ERR_IO = -8            /* the file could not be read */
} lem_status;

typedef enum { LEM_INPUT_FEATURES = 0, LEM_INPUT_TOKEN_IDS = 1 } lem_input_kind;

typedef struct lem_model lem_model;
typedef struct lem_stream lem_stream;

typedef struct {
    const char *name; /* manifest state name, e.g. "lstm_h" */
    size_t offset;    /* first value in the concatenated state vector */
    size_t size;      /* values (product of the manifest shape) */
} lem_state_info;

const char *lem_status_string(int status);
/* What the last failing create said (which field, expected vs got); per process, not per thread. */
const char *lem_last_error(void);
/* "portable", "avx2", "avx512-vnni", "neon", "neon-dotprod" or "wasm-simd128": the kernels this process uses. */
const char *lem_kernel_name(void);

/* A model from a weight file in memory (the bytes are copied; the buffer may be freed afterwards). */
lem_model *lem_model_from_memory(const void *data, size_t size, int *status);
lem_model *lem_model_from_file(const char *path, int *status);
void lem_model_free(lem_model *model);

lem_input_kind lem_model_input_kind(const lem_model *model);
size_t lem_model_input_width(const lem_model *model);  /* features per frame (1 for token ids) */
size_t lem_model_output_width(const lem_model *model); /* outputs per frame */
size_t lem_model_state_size(const lem_model *model);   /* floats in the concatenated state */
size_t lem_model_state_count(const lem_model *model);
int lem_model_state_info(const lem_model *model, size_t index, lem_state_info *info);
int lem_model_is_int8(const lem_model *model);
/* The file's metadata: "key=value" lines (labels=..., frontend.n_mels=..., detector.threshold=...), or "". */
const char *lem_model_metadata(const lem_model *model);
/* Bytes the model holds (weights arena) and a stream of this max_chunk would hold. */
size_t lem_model_bytes(const lem_model *model);
size_t lem_stream_bytes_for(const lem_model *model, size_t max_chunk);

/* A stream at the initial state (zeros or the learned values); max_chunk >= 1 frames per internal step. */
lem_stream *lem_stream_create(const lem_model *model, size_t max_chunk, int *status);
void lem_stream_free(lem_stream *stream);
void lem_stream_reset(lem_stream *stream);
/* Copy the state out / in (lem_model_state_size floats). set refuses NaN/inf. */
int lem_stream_get_state(const lem_stream *stream, float *state);
int lem_stream_set_state(lem_stream *stream, const float *state);

/*
 * Run n_frames frames: x is [n_frames, input_width] float32 (features models), y gets [n_frames, output_width].
 * Returns LEM_OK or a negative lem_status; on an error the state is as before the call.
 */
int lem_stream_push(lem_stream *stream, const float *x, size_t n_frames, float *y);
/* Token-id models: ids[n_frames], each in [0, vocabulary). */
int lem_stream_push_ids(lem_stream *stream, const int32_t *ids, size_t n_frames, float *y);
/*
 * The pure step for bindings that keep the state themselves: state_in -> push -> state_out (both may alias).
 * x is float32 features or int32 ids by the model's input kind. The stream's own state is overwritten.
 */
int lem_stream_run(lem_stream *stream, const void *x, size_t n_frames, const float *state_in, float *state_out,
                   float *y);

/* The same with the state given per state (lem_model_state_count pointers, manifest order); state_out is the
 * concatenated vector. */
int lem_stream_run_parts(lem_stream *stream, const void *x, size_t n_frames, const float *const *state_in,
                         float *state_out, float *y);

/*
 * Batches: one step for several streams of one model at once. Each weight matrix is read once per step for all
 * of them (the kernels' several-vector products), so N streams cost much less than N pushes; every result is
 * bitwise what lem_stream_push gives each stream alone. The streams keep their own state (get/set/reset as
 * usual); a batch only holds scratch for max_streams streams of max_chunk frames, and belongs to one thread at a
 * time, as do the streams while they are pushed. A stream may appear once per call.
 */
typedef struct lem_batch lem_batch;

lem_batch *lem_batch_create(const lem_model *model, size_t max_streams, size_t max_chunk, int *status);
void lem_batch_free(lem_batch *batch);
size_t lem_batch_max_streams(const lem_batch *batch);
size_t lem_batch_bytes_for(const lem_model *model, size_t max_streams, size_t max_chunk);
/*
 * Push n_frames frames into each of n_streams (<= max_streams) streams of the batch's model: x is
 * [n_streams, n_frames, input_width] float32, y gets [n_streams, n_frames, output_width]. statuses[i] gets stream
 * i's own status: a stream whose chunk holds NaN/inf (or whose result would) is refused and keeps its state, the
 * others run as usual. Returns LEM_OK, or the first stream's error, or LEM_ERR_ARGUMENT for the call as a whole
 * (nothing changed then: a NULL pointer, zero counts, too many streams, a stream of another model).
 */
int lem_batch_push(lem_batch *batch, lem_stream *const *streams, size_t n_streams, const float *x,
                   size_t n_frames, float *y, int *statuses);
/* Token-id models: ids [n_streams, n_frames], each in [0, vocabulary) (a stream with an id outside is refused). */
int lem_batch_push_ids(lem_batch *batch, lem_stream *const *streams, size_t n_streams, const int32_t *ids,
                       size_t n_frames, float *y, int *statuses);

#ifdef __cplusplus
}
#endif

#endif /* LSTM_EDGE_MODEL_H */
