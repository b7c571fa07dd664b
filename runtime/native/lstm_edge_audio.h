/*
 * lstm_edge_audio: streaming log-mel frontend and keyword detector of lstm-edge, in portable C99 (libm only).
 *
 * It computes exactly what lstm_edge.runtime.frontend.LogMelFrontend and lstm_edge.runtime.kws.KeywordStream
 * compute in numpy, so an app (JNI on Android, a bridging header on iOS, a C program on a board) can turn PCM into
 * the model's input features and the model's output into detections without Python.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Frontend (le_frontend_config <- manifest.json "frontend"), field by field:
 *   sample_rate  <- frontend.sample_rate  (Hz; the PCM must already be at this rate, mono)
 *   n_fft        <- frontend.n_fft        (FFT length; this implementation needs a power of two >= 4)
 *   win_length   <- frontend.win_length   (samples per frame, <= n_fft; the frame is zero-padded at its end)
 *   hop_length   <- frontend.hop_length   (samples between frame starts)
 *   n_mels       <- frontend.n_mels       (features per frame = the model input's last dimension)
 *   f_min, f_max <- frontend.f_min, frontend.f_max (Hz, edges of the lowest and highest mel triangle)
 *   log_floor    <- frontend.log_floor    (feature = ln(max(mel_power, log_floor)))
 *   frontend.window must be "hann_periodic" and frontend.mel_scale "htk": the only ones defined; the app refuses
 *   any other value before filling the struct.
 * What is computed: framing is "valid" (no centre padding): frame i covers samples [i*hop, i*hop + win), so N
 * samples give (N - win) / hop + 1 frames (0 when N < win). int16 samples are scaled by 1/32768; float samples are
 * used as they are. Each frame is multiplied by a periodic Hann window 0.5 - 0.5 cos(2 pi n / win), zero-padded to
 * n_fft, and its power spectrum |rfft|^2 (n_fft/2 + 1 bins at k * sample_rate / n_fft Hz) is mapped onto n_mels
 * triangles of unit peak (no area normalisation) whose n_mels + 2 edges are equally spaced on the HTK mel scale
 * mel = 2595 log10(1 + f / 700) between f_min and f_max. No pre-emphasis, no dithering, no mean/std normalisation:
 * a model exported by lstm-edge from recipes/kws normalises its input inside the graph (FeatureNormalization), so
 * these features go into the model as they are. Arithmetic after windowing is double precision; outputs are float.
 * Leftover samples are kept between pushes, so the features do not depend on how the audio is chunked.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Detector (le_detector_config), field by field. The detector settings come from the manifest's detector section
 * when the model directory has one, else they are the defaults of lstm_edge.runtime.kws.DetectorConfig (shown):
 *   n_labels, labels   <- manifest.json "labels" (label i = output index i); "_silence_" and "_unknown_" are never
 *                         detected, every other label is a keyword
 *   scores_are_logits  <- 1 when the model outputs logits (the shipped keyword spotter does): the detector applies
 *                         a softmax per frame; 0 when the app passes probabilities already
 *   threshold          <- threshold (0.6): a smoothed posterior at or above it opens a detection; the detection
 *                         closes on the first frame where it is below (hysteresis: it stays open until then)
 *   smoothing_frames   <- smoothing_frames (8): moving average of posteriors over the last frames (fewer at start)
 *   refractory_s       <- refractory_s (0.6): after a detection closes, no new one opens for this long
 *   max_event_s        <- max_event_s (1.0): a detection is closed at the latest this long after it opened
 *   onset_level        <- onset_level (0.2): raw posterior that marks where the keyword started
 *   lookback_s         <- lookback_s (1.2): how far back that onset is searched
 *   sample_rate, win_length, hop_length <- frontend.* (frame times: frame i ends at (i*hop + win) / sample_rate s)
 * A detection holds the label index, its name, start and end in seconds from the start of the stream, and the peak
 * smoothed posterior while it was open (the score), like lstm_edge.runtime.kws.Detection.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Memory: create() allocates everything; push/reset never allocate. Objects are not thread-safe: one per stream.
 */
#ifndef LSTM_EDGE_AUDIO_H
#define LSTM_EDGE_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LE_AUDIO_VERSION "0.1.0"

typedef enum {
    LE_OK = 0,
    LE_ERR_ARGUMENT = -1,     /* a NULL pointer or a negative count */
    LE_ERR_CONFIG = -2,       /* a config field out of range; see le_last_config_error() */
    LE_ERR_NO_MEMORY = -3,
    LE_ERR_OUTPUT_SPACE = -4, /* the output buffer is smaller than the push needs; nothing was consumed */
    LE_ERR_NONFINITE = -5     /* a float sample or score is NaN or inf; nothing was consumed */
} le_status;

/* A short English description of a status code. */
const char *le_status_string(int status);
/* The field and the expected range of the last create() that returned LE_ERR_CONFIG (per process, not per thread). */
const char *le_last_config_error(void);

/* ----------------------------------------------------------------------------------------------- frontend */
typedef struct {
    int sample_rate;
    int n_fft;
    int win_length;
    int hop_length;
    int n_mels;
    double f_min;
    double f_max;
    double log_floor;
} le_frontend_config;

typedef struct le_frontend le_frontend;

/* The settings of the shipped keyword spotter (16 kHz, 25 ms windows, 10 ms hop, 40 mels, 20-7600 Hz, floor 1e-6). */
le_frontend_config le_frontend_default_config(void);
/* A new stream; NULL with *status set (when status is not NULL) on a bad config or no memory. */
le_frontend *le_frontend_create(const le_frontend_config *config, int *status);
void le_frontend_free(le_frontend *frontend);
/* Forget leftover samples: the stream is as new. */
void le_frontend_reset(le_frontend *frontend);
int le_frontend_n_mels(const le_frontend *frontend);
/* Samples held back until they complete a frame. */
size_t le_frontend_pending_samples(const le_frontend *frontend);
/* Frames the next push of n_samples will write (exact, given the samples held back now). */
size_t le_frontend_frames_for(const le_frontend *frontend, size_t n_samples);
/* An upper bound of frames for a push of n_samples whatever the stream holds: n_samples / hop_length + 1. */
size_t le_frontend_max_frames(const le_frontend *frontend, size_t n_samples);

/*
 * Append n_samples mono samples and write the completed frames to features (row-major, n_mels floats per frame,
 * room for max_frames frames). Returns the number of frames written (>= 0) or a negative le_status; on an error
 * nothing is consumed.
 */
long le_frontend_push_int16(le_frontend *frontend, const int16_t *pcm, size_t n_samples, float *features,
                            size_t max_frames);
long le_frontend_push_float(le_frontend *frontend, const float *pcm, size_t n_samples, float *features,
                            size_t max_frames);

/* ----------------------------------------------------------------------------------------------- detector */
typedef struct {
    int n_labels;
    const char *const *labels; /* n_labels names, copied at create */
    int scores_are_logits;
    double threshold;
    int smoothing_frames;
    double refractory_s;
    double max_event_s;
    double onset_level;
    double lookback_s;
    int sample_rate;
    int win_length;
    int hop_length;
} le_detector_config;

typedef struct {
    int label_index;
    const char *label; /* owned by the detector, valid until le_detector_free */
    double start_s;
    double end_s;
    double score;
} le_detection;

typedef struct le_detector le_detector;

/* lstm_edge.runtime.kws.DetectorConfig's defaults with the shipped frontend's timing; labels are left to the app. */
le_detector_config le_detector_default_config(void);
le_detector *le_detector_create(const le_detector_config *config, int *status);
void le_detector_free(le_detector *detector);
void le_detector_reset(le_detector *detector);
/* The most detections a push of n_frames can complete: (n_frames + 1) / 2. */
size_t le_detector_max_detections(size_t n_frames);
/*
 * Consume n_frames rows of n_labels scores (logits or probabilities, row-major) and write the detections they
 * complete (room for max_detections; le_detector_max_detections(n_frames) always suffices). Returns the number
 * written or a negative le_status (nothing consumed).
 */
long le_detector_push(le_detector *detector, const float *scores, size_t n_frames, le_detection *detections,
                      size_t max_detections);
/* Close a detection still open at the end of the audio: returns 1 and fills *detection, or 0. */
int le_detector_flush(le_detector *detector, le_detection *detection);

#ifdef __cplusplus
}
#endif

#endif /* LSTM_EDGE_AUDIO_H */
