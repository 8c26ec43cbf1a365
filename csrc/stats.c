/*
 * stats.c - the summary of a tensor for diagnostics in one pass, float and
 * double: element count, sum, sum of squares and max |x| of the finite
 * elements (sums in double), zeros, finite elements with |x - center| >
 * threshold (compared in double), NaN and inf counts.
 *
 * The sums are kept in MG_LANES lanes (see kernel_common.h) so that they
 * vectorize with no reassociation, over fixed chunks of MG_STATS_CHUNK
 * elements whose results are combined in order: the same bits for any
 * thread count and instruction set.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernel_common.h"
#include "vmath.h"

/* The unit of work: small enough for L1 (16 or 32 KB), and what keeps the
 * result independent of the thread count. */
#define MG_STATS_CHUNK ((size_t)1 << 12)

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

/*
 * A chunk's statistics in three loops over it, each of which GCC vectorizes
 * (one loop doing everything stayed scalar: too many kinds of accumulator
 * for the vectorizer). The chunk is small enough to stay in L1 between
 * them, so memory is still read once. Counts are kept in integers as wide
 * as the element, which a chunk cannot overflow; the finite-only maximum
 * masks the bits with an AND rather than a select, which vectorizes.
 */
#define DEFINE_STATS_LOOP(T, S, U, EXP_MASK, ABS_MASK, ISA, TARGET)                      \
    static TARGET chunk_stats stats_##S##_##ISA(size_t n, const T *restrict x,           \
                                                double threshold, double center)         \
    {                                                                                    \
        double sum[MG_LANES] = {0}, sumsq[MG_LANES] = {0};                               \
        U max_bits = 0, n_zero = 0, n_nan = 0, n_inf = 0, n_above = 0;                   \
        chunk_stats out;                                                                 \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            for (size_t l = 0; l < MG_LANES; l++) {                                      \
                T v = x[i + l];                                                          \
                T f = (mg_bits_##S(v) & ABS_MASK) < EXP_MASK ? v : (T)0;                 \
                sum[l] += f;                                                             \
                sumsq[l] += (double)f * (double)f;                                       \
            }                                                                            \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            T v = x[i + l];                                                              \
            T f = (mg_bits_##S(v) & ABS_MASK) < EXP_MASK ? v : (T)0;                     \
            sum[l] += f;                                                                 \
            sumsq[l] += (double)f * (double)f;                                           \
        }                                                                                \
        for (i = 0; i < n; i++) {                                                        \
            U bits = mg_bits_##S(x[i]) & ABS_MASK;                                       \
            U finite_bits = bits & ((U)0 - (U)(bits < EXP_MASK));                        \
            max_bits = finite_bits > max_bits ? finite_bits : max_bits;                  \
            n_zero += (U)(bits == 0);                                                    \
            n_nan += (U)(bits > EXP_MASK);                                               \
            n_inf += (U)(bits == EXP_MASK);                                              \
        }                                                                                \
        for (i = 0; i < n; i++) {                                                        \
            U finite = (U)((mg_bits_##S(x[i]) & ABS_MASK) < EXP_MASK);                   \
            n_above += finite & (U)(fabs((double)x[i] - center) > threshold);            \
        }                                                                                \
        out.sum = lanes_total(sum);                                                      \
        out.sumsq = lanes_total(sumsq);                                                  \
        out.max_abs_bits = max_bits;                                                     \
        out.n_finite = n - n_nan - n_inf;                                                \
        out.n_zero = n_zero;                                                             \
        out.n_above = n_above;                                                           \
        out.n_nan = n_nan;                                                               \
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
