/*
 * Keyword-spotting firmware for Cortex-M boards under qemu-system-arm: PCM and frames come from the host through
 * semihosting, detections go to its stdout. The command line (semihosting arguments) picks the mode:
 *
 *   listen AUDIO.s16le [STATS.json]   16 kHz mono PCM -> one JSON object per detection, as `lstm-edge listen
 *                                      --json` prints them; STATS gets instructions per part, stack and kernels
 *   run FRAMES.f32 OUTPUTS.f32        float32 feature frames -> float32 model outputs (state carried)
 *   features AUDIO.s16le FEATURES.f32 PCM -> the frontend's float32 log-mel frames
 *
 * Instructions are counted with the SysTick timer under `qemu-system-arm -icount shift=0` (one instruction per
 * virtual nanosecond), calibrated at start against a loop of known length.
 */
#include <stdint.h>
#include <string.h>

#include "lstm_edge_mcu.h"
#include "model_mcu.h"

#define CHUNK_SAMPLES 1600 /* 100 ms at 16 kHz, as lstm-edge listen feeds audio */
#define MAX_CHUNK_FRAMES (CHUNK_SAMPLES / 160 + 1)

uint32_t lem_fw_stack_high_water(void);

/* ------------------------------------------------------------------------------------------- semihosting */
static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void lem_fw_exit(int code) {
    semihost(0x18, (void *)(uintptr_t)(code == 0 ? 0x20026u : 0x20024u)); /* ApplicationExit / RunTimeError */
    for (;;) {
    }
}

static int host_open(const char *path, int mode) {
    uint32_t block[3];
    block[0] = (uint32_t)(uintptr_t)path;
    block[1] = (uint32_t)mode;
    block[2] = (uint32_t)strlen(path);
    return semihost(0x01, block);
}

static void host_close(int handle) {
    uint32_t block[1];
    block[0] = (uint32_t)handle;
    semihost(0x02, block);
}

/* bytes read (the call returns how many were not) */
static size_t host_read(int handle, void *buffer, size_t n) {
    uint32_t block[3];
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)(uintptr_t)buffer;
    block[2] = (uint32_t)n;
    return n - (size_t)semihost(0x06, block);
}

static void host_write(int handle, const void *data, size_t n) {
    uint32_t block[3];
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)(uintptr_t)data;
    block[2] = (uint32_t)n;
    semihost(0x05, block);
}

/* ------------------------------------------------------------------------------------------- text output */
typedef struct {
    char text[256];
    size_t n;
} line;

static void put(line *l, const char *s) {
    while (*s && l->n < sizeof l->text - 1) l->text[l->n++] = *s++;
}

static void put_u(line *l, uint64_t v) {
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (k > 0 && l->n < sizeof l->text - 1) l->text[l->n++] = digits[--k];
}

/* value / 10^places as Python's repr prints a float rounded to that many places: "0.65", "1.0" */
static void put_decimal(line *l, long value, int places) {
    long unit = 1, frac;
    int k;
    char digits[8];
    for (k = 0; k < places; k++) unit *= 10;
    if (value < 0) {
        put(l, "-");
        value = -value;
    }
    put_u(l, (uint64_t)(value / unit));
    put(l, ".");
    frac = value % unit;
    for (k = places - 1; k >= 0; k--) {
        digits[k] = (char)('0' + frac % 10);
        frac /= 10;
    }
    for (k = places; k > 1 && digits[k - 1] == '0'; k--) {
    }
    digits[k] = '\0';
    put(l, digits);
}

/* ------------------------------------------------------------------------------------------- counting */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static uint32_t last_tick;

static void ticks_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enabled, processor clock, no interrupt */
    last_tick = SYST_CVR;
}

/* SysTick ticks since the previous call (the 24-bit counter counts down and wraps) */
static uint32_t ticks_since(void) {
    uint32_t now = SYST_CVR, elapsed = (last_tick - now) & 0x00FFFFFFu;
    last_tick = now;
    return elapsed;
}

#define CALIBRATION_LOOPS 1000000u

/* ticks for 2 * CALIBRATION_LOOPS instructions (subs + bne per turn) */
static uint32_t calibrate(void) {
    register uint32_t n __asm__("r0") = CALIBRATION_LOOPS;
    ticks_since();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n)::"cc");
    return ticks_since();
}

/* ------------------------------------------------------------------------------------------- state */
static void *arena[(LEM_MCU_ARENA_BYTES + sizeof(void *) - 1) / sizeof(void *)]; /* aligned like a pointer */
static lem_mcu_stream stream;
static lem_mcu_frontend frontend;
static lem_mcu_detector detector;
static int16_t pcm[CHUNK_SAMPLES];
static float features[MAX_CHUNK_FRAMES * LEM_MCU_MODEL_INPUTS];
static float outputs[LEM_MCU_MODEL_OUTPUTS];

static void print_detection(int out, const lem_mcu_detection *d) {
    const char *c;
    line l;
    l.n = 0;
    put(&l, "{\"label\": \"");
    for (c = d->label; *c && l.n < sizeof l.text - 2; c++) { /* JSON string: quote and backslash escaped */
        if (*c == '"' || *c == '\\') l.text[l.n++] = '\\';
        l.text[l.n++] = *c;
    }
    put(&l, "\", \"start\": ");
    put_decimal(&l, d->start_ms, 3);
    put(&l, ", \"end\": ");
    put_decimal(&l, d->end_ms, 3);
    put(&l, ", \"score\": ");
    put_decimal(&l, (long)(d->score * 10000.0f + 0.5f), 4);
    put(&l, "}\n");
    host_write(out, l.text, l.n);
}

static void put_field(int handle, const char *name, uint64_t value, int last) {
    line l;
    l.n = 0;
    put(&l, "  \"");
    put(&l, name);
    put(&l, "\": ");
    put_u(&l, value);
    put(&l, last ? "\n" : ",\n");
    host_write(handle, l.text, l.n);
}

static int listen(const char *audio, const char *stats) {
    int in = host_open(audio, 1), out = host_open(":tt", 4);
    uint64_t frontend_ticks = 0, model_ticks = 0, detector_ticks = 0, frames = 0;
    uint32_t calibration;
    size_t got;
    long n, t;
    lem_mcu_detection d;
    if (in < 0 || out < 0) return 1;
    ticks_start();
    calibration = calibrate();
    while ((got = host_read(in, pcm, sizeof pcm)) >= sizeof(int16_t)) {
        ticks_since();
        n = lem_mcu_frontend_push(&frontend, pcm, got / sizeof(int16_t), features, MAX_CHUNK_FRAMES);
        frontend_ticks += ticks_since();
        if (n < 0) return 1;
        for (t = 0; t < n; t++) {
            int closed;
            ticks_since();
            if (lem_mcu_stream_push(&stream, features + t * LEM_MCU_MODEL_INPUTS, outputs) != LEM_MCU_OK) return 1;
            model_ticks += ticks_since();
            closed = lem_mcu_detector_push(&detector, outputs, &d);
            detector_ticks += ticks_since();
            if (closed) print_detection(out, &d);
            frames++;
        }
    }
    if (lem_mcu_detector_flush(&detector, &d)) print_detection(out, &d);
    host_close(in);
    if (stats != NULL) {
        int handle = host_open(stats, 4);
        if (handle < 0) return 1;
        host_write(handle, "{\n  \"kernel\": \"", 15);
        host_write(handle, lem_mcu_kernel_name(), strlen(lem_mcu_kernel_name()));
        host_write(handle, "\",\n", 3);
        put_field(handle, "frames", frames, 0);
        put_field(handle, "calibration_instructions", 2u * CALIBRATION_LOOPS, 0);
        put_field(handle, "calibration_ticks", calibration, 0);
        put_field(handle, "frontend_ticks", frontend_ticks, 0);
        put_field(handle, "model_ticks", model_ticks, 0);
        put_field(handle, "detector_ticks", detector_ticks, 0);
        put_field(handle, "stack_high_water_bytes", lem_fw_stack_high_water(), 1);
        host_write(handle, "}\n", 2);
        host_close(handle);
    }
    return 0;
}

static int run(const char *frames_path, const char *outputs_path) {
    int in = host_open(frames_path, 1), out = host_open(outputs_path, 5);
    if (in < 0 || out < 0) return 1;
    while (host_read(in, features, LEM_MCU_MODEL_INPUTS * sizeof(float)) == LEM_MCU_MODEL_INPUTS * sizeof(float)) {
        if (lem_mcu_stream_push(&stream, features, outputs) != LEM_MCU_OK) return 1;
        host_write(out, outputs, sizeof outputs);
    }
    host_close(in);
    host_close(out);
    return 0;
}

static int features_of(const char *audio, const char *features_path) {
    int in = host_open(audio, 1), out = host_open(features_path, 5);
    size_t got;
    long n;
    if (in < 0 || out < 0) return 1;
    while ((got = host_read(in, pcm, sizeof pcm)) >= sizeof(int16_t)) {
        n = lem_mcu_frontend_push(&frontend, pcm, got / sizeof(int16_t), features, MAX_CHUNK_FRAMES);
        if (n < 0) return 1;
        host_write(out, features, (size_t)n * LEM_MCU_MODEL_INPUTS * sizeof(float));
    }
    host_close(in);
    host_close(out);
    return 0;
}

int main(void) {
    static char command_line[512];
    char *args[4], *p;
    int n_args = 0;
    uint32_t block[2];
    block[0] = (uint32_t)(uintptr_t)command_line;
    block[1] = sizeof command_line - 1;
    if (semihost(0x15, block) != 0) return 2;
    command_line[block[1]] = '\0';
    for (p = command_line; *p && n_args < 4;) { /* words separated by spaces; the first is the program */
        while (*p == ' ') *p++ = '\0';
        if (*p) args[n_args++] = p;
        while (*p && *p != ' ') p++;
    }
    if (lem_mcu_stream_init(&stream, &lem_mcu_model_data, arena, sizeof arena) != LEM_MCU_OK
        || lem_mcu_frontend_init(&frontend, &lem_mcu_model_frontend) != LEM_MCU_OK
        || lem_mcu_detector_init(&detector, &lem_mcu_model_detector) != LEM_MCU_OK)
        return 1;
    if (n_args >= 3 && strcmp(args[1], "listen") == 0) return listen(args[2], n_args >= 4 ? args[3] : NULL);
    if (n_args >= 4 && strcmp(args[1], "run") == 0) return run(args[2], args[3]);
    if (n_args >= 4 && strcmp(args[1], "features") == 0) return features_of(args[2], args[3]);
    return 2;
}
