/*
 * stats.c - summaries of tensors for diagnostics, float and double.
 *
 * A summary (mg_tensor_stats) is the element count; the sum, sum of squares
 * (in double) and max |x| of the finite elements, their zeros and those with
 * |x - center| > threshold (compared in double); and the NaN and inf counts.
 * Three kernels add, in the same call, what GradientMonitor needs besides:
 *
 * - unit_stats: the units (columns) of an activation that are zero in every
 *   row of the batch (dead ReLUs); unit_stats_multi does so for a list of
 *   activations;
 * - histogram_stats: for a list of gradients, equal-width bins over
 *   [-max|g|, max|g|];
 * - change_stats: for a list of weights, the plain sums of each one and of
 *   its change since a snapshot (std(w - w_before) needs no stored
 *   difference), then a new snapshot.
 *
 * The data is cut into chunks of MG_STATS_CHUNK elements, small enough for
 * L1 (16 or 32 KB). Several short loops run over a chunk while it is there,
 * so memory is read once, and each loop does one thing: GCC vectorizes
 * those, whereas a loop that adds to two arrays of lane sums, or selects
 * before adding, stayed scalar (measured: a third of the speed).
 *
 * One exception, for float: the sum and the sum of squares of a pass (of x,
 * or of its change) in one loop that converts a group of MG_LANES elements
 * to double into a small array, then adds that array to the two halves of
 * one array of lane sums. GCC vectorizes that form, the conversion is done
 * once, and the two chains of additions overlap instead of each waiting on
 * its own latency: measured on a 4K-element chunk, 40% faster with AVX-512
 * and AVX2, and 20% for the moments on the generic path. change_stats on a
 * recorded step takes both passes, x's and its change's, in one such loop
 * (15% faster again). The change's difference alone was slower fused on the
 * generic path, and double (nothing to convert) slower fused everywhere:
 * those rows keep separate loops (see STATS_FUSED below). The same additions
 * in the same order either way.
 *
 * Sums are kept in MG_LANES lanes (see kernel_common.h), element i in lane
 * i % MG_LANES, and the chunks' results are combined in chunk order: the
 * same bits for any thread count and instruction set.
 *
 * Non-finite elements are rare, so a chunk is first summed whole: any NaN
 * or inf makes a sum NaN or inf, and only then is the chunk summed again
 * one element at a time, skipping and counting them (same lanes, same
 * order, so the result is what one masked pass would give). Finite floats
 * cannot overflow a double sum; finite doubles can, and the second pass
 * then finds no non-finite element and the same inf.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"
#include "vmath.h"

/* The unit of work: what keeps the result independent of the thread count. */
#define MG_STATS_CHUNK ((size_t)1 << 12)

/* Tensors of up to this many chunks (256K elements) keep their per-chunk
 * results on the stack; larger ones allocate them. */
#define MG_STATS_STACK_CHUNKS 64

/* unit_stats marks the units of up to this many per sample on the stack. */
#define MG_STATS_STACK_UNITS 4096


#define F32_EXP_MASK UINT32_C(0x7f800000)
#define F32_ABS_MASK UINT32_C(0x7fffffff)
#define F64_EXP_MASK UINT64_C(0x7ff0000000000000)
#define F64_ABS_MASK UINT64_C(0x7fffffffffffffff)

/* ---- the loops, compiled for each instruction set ------------------------ */

/*
 * Lane sums add element i to acc[i % MG_LANES]; the last, partial group of
 * lanes goes to the first lanes. Counts are kept in integers as wide as the
 * element, which a chunk cannot overflow. A finite value's |x| is its bits
 * with the sign cleared and orders like them (see clip.c); the finite-only
 * maximum masks the bits with an AND rather than a select, which vectorizes.
 */
/* Which rows fuse the two sums of a pass into one loop (see the header): 1 or 0
 * per element type, instruction set and pass, as measured. */
#define STATS_FUSED_f32_generic_MOMENTS 1
#define STATS_FUSED_f32_generic_CHANGE 0
#define STATS_FUSED_f32_generic_BOTH 1
#define STATS_FUSED_f32_avx2_MOMENTS 1
#define STATS_FUSED_f32_avx2_CHANGE 1
#define STATS_FUSED_f32_avx2_BOTH 1
#define STATS_FUSED_f32_avx512_MOMENTS 1
#define STATS_FUSED_f32_avx512_CHANGE 1
#define STATS_FUSED_f32_avx512_BOTH 1
#define STATS_FUSED_f64_generic_MOMENTS 0
#define STATS_FUSED_f64_generic_CHANGE 0
#define STATS_FUSED_f64_generic_BOTH 0
#define STATS_FUSED_f64_avx2_MOMENTS 0
#define STATS_FUSED_f64_avx2_CHANGE 0
#define STATS_FUSED_f64_avx2_BOTH 0
#define STATS_FUSED_f64_avx512_MOMENTS 0
#define STATS_FUSED_f64_avx512_CHANGE 0
#define STATS_FUSED_f64_avx512_BOTH 0
#define STATS_FUSED(S, ISA, PASS) STATS_FUSED_##S##_##ISA##_##PASS

#define DEFINE_STATS_LOOPS(T, S, U, EXP_MASK, ABS_MASK, ISA, TARGET)                     \
    static TARGET void sum_lanes_##S##_##ISA(size_t n, const T *restrict x,              \
                                             double *restrict acc)                       \
    {                                                                                    \
        mg_sum_lanes_##S(n, x, acc);                                                     \
    }                                                                                    \
    static TARGET void sumsq_lanes_##S##_##ISA(size_t n, const T *restrict x,            \
                                               double *restrict acc)                     \
    {                                                                                    \
        mg_sumsq_lanes_##S(n, x, acc);                                                   \
    }                                                                                    \
    /* The same two sums of x - snap, the difference taken in double (exact for float). */ \
    static TARGET void change_lanes_##S##_##ISA(size_t n, const T *restrict x,           \
                                                const T *restrict snap,                  \
                                                double *restrict acc)                    \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES)                                         \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[l] += (double)x[i + l] - (double)snap[i + l];                        \
        for (size_t l = 0; i + l < n; l++)                                               \
            acc[l] += (double)x[i + l] - (double)snap[i + l];                            \
    }                                                                                    \
    static TARGET void change_sq_lanes_##S##_##ISA(size_t n, const T *restrict x,        \
                                                   const T *restrict snap,               \
                                                   double *restrict acc)                 \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            for (size_t l = 0; l < MG_LANES; l++) {                                      \
                double d = (double)x[i + l] - (double)snap[i + l];                       \
                acc[l] += d * d;                                                         \
            }                                                                            \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double d = (double)x[i + l] - (double)snap[i + l];                           \
            acc[l] += d * d;                                                             \
        }                                                                                \
    }                                                                                    \
    /* acc[l] and acc[MG_LANES + l]: the lane sums of x and of its squares. */           \
    static TARGET void moments_lanes_##S##_##ISA(size_t n, const T *restrict x,          \
                                                 double *restrict acc)                   \
    {                                                                                    \
        size_t i = 0;                                                                    \
        if (!STATS_FUSED(S, ISA, MOMENTS)) {                                             \
            sum_lanes_##S##_##ISA(n, x, acc);                                            \
            sumsq_lanes_##S##_##ISA(n, x, acc + MG_LANES);                               \
            return;                                                                      \
        }                                                                                \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            double v[MG_LANES];                                                          \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                v[l] = x[i + l];                                                         \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[l] += v[l];                                                          \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[MG_LANES + l] += v[l] * v[l];                                        \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double v = x[i + l];                                                         \
            acc[l] += v;                                                                 \
            acc[MG_LANES + l] += v * v;                                                  \
        }                                                                                \
    }                                                                                    \
    /* The same of x - snap, the difference taken in double. */                         \
    static TARGET void change_moments_lanes_##S##_##ISA(size_t n, const T *restrict x,   \
                                                        const T *restrict snap,          \
                                                        double *restrict acc)            \
    {                                                                                    \
        size_t i = 0;                                                                    \
        if (!STATS_FUSED(S, ISA, CHANGE)) {                                              \
            change_lanes_##S##_##ISA(n, x, snap, acc);                                   \
            change_sq_lanes_##S##_##ISA(n, x, snap, acc + MG_LANES);                     \
            return;                                                                      \
        }                                                                                \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            double d[MG_LANES];                                                          \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                d[l] = (double)x[i + l] - (double)snap[i + l];                           \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[l] += d[l];                                                          \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[MG_LANES + l] += d[l] * d[l];                                        \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double d = (double)x[i + l] - (double)snap[i + l];                           \
            acc[l] += d;                                                                 \
            acc[MG_LANES + l] += d * d;                                                  \
        }                                                                                \
    }                                                                                    \
    /* Both at once, in acc[0 .. 4 MG_LANES): the moments of x, then those of x - snap  \
     * (change_stats on a recorded step). Fused for float, the difference taken from   \
     * the converted x: 15% faster than the two loops above with AVX2 and AVX-512,      \
     * 40% on the generic path. */                                                      \
    static TARGET void moments_change_lanes_##S##_##ISA(size_t n, const T *restrict x,   \
                                                        const T *restrict snap,          \
                                                        double *restrict acc)            \
    {                                                                                    \
        size_t i = 0;                                                                    \
        if (!STATS_FUSED(S, ISA, BOTH)) {                                                \
            moments_lanes_##S##_##ISA(n, x, acc);                                        \
            change_moments_lanes_##S##_##ISA(n, x, snap, acc + 2 * MG_LANES);            \
            return;                                                                      \
        }                                                                                \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            double v[MG_LANES], d[MG_LANES];                                             \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                v[l] = x[i + l];                                                         \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                d[l] = v[l] - (double)snap[i + l];                                       \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[l] += v[l];                                                          \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[MG_LANES + l] += v[l] * v[l];                                        \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[2 * MG_LANES + l] += d[l];                                           \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[3 * MG_LANES + l] += d[l] * d[l];                                    \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double v = x[i + l], d = v - (double)snap[i + l];                            \
            acc[l] += v;                                                                 \
            acc[MG_LANES + l] += v * v;                                                  \
            acc[2 * MG_LANES + l] += d;                                                  \
            acc[3 * MG_LANES + l] += d * d;                                              \
        }                                                                                \
    }                                                                                    \
    /* max |x| of the finite elements, as bits; *n_zero = the zeros. */                  \
    static TARGET U max_abs_bits_##S##_##ISA(size_t n, const T *restrict x,              \
                                             U *restrict n_zero)                         \
    {                                                                                    \
        U max_bits = 0, zeros = 0;                                                       \
        for (size_t i = 0; i < n; i++) {                                                 \
            U bits = mg_bits_##S(x[i]) & ABS_MASK;                                       \
            U finite_bits = bits & ((U)0 - (U)(bits < EXP_MASK));                        \
            max_bits = finite_bits > max_bits ? finite_bits : max_bits;                  \
            zeros += (U)(bits == 0);                                                     \
        }                                                                                \
        *n_zero = zeros;                                                                 \
        return max_bits;                                                                 \
    }                                                                                    \
    static TARGET U count_above_##S##_##ISA(size_t n, const T *restrict x,               \
                                            double threshold, double center)             \
    {                                                                                    \
        U above = 0;                                                                     \
        for (size_t i = 0; i < n; i++) {                                                 \
            U finite = (U)((mg_bits_##S(x[i]) & ABS_MASK) < EXP_MASK);                   \
            above += finite & (U)(fabs((double)x[i] - center) > threshold);              \
        }                                                                                \
        return above;                                                                    \
    }                                                                                    \
    /* ge[j] += the elements x >= t[j], for j < k (the histogram's edges), three edges   \
     * per pass over x (vectorized over x; a NaN edge counts nothing): over all k at     \
     * once the vectorizer went across the edges instead, scalar for fewer than 16. */   \
    static TARGET void count_at_least_##S##_##ISA(size_t n, const T *restrict x,         \
                                                  size_t k, const T *restrict t,         \
                                                  U *restrict ge)                        \
    {                                                                                    \
        for (size_t j = 0; j < k; j += 3) {                                              \
            T t0 = t[j], t1 = j + 1 < k ? t[j + 1] : (T)NAN, t2 = j + 2 < k ? t[j + 2] : (T)NAN; \
            U c0 = 0, c1 = 0, c2 = 0;                                                    \
            for (size_t i = 0; i < n; i++) {                                             \
                c0 += (U)(x[i] >= t0);                                                   \
                c1 += (U)(x[i] >= t1);                                                   \
                c2 += (U)(x[i] >= t2);                                                   \
            }                                                                            \
            ge[j] += c0;                                                                 \
            if (j + 1 < k)                                                               \
                ge[j + 1] += c1;                                                         \
            if (j + 2 < k)                                                               \
                ge[j + 2] += c2;                                                         \
        }                                                                                \
    }                                                                                    \
    /* alive[j] = 1 where x[i * c + j] is not zero (NaN is not zero) in a row i < r,    \
     * for j < c: all the rows in one call (a call per row of a small batch cost     \
     * more than the loop). */                                                       \
    static TARGET void mark_nonzero_##S##_##ISA(size_t r, size_t c, const T *restrict x, \
                                                unsigned char *restrict alive)           \
    {                                                                                    \
        for (size_t i = 0; i < r; i++)                                                   \
            for (size_t j = 0; j < c; j++)                                               \
                alive[j] |= (unsigned char)((mg_bits_##S(x[i * c + j]) & ABS_MASK) != 0); \
    }

#define DEFINE_STATS_LOOPS_f32(T, S, ISA, TARGET)                                        \
    DEFINE_STATS_LOOPS(T, S, uint32_t, F32_EXP_MASK, F32_ABS_MASK, ISA, TARGET)
#define DEFINE_STATS_LOOPS_f64(T, S, ISA, TARGET)                                        \
    DEFINE_STATS_LOOPS(T, S, uint64_t, F64_EXP_MASK, F64_ABS_MASK, ISA, TARGET)

MG_FOR_EACH_ISA(DEFINE_STATS_LOOPS_f32, float, f32)
MG_FOR_EACH_ISA(DEFINE_STATS_LOOPS_f64, double, f64)

/* One instruction set's loops for one element type, and the table of them
 * indexed by mg_simd_level(). */
#define DEFINE_STATS_TABLE(S)                                                            \
    typedef struct {                                                                     \
        __typeof__(moments_lanes_##S##_generic) *moments;                                \
        __typeof__(change_moments_lanes_##S##_generic) *change_moments;                  \
        __typeof__(moments_change_lanes_##S##_generic) *moments_change;                  \
        __typeof__(max_abs_bits_##S##_generic) *max_abs_bits;                            \
        __typeof__(count_above_##S##_generic) *count_above;                              \
        __typeof__(count_at_least_##S##_generic) *count_at_least;                        \
        __typeof__(mark_nonzero_##S##_generic) *mark_nonzero;                            \
    } stats_loops_##S;

#define STATS_LOOPS_ROW(S, ISA)                                                          \
    {                                                                                    \
        moments_lanes_##S##_##ISA, change_moments_lanes_##S##_##ISA,                     \
            moments_change_lanes_##S##_##ISA,                                            \
            max_abs_bits_##S##_##ISA, count_above_##S##_##ISA,                           \
            count_at_least_##S##_##ISA, mark_nonzero_##S##_##ISA                         \
    }

DEFINE_STATS_TABLE(f32)
DEFINE_STATS_TABLE(f64)
static const stats_loops_f32 stats_loops_f32_table[] = MG_ISA_ROWS(STATS_LOOPS_ROW, f32);
static const stats_loops_f64 stats_loops_f64_table[] = MG_ISA_ROWS(STATS_LOOPS_ROW, f64);

/* ---- chunks ----------------------------------------------------------------- */

/* What one chunk contributes; max_abs as the bits of |x|. */
typedef struct {
    double sum, sumsq;               /* of the finite elements */
    double change_sum, change_sumsq; /* change_stats: of x - snapshot */
    uint64_t max_abs_bits, n_zero, n_above, n_nan, n_inf;
} chunk_stats;

static size_t chunk_count(size_t n)
{
    return (n + MG_STATS_CHUNK - 1) / MG_STATS_CHUNK;
}

static size_t chunk_len(size_t n, size_t k)
{
    size_t lo = k * MG_STATS_CHUNK;

    return n - lo < MG_STATS_CHUNK ? n - lo : MG_STATS_CHUNK;
}

/* The per-chunk results of one tensor: on the stack when they fit. */
typedef struct {
    chunk_stats *part;
    chunk_stats local[MG_STATS_STACK_CHUNKS];
} chunk_parts;

static int parts_init(chunk_parts *p, size_t chunks)
{
    p->part = chunks <= MG_STATS_STACK_CHUNKS ? p->local : malloc(chunks * sizeof(chunk_stats));
    return p->part != NULL;
}

static void parts_free(chunk_parts *p)
{
    if (p->part != p->local)
        free(p->part);
}

/* The work on chunk k of a tensor, which fills part[k]. */
typedef void chunk_work(const void *job, size_t k, chunk_stats *part);

/* Every chunk of an n-element tensor, split across threads when it is large. */
static void for_each_chunk(size_t n, chunk_work *work, const void *job, chunk_stats *part)
{
    size_t chunks = chunk_count(n);

    if (!mg_use_threads(n) || chunks < 2) {
        for (size_t k = 0; k < chunks; k++)
            work(job, k, &part[k]);
        return;
    }
    MG_OMP_PARALLEL
    {
        mg_range r = mg_thread_share(chunks, 1);
        for (size_t k = r.lo; k < r.lo + r.len; k++)
            work(job, k, &part[k]);
    }
}

/* The parts added in chunk order. */
static chunk_stats combine(size_t chunks, const chunk_stats *part)
{
    chunk_stats total = {0};

    for (size_t k = 0; k < chunks; k++) {
        total.sum += part[k].sum;
        total.sumsq += part[k].sumsq;
        total.change_sum += part[k].change_sum;
        total.change_sumsq += part[k].change_sumsq;
        if (part[k].max_abs_bits > total.max_abs_bits)
            total.max_abs_bits = part[k].max_abs_bits;
        total.n_zero += part[k].n_zero;
        total.n_above += part[k].n_above;
        total.n_nan += part[k].n_nan;
        total.n_inf += part[k].n_inf;
    }
    return total;
}

/* ---- the kernels -------------------------------------------------------------- */

#define DEFINE_STATS_KERNELS(T, S, U, EXP_MASK, ABS_MASK)                     \
    /* The rare second pass: the sums of the finite elements, counting the others. */    \
    static void finite_sums_##S(size_t n, const T *x, chunk_stats *c)                    \
    {                                                                                    \
        double sum[MG_LANES] = {0}, sumsq[MG_LANES] = {0};                               \
        for (size_t i = 0; i < n; i++) {                                                 \
            U bits = mg_bits_##S(x[i]) & ABS_MASK;                                       \
            double v = bits < EXP_MASK ? (double)x[i] : 0.0;                             \
            sum[i % MG_LANES] += v;                                                      \
            sumsq[i % MG_LANES] += v * v;                                                \
            c->n_nan += bits > EXP_MASK;                                                 \
            c->n_inf += bits == EXP_MASK;                                                \
        }                                                                                \
        c->sum = mg_lanes_total(sum);                                                    \
        c->sumsq = mg_lanes_total(sumsq);                                                \
    }                                                                                    \
    static chunk_stats chunk_summary_##S(const stats_loops_##S *f, size_t n, const T *x,  \
                                         double threshold, double center)                \
    {                                                                                    \
        double acc[2 * MG_LANES] = {0};                                                  \
        chunk_stats c = {0};                                                             \
        U n_zero;                                                                        \
        f->moments(n, x, acc);                                                           \
        c.sum = mg_lanes_total(acc);                                                     \
        c.sumsq = mg_lanes_total(acc + MG_LANES);                                        \
        if (!isfinite(c.sum) || !isfinite(c.sumsq))                                      \
            finite_sums_##S(n, x, &c);                                                   \
        c.max_abs_bits = f->max_abs_bits(n, x, &n_zero);                                 \
        c.n_zero = n_zero;                                                               \
        if (threshold < INFINITY) /* nothing is above inf (or NaN) */                    \
            c.n_above = f->count_above(n, x, threshold, center);                         \
        return c;                                                                        \
    }                                                                                    \
    /* One tensor: its summary, or just its plain sums (NaN and inf included), and/or   \
     * its change since the snapshot; then maybe a new snapshot. */                      \
    typedef struct {                                                                     \
        const stats_loops_##S *f;                                                        \
        size_t n;                                                                        \
        const T *x;                                                                      \
        T *snapshot;                                                                     \
        double threshold, center;                                                        \
        int summary, moments, change, copy;                                              \
    } tensor_job_##S;                                                                    \
    static void tensor_chunk_##S(const void *job_, size_t k, chunk_stats *part)          \
    {                                                                                    \
        const tensor_job_##S *job = job_;                                                \
        size_t lo = k * MG_STATS_CHUNK, len = chunk_len(job->n, k);                      \
        const T *x = job->x + lo;                                                        \
        chunk_stats c = {0};                                                             \
        if (job->summary)                                                                \
            c = chunk_summary_##S(job->f, len, x, job->threshold, job->center);          \
        if (job->moments && job->change) {                                               \
            double acc[4 * MG_LANES] = {0};                                              \
            job->f->moments_change(len, x, job->snapshot + lo, acc);                     \
            c.sum = mg_lanes_total(acc);                                                 \
            c.sumsq = mg_lanes_total(acc + MG_LANES);                                    \
            c.change_sum = mg_lanes_total(acc + 2 * MG_LANES);                           \
            c.change_sumsq = mg_lanes_total(acc + 3 * MG_LANES);                         \
        } else if (job->moments) {                                                       \
            double acc[2 * MG_LANES] = {0};                                              \
            job->f->moments(len, x, acc);                                                \
            c.sum = mg_lanes_total(acc);                                                 \
            c.sumsq = mg_lanes_total(acc + MG_LANES);                                    \
        } else if (job->change) {                                                        \
            double acc[2 * MG_LANES] = {0};                                              \
            job->f->change_moments(len, x, job->snapshot + lo, acc);                     \
            c.change_sum = mg_lanes_total(acc);                                          \
            c.change_sumsq = mg_lanes_total(acc + MG_LANES);                             \
        }                                                                                \
        if (job->copy)                                                                   \
            memmove(job->snapshot + lo, x, len * sizeof(T));                             \
        *part = c;                                                                       \
    }                                                                                    \
    static int run_tensor_job_##S(const tensor_job_##S *job, chunk_stats *total)         \
    {                                                                                    \
        chunk_parts parts;                                                               \
        size_t chunks = chunk_count(job->n);                                             \
        if (!parts_init(&parts, chunks))                                                 \
            return MG_ERR_NOMEM;                                                         \
        for_each_chunk(job->n, tensor_chunk_##S, job, parts.part);                       \
        *total = combine(chunks, parts.part);                                            \
        parts_free(&parts);                                                              \
        return MG_OK;                                                                    \
    }                                                                                    \
    static void write_summary_##S(mg_tensor_stats *out, size_t n, const chunk_stats *t)  \
    {                                                                                    \
        U bits = (U)t->max_abs_bits;                                                     \
        T magnitude;                                                                     \
        memcpy(&magnitude, &bits, sizeof magnitude);                                     \
        out->count = n;                                                                  \
        out->sum = t->sum;                                                               \
        out->sumsq = t->sumsq;                                                           \
        out->max_abs = magnitude;                                                        \
        out->n_zero = t->n_zero;                                                         \
        out->n_above = t->n_above;                                                       \
        out->n_nan = t->n_nan;                                                           \
        out->n_inf = t->n_inf;                                                           \
    }                                                                                    \
    static int summarize_##S(const stats_loops_##S *f, size_t n, mg_tensor_stats *out,    \
                             const T *x, double threshold, double center)                \
    {                                                                                    \
        tensor_job_##S job = {f, n, x, NULL, threshold, center, 1, 0, 0, 0};             \
        chunk_stats total;                                                               \
        int status = run_tensor_job_##S(&job, &total);                                   \
        if (status == MG_OK)                                                             \
            write_summary_##S(out, n, &total);                                           \
        return status;                                                                   \
    }                                                                                    \
    int mg_tensor_stats_##S(size_t n, mg_tensor_stats *out, const T *x, double threshold, \
                            double center)                                               \
    {                                                                                    \
        return summarize_##S(&stats_loops_##S##_table[mg_simd_level()], n, out, x,        \
                             threshold, center);                                         \
    }                                                                                    \
    static int unit_summary_##S(const stats_loops_##S *f, size_t r, size_t c,             \
                                mg_tensor_stats *out, unsigned long long *n_dead,        \
                                const T *x, double threshold, double center)             \
    {                                                                                    \
        unsigned char local[MG_STATS_STACK_UNITS], *alive = local;                       \
        int status = summarize_##S(f, r * c, out, x, threshold, center);                 \
        *n_dead = 0;                                                                     \
        /* Without a zero no unit can be dead: no second pass. */                        \
        if (status != MG_OK || out->n_zero == 0)                                         \
            return status;                                                               \
        if (c > MG_STATS_STACK_UNITS && (alive = malloc(c)) == NULL)                     \
            return MG_ERR_NOMEM;                                                         \
        memset(alive, 0, c);                                                             \
        f->mark_nonzero(r, c, x, alive);                                                 \
        for (size_t j = 0; j < c; j++)                                                   \
            *n_dead += alive[j] == 0;                                                    \
        if (alive != local)                                                              \
            free(alive);                                                                 \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_unit_stats_##S(size_t r, size_t c, mg_tensor_stats *out,                      \
                          unsigned long long *n_dead, const T *x, double threshold,      \
                          double center)                                                 \
    {                                                                                    \
        return unit_summary_##S(&stats_loops_##S##_table[mg_simd_level()], r, c, out,    \
                                n_dead, x, threshold, center);                           \
    }                                                                                    \
    int mg_unit_stats_multi_##S(size_t count, mg_tensor_stats *out,                      \
                                unsigned long long *n_dead, const T *const *bufs,        \
                                const size_t *lens, const size_t *units,                 \
                                const double *thresholds, const double *centers)         \
    {                                                                                    \
        const stats_loops_##S *f = &stats_loops_##S##_table[mg_simd_level()];            \
        for (size_t i = 0; i < count; i++)                                               \
            if (units[i] == 0 ? lens[i] != 0 : lens[i] % units[i] != 0)                  \
                return MG_ERR_RANGE;                                                     \
        for (size_t i = 0; i < count; i++) {                                             \
            size_t rows = units[i] == 0 ? 0 : lens[i] / units[i];                        \
            int status = unit_summary_##S(f, rows, units[i], &out[i], &n_dead[i],        \
                                          bufs[i], thresholds[i], centers[i]);           \
            if (status != MG_OK)                                                         \
                return status;                                                           \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    /* Floats ordered as unsigned integers: the sign bit flipped for positive values,    \
     * every bit for negative ones. Adjacent keys are adjacent values. */                \
    static U order_key_##S(T x)                                                          \
    {                                                                                    \
        U bits = mg_bits_##S(x);                                                         \
        return bits > ABS_MASK ? ~bits : bits | (ABS_MASK + 1);                          \
    }                                                                                    \
    static T from_order_key_##S(U key)                                                   \
    {                                                                                    \
        U bits = key > ABS_MASK ? key & ABS_MASK : ~key;                                 \
        T x;                                                                             \
        memcpy(&x, &bits, sizeof x);                                                     \
        return x;                                                                        \
    }                                                                                    \
    static int reaches_##S(U key, double edge, double bound, double half)                \
    {                                                                                    \
        return (double)from_order_key_##S(key) / bound * half + half >= edge;            \
    }                                                                                    \
    /* t[j] = the smallest T whose position x / bound * half + half reaches j + 1, for  \
     * j < bins - 1: x is in bin j + 1 or above exactly when x >= t[j]. Positions rise   \
     * with x, from 0 at -bound to bins at bound, so a search over the ordered keys      \
     * finds it: from a first guess, steps doubling away from it until one crosses the   \
     * edge, then a bisection. The guess is usually right or an ulp off (two or three    \
     * tests) because it allows for the last rounding: a sum within half a gap below     \
     * the edge rounds up to it. Near 0, where the ulps of x are tiny, that is many      \
     * ulps: the middle edge is not 0 but just below it. */                              \
    static void bin_edges_##S(size_t bins, double bound, T *t)                           \
    {                                                                                    \
        double half = (double)bins / 2.0;                                                \
        for (size_t j = 0; j + 1 < bins; j++) {                                          \
            double edge = (double)(j + 1);                                               \
            /* edge >= 1: the double below it has the bits one lower */                \
            double below = (edge - mg_from_bits_f64(mg_bits_f64(edge) - 1)) / 2.0;       \
            /* lo never reaches the edge, hi does */                                     \
            U lo = order_key_##S((T)-bound), hi = order_key_##S((T)bound);               \
            U guess = order_key_##S((T)(bound * ((edge - half - below) / half)));        \
            if (guess > lo && guess < hi) {                                              \
                if (reaches_##S(guess, edge, bound, half)) {                             \
                    hi = guess;                                                          \
                    for (U step = 1; step != 0 && hi - lo > step; step *= 2) {           \
                        if (!reaches_##S(hi - step, edge, bound, half)) {                \
                            lo = hi - step;                                              \
                            break;                                                       \
                        }                                                                \
                        hi -= step;                                                      \
                    }                                                                    \
                } else {                                                                 \
                    lo = guess;                                                          \
                    for (U step = 1; step != 0 && hi - lo > step; step *= 2) {           \
                        if (reaches_##S(lo + step, edge, bound, half)) {                 \
                            hi = lo + step;                                              \
                            break;                                                       \
                        }                                                                \
                        lo += step;                                                      \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
            while (hi - lo > 1) {                                                        \
                U mid = lo + (hi - lo) / 2;                                              \
                if (reaches_##S(mid, edge, bound, half))                                 \
                    hi = mid;                                                            \
                else                                                                     \
                    lo = mid;                                                            \
            }                                                                            \
            t[j] = from_order_key_##S(hi);                                               \
        }                                                                                \
    }                                                                                    \
    /* ge[j] = the finite elements x >= t[j]: per chunk, in parallel when large. */      \
    static void count_edges_##S(const stats_loops_##S *f, size_t n, const T *x,           \
                                size_t k, const T *t, int finite, uint64_t *ge)          \
    {                                                                                    \
        size_t chunks = chunk_count(n);                                                  \
        if (!finite) { /* rare: skip NaN and inf one element at a time */                \
            for (size_t i = 0; i < n; i++)                                               \
                if ((mg_bits_##S(x[i]) & ABS_MASK) < EXP_MASK)                           \
                    for (size_t j = 0; j < k; j++)                                       \
                        ge[j] += x[i] >= t[j];                                           \
            return;                                                                      \
        }                                                                                \
        if (k == 0)                                                                      \
            return;                                                                      \
        if (!mg_use_threads(n) || chunks < 2) {                                          \
            count_edge_chunks_##S(f, n, x, k, t, 0, chunks, ge);                         \
            return;                                                                      \
        }                                                                                \
        MG_OMP_PARALLEL_SUM_GE                                                           \
        {                                                                                \
            mg_range r = mg_thread_share(chunks, 1);                                     \
            count_edge_chunks_##S(f, n, x, k, t, r.lo, r.lo + r.len, ge);                \
        }                                                                                \
    }                                                                                    \
    int mg_histogram_stats_##S(size_t count, mg_tensor_stats *out, unsigned long long *hist, \
                               size_t bins, const T *const *bufs, const size_t *lens)    \
    {                                                                                    \
        const stats_loops_##S *f = &stats_loops_##S##_table[mg_simd_level()];            \
        if (bins == 0 || bins > MG_MAX_BINS)                                             \
            return MG_ERR_RANGE;                                                         \
        for (size_t i = 0; i < count; i++) {                                             \
            mg_tensor_stats *s = &out[i];                                                \
            unsigned long long *h = hist + i * bins;                                     \
            uint64_t ge[MG_MAX_BINS] = {0}, finite;                                      \
            T t[MG_MAX_BINS];                                                            \
            int status = summarize_##S(f, lens[i], s, bufs[i], INFINITY, 0.0);            \
            if (status != MG_OK)                                                         \
                return status;                                                           \
            bin_edges_##S(bins, s->max_abs > 0 ? s->max_abs : 1.0, t);                   \
            count_edges_##S(f, lens[i], bufs[i], bins - 1, t,                            \
                            s->n_nan + s->n_inf == 0, ge);                               \
            /* x in bin j: at least edge j - 1 (bin 0: any), not at least edge j. */     \
            finite = s->count - s->n_nan - s->n_inf;                                     \
            for (size_t j = 0; j < bins; j++)                                            \
                h[j] = (j == 0 ? finite : ge[j - 1]) - (j + 1 < bins ? ge[j] : 0);       \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_change_stats_##S(size_t count, double *sums, double *change, T *snapshot,     \
                            const T *const *bufs, const size_t *lens, int copy)          \
    {                                                                                    \
        const stats_loops_##S *f = &stats_loops_##S##_table[mg_simd_level()];            \
        size_t offset = 0;                                                               \
        for (size_t i = 0; i < count; i++) {                                             \
            tensor_job_##S job = {f,                                                     \
                                  lens[i],                                               \
                                  bufs[i],                                               \
                                  snapshot == NULL ? NULL : snapshot + offset,           \
                                  INFINITY,                                              \
                                  0.0,                                                   \
                                  0,                                                     \
                                  sums != NULL,                                          \
                                  change != NULL,                                        \
                                  copy != 0};                                            \
            chunk_stats total;                                                           \
            int status = run_tensor_job_##S(&job, &total);                               \
            if (status != MG_OK)                                                         \
                return status;                                                           \
            if (sums != NULL) {                                                          \
                sums[2 * i] = total.sum;                                                 \
                sums[2 * i + 1] = total.sumsq;                                           \
            }                                                                            \
            if (change != NULL) {                                                        \
                change[2 * i] = total.change_sum;                                        \
                change[2 * i + 1] = total.change_sumsq;                                  \
            }                                                                            \
            offset += lens[i];                                                           \
        }                                                                                \
        return MG_OK;                                                                    \
    }

/* The histogram's counts across threads: OpenMP's + reduction on the array
 * ge, in integers, so the order does not matter. */
#ifdef _OPENMP
#define MG_OMP_PARALLEL_SUM_GE                                                           \
    _Pragma("omp parallel num_threads(mg_region_begin(mg_threads_now())) reduction(+ : ge[:k])")
#else
#define MG_OMP_PARALLEL_SUM_GE
#endif

/* Chunks [k0, k1) of x into ge, each counted in integers of the element's
 * width and then added. */
#define DEFINE_COUNT_EDGE_CHUNKS(T, S, U)                                                \
    static void count_edge_chunks_##S(const stats_loops_##S *f, size_t n, const T *x,     \
                                      size_t k, const T *t, size_t k0, size_t k1,        \
                                      uint64_t *ge)                                      \
    {                                                                                    \
        for (size_t c = k0; c < k1; c++) {                                               \
            U part[MG_MAX_BINS] = {0};                                                   \
            f->count_at_least(chunk_len(n, c), x + c * MG_STATS_CHUNK, k, t, part);      \
            for (size_t j = 0; j < k; j++)                                               \
                ge[j] += part[j];                                                        \
        }                                                                                \
    }

DEFINE_COUNT_EDGE_CHUNKS(float, f32, uint32_t)
DEFINE_COUNT_EDGE_CHUNKS(double, f64, uint64_t)
DEFINE_STATS_KERNELS(float, f32, uint32_t, F32_EXP_MASK, F32_ABS_MASK)
DEFINE_STATS_KERNELS(double, f64, uint64_t, F64_EXP_MASK, F64_ABS_MASK)

/* ---- the three at once ------------------------------------------------------- */

/* mg_monitor_stats: the kernels of a monitored step, whose tensors are mostly
 * too small to thread one by one, side by side on two threads instead.
 * Measured on 2 cores for the digits MLP of bench/bench_monitor.py
 * (64-128-128-10, batch 64, float32): histogram_stats of the 6 gradients
 * 12.8 us, unit_stats_multi of the 5 outputs 8.2 us, change_stats of the 6
 * weights 6.8 us, 27.8 us in turn and 16.6 us side by side (the longer
 * thread's 15 us and the region); GradientMonitor.step() 54 -> 39 us.
 *
 * The region has the usual thread count (MG_OMP_PARALLEL), so the pool keeps
 * its size and runtime.c goes on judging its workers' starts; threads past
 * the second find nothing to do. */

/* mg_monitor_stats's arguments, and the status of each of its three kernels. */
#define DEFINE_MONITOR_STATS(T, S)                                                       \
    typedef struct {                                                                     \
        size_t n_grads;                                                                  \
        mg_tensor_stats *grad_out;                                                       \
        unsigned long long *hist;                                                        \
        size_t bins;                                                                     \
        const T *const *grads;                                                           \
        const size_t *grad_lens;                                                         \
        size_t n_outputs;                                                                \
        mg_tensor_stats *act_out;                                                        \
        unsigned long long *n_dead;                                                      \
        const T *const *outputs;                                                         \
        const size_t *output_lens, *units;                                               \
        const double *thresholds, *centers;                                              \
        size_t n_weights;                                                                \
        double *sums, *change;                                                           \
        T *snapshot;                                                                     \
        const T *const *weights;                                                         \
        const size_t *weight_lens;                                                       \
        int copy;                                                                        \
        int status[3];                                                                   \
    } monitor_job_##S;                                                                   \
    /* Part 0: histogram_stats; part 1: unit_stats_multi, then change_stats. */          \
    static void monitor_part_##S(monitor_job_##S *j, size_t part)                        \
    {                                                                                    \
        if (part == 0) {                                                                 \
            j->status[0] = mg_histogram_stats_##S(j->n_grads, j->grad_out, j->hist,      \
                                                  j->bins, j->grads, j->grad_lens);      \
            return;                                                                      \
        }                                                                                \
        j->status[1] = mg_unit_stats_multi_##S(j->n_outputs, j->act_out, j->n_dead,      \
                                               j->outputs, j->output_lens, j->units,     \
                                               j->thresholds, j->centers);               \
        j->status[2] = mg_change_stats_##S(j->n_weights, j->sums, j->change, j->snapshot, \
                                           j->weights, j->weight_lens, j->copy);         \
    }                                                                                    \
    static size_t longest_##S(size_t count, const size_t *lens, size_t longest)          \
    {                                                                                    \
        for (size_t i = 0; i < count; i++)                                               \
            longest = lens[i] > longest ? lens[i] : longest;                             \
        return longest;                                                                  \
    }                                                                                    \
    int mg_monitor_stats_##S(size_t n_grads, mg_tensor_stats *grad_out,                  \
                             unsigned long long *hist, size_t bins, const T *const *grads, \
                             const size_t *grad_lens, size_t n_outputs,                  \
                             mg_tensor_stats *act_out, unsigned long long *n_dead,       \
                             const T *const *outputs, const size_t *output_lens,         \
                             const size_t *units, const double *thresholds,              \
                             const double *centers, size_t n_weights, double *sums,      \
                             double *change, T *snapshot, const T *const *weights,       \
                             const size_t *weight_lens, int copy)                        \
    {                                                                                    \
        monitor_job_##S job = {n_grads,     grad_out,  hist,       bins,       grads,    \
                               grad_lens,   n_outputs, act_out,    n_dead,     outputs,  \
                               output_lens, units,     thresholds, centers,    n_weights, \
                               sums,        change,    snapshot,   weights,    weight_lens, \
                               copy,        {MG_OK, MG_OK, MG_OK}};                     \
        size_t longest = longest_##S(n_grads, grad_lens, 0);                             \
        longest = longest_##S(n_outputs, output_lens, longest);                          \
        longest = longest_##S(n_weights, weight_lens, longest);                          \
        /* A tensor the kernels would thread on its own: each kernel in turn, with       \
         * its own regions (none may open inside this one). */                           \
        if (longest < MG_PARALLEL_MIN && mg_threads_now() > 1) {                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(2, 1);                                      \
                for (size_t part = r.lo; part < r.lo + r.len; part++)                    \
                    monitor_part_##S(&job, part);                                        \
            }                                                                            \
        } else {                                                                         \
            monitor_part_##S(&job, 0);                                                   \
            monitor_part_##S(&job, 1);                                                   \
        }                                                                                \
        for (size_t k = 0; k < 3; k++)                                                   \
            if (job.status[k] != MG_OK)                                                  \
                return job.status[k];                                                    \
        return MG_OK;                                                                    \
    }

DEFINE_MONITOR_STATS(float, f32)
DEFINE_MONITOR_STATS(double, f64)
