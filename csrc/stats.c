/*
 * stats.c - the summary of a tensor for diagnostics in one pass, float and
 * double: element count, sum, sum of squares and max |x| of the finite
 * elements (sums in double), zeros, finite elements with |x - center| >
 * threshold (compared in double), NaN and inf counts.
 *
 * Every statistic is kept in MG_LANES lanes (see kernel_common.h) so that
 * the loop vectorizes with no reassociation, over fixed chunks of
 * MG_STATS_CHUNK elements whose results are combined in order: the same
 * bits for any thread count and instruction set.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernel_common.h"
#include "vmath.h"

#define MG_STATS_CHUNK ((size_t)1 << 16)

static inline double lanes_total(const double *acc)
{
    double half[MG_LANES / 2];

    for (size_t l = 0; l < MG_LANES / 2; l++)
        half[l] = acc[l] + acc[l + MG_LANES / 2];
    for (size_t w = MG_LANES / 4; w > 0; w /= 2) {
        for (size_t l = 0; l < w; l++)
            half[l] += half[l + w];
    }
    return half[0];
}

static inline uint64_t lanes_count(const uint64_t *acc)
{
    uint64_t total = 0;

    for (size_t l = 0; l < MG_LANES; l++)
        total += acc[l];
    return total;
}

/* The statistics of one chunk; max_abs as the bit pattern of |x| (finite
 * values order like their bit patterns, see clip.c). */
typedef struct {
    double sum;
    double sumsq;
    uint64_t max_abs_bits;
    uint64_t n_finite;
    uint64_t n_zero;
    uint64_t n_above;
    uint64_t n_nan;
} chunk_stats;

/* One element's contribution to lane l: the non-finite count as zeros
 * everywhere but in n_nan (n_inf is what remains). */
#define STATS_ELEMENT(T, S, U, EXP_MASK, ABS_MASK, v, l)                                 \
    do {                                                                                 \
        U bits_ = mg_bits_##S(v) & ABS_MASK;                                             \
        int finite_ = (bits_ & EXP_MASK) != EXP_MASK;                                    \
        T f_ = finite_ ? (v) : (T)0;                                                     \
        double dev_ = fabs((double)f_ - center);                                         \
        U fbits_ = finite_ ? bits_ : 0;                                                  \
        sum[l] += f_;                                                                    \
        sumsq[l] += (double)f_ * (double)f_;                                             \
        maxb[l] = fbits_ > maxb[l] ? fbits_ : maxb[l];                                   \
        fin[l] += (uint64_t)finite_;                                                     \
        zero[l] += (uint64_t)((v) == 0);                                                 \
        above[l] += (uint64_t)(finite_ && dev_ > threshold);                             \
        nan[l] += (uint64_t)((v) != (v));                                                \
    } while (0)

#define DEFINE_STATS_LOOP(T, S, U, EXP_MASK, ABS_MASK, ISA, TARGET)                      \
    static TARGET chunk_stats stats_##S##_##ISA(size_t n, const T *restrict x,           \
                                                double threshold, double center)         \
    {                                                                                    \
        double sum[MG_LANES] = {0}, sumsq[MG_LANES] = {0};                               \
        U maxb[MG_LANES] = {0};                                                          \
        uint64_t fin[MG_LANES] = {0}, zero[MG_LANES] = {0}, above[MG_LANES] = {0};       \
        uint64_t nan[MG_LANES] = {0};                                                    \
        chunk_stats out;                                                                 \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                STATS_ELEMENT(T, S, U, EXP_MASK, ABS_MASK, x[i + l], l);                 \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++)                                               \
            STATS_ELEMENT(T, S, U, EXP_MASK, ABS_MASK, x[i + l], l);                     \
        out.sum = lanes_total(sum);                                                      \
        out.sumsq = lanes_total(sumsq);                                                  \
        out.max_abs_bits = 0;                                                            \
        for (size_t l = 0; l < MG_LANES; l++)                                            \
            out.max_abs_bits = maxb[l] > out.max_abs_bits ? maxb[l] : out.max_abs_bits;  \
        out.n_finite = lanes_count(fin);                                                 \
        out.n_zero = lanes_count(zero);                                                  \
        out.n_above = lanes_count(above);                                                \
        out.n_nan = lanes_count(nan);                                                    \
        return out;                                                                      \
    }

#define F32_EXP_MASK UINT32_C(0x7f800000)
#define F32_ABS_MASK UINT32_C(0x7fffffff)
#define F64_EXP_MASK UINT64_C(0x7ff0000000000000)
#define F64_ABS_MASK UINT64_C(0x7fffffffffffffff)

#define DEFINE_STATS_LOOP_f32(T, S, ISA, TARGET)                                         \
    DEFINE_STATS_LOOP(T, S, uint32_t, F32_EXP_MASK, F32_ABS_MASK, ISA, TARGET)
#define DEFINE_STATS_LOOP_f64(T, S, ISA, TARGET)                                         \
    DEFINE_STATS_LOOP(T, S, uint64_t, F64_EXP_MASK, F64_ABS_MASK, ISA, TARGET)

MG_FOR_EACH_ISA(DEFINE_STATS_LOOP_f32, float, f32)
MG_FOR_EACH_ISA(DEFINE_STATS_LOOP_f64, double, f64)

static __typeof__(stats_f32_generic) *const stats_f32_loops[] = MG_ISA_TABLE(stats_f32);
static __typeof__(stats_f64_generic) *const stats_f64_loops[] = MG_ISA_TABLE(stats_f64);

#define DEFINE_STATS_KERNEL(T, S, U)                                                     \
    int mg_tensor_stats_##S(size_t n, mg_tensor_stats *out, const T *x, double threshold, \
                            double center)                                               \
    {                                                                                    \
        __typeof__(stats_##S##_generic) *loop = stats_##S##_loops[mg_simd_level()];      \
        size_t chunks = (n + MG_STATS_CHUNK - 1) / MG_STATS_CHUNK;                       \
        chunk_stats *part = malloc(chunks * sizeof(chunk_stats) + 1);                    \
        chunk_stats total = {0};                                                         \
        T magnitude;                                                                     \
        U bits;                                                                          \
        if (part == NULL)                                                                \
            return MG_ERR_NOMEM;                                                         \
        if (!mg_use_threads(n) || chunks < 2) {                                          \
            for (size_t k = 0; k < chunks; k++) {                                        \
                size_t lo = k * MG_STATS_CHUNK;                                          \
                size_t len = n - lo < MG_STATS_CHUNK ? n - lo : MG_STATS_CHUNK;          \
                part[k] = loop(len, x + lo, threshold, center);                          \
            }                                                                            \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(chunks, 1);                                 \
                for (size_t k = r.lo; k < r.lo + r.len; k++) {                           \
                    size_t lo = k * MG_STATS_CHUNK;                                      \
                    size_t len = n - lo < MG_STATS_CHUNK ? n - lo : MG_STATS_CHUNK;      \
                    part[k] = loop(len, x + lo, threshold, center);                      \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        for (size_t k = 0; k < chunks; k++) {                                            \
            total.sum += part[k].sum;                                                    \
            total.sumsq += part[k].sumsq;                                                \
            if (part[k].max_abs_bits > total.max_abs_bits)                               \
                total.max_abs_bits = part[k].max_abs_bits;                               \
            total.n_finite += part[k].n_finite;                                          \
            total.n_zero += part[k].n_zero;                                              \
            total.n_above += part[k].n_above;                                            \
            total.n_nan += part[k].n_nan;                                                \
        }                                                                                \
        free(part);                                                                      \
        bits = (U)total.max_abs_bits;                                                    \
        memcpy(&magnitude, &bits, sizeof magnitude);                                     \
        out->count = n;                                                                  \
        out->sum = total.sum;                                                            \
        out->sumsq = total.sumsq;                                                        \
        out->max_abs = magnitude;                                                        \
        out->n_zero = total.n_zero;                                                      \
        out->n_above = total.n_above;                                                    \
        out->n_nan = total.n_nan;                                                        \
        out->n_inf = n - total.n_finite - total.n_nan;                                   \
        return MG_OK;                                                                    \
    }

DEFINE_STATS_KERNEL(float, f32, uint32_t)
DEFINE_STATS_KERNEL(double, f64, uint64_t)
