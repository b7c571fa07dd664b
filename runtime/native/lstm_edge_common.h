/* Internal helpers shared by lstm-edge's C libraries: the desktop library in this folder and the bare-metal one in
 * mcu/. One definition each, so every build computes the same floats. Not a public header: nothing here is part of
 * the API; each library includes it from its sources. C99, no libm on the per-frame helpers. Apache-2.0. */
#ifndef LSTM_EDGE_COMMON_H
#define LSTM_EDGE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A library may force inlining (the bare-metal build does: gcc would move exp's common path out of line). */
#ifndef LEM_COMMON_INLINE
#define LEM_COMMON_INLINE static inline
#endif

/* exp(x), x clamped to [-87, 88]: 2^n * p(r), r in [-ln2/2, ln2/2], degree-6 polynomial (relative error ~2e-7).
 * Branch-free apart from the clamps (min/max instructions), so the gate loops vectorise. NaN stays NaN. */
LEM_COMMON_INLINE float lem_fast_exp(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer kept in the low bits */
    float shifted, n, r, p, scale;
    uint32_t bits;
    x = x > 88.0f ? 88.0f : x; /* NaN passes both clamps and gives NaN below */
    x = x < -87.0f ? -87.0f : x;
    shifted = x * 1.44269504f + magic;
    n = shifted - magic;
    r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f
        + r * 0.0013888889f)))));
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23; /* 2^n from n's bits, no float-to-int conversion */
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

LEM_COMMON_INLINE float lem_fast_sigmoid(float x) { return 1.0f / (1.0f + lem_fast_exp(-x)); }

/* 1 - 2 / (e^2x + 1): absolute error ~1e-7 over the whole range (relative error grows only for |x| < 1e-3) */
LEM_COMMON_INLINE float lem_fast_tanh(float x) { return 1.0f - 2.0f / (lem_fast_exp(2.0f * x) + 1.0f); }

/* 1 when no value is NaN or inf: those are the floats whose exponent bits are all ones (an OR over the masked
 * words vectorises) */
LEM_COMMON_INLINE int lem_all_finite(const float *v, size_t n) {
    size_t i;
    uint32_t bad = 0, bits;
    for (i = 0; i < n; i++) {
        memcpy(&bits, v + i, sizeof bits);
        bad |= ((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

/* The mel filter bank's geometry (docs/manifest.md, Frontend), in double; used when the tables are made, not per
 * frame. The caller includes <math.h> (log10, pow). */
#define LEM_HZ_TO_MEL(hz) (2595.0 * log10(1.0 + (hz) / 700.0))
#define LEM_MEL_TO_HZ(mel) (700.0 * (pow(10.0, (mel) / 2595.0) - 1.0))

/* numpy.linspace(start, stop, num)[i] (endpoint included, the last value exactly stop) */
LEM_COMMON_INLINE double lem_linspace_at(double start, double stop, int num, int i) {
    if (i == num - 1) return stop;
    return (double)i * ((stop - start) / (double)(num - 1)) + start;
}

/* the triangle of one mel filter at frequency f: peak 1 at centre, 0 outside (lower, upper) */
LEM_COMMON_INLINE double lem_triangle_weight(double f, double lower, double centre, double upper) {
    double rising = (f - lower) / (centre - lower);
    double falling = (upper - f) / (upper - centre);
    double w = rising < falling ? rising : falling;
    return w > 0.0 ? w : 0.0;
}

#endif
