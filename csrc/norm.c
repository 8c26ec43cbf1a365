/*
 * norm.c - batch norm over the rows of x (n, c) and layer norm over each row
 * of x (r, d), float and double: training and eval forward, backward.
 *
 * Layout: x is row-major. Batch norm reduces down the columns, so its loops
 * walk the rows and update one accumulator per channel; the inner loop runs
 * along a row, over channels, and vectorizes across them. Layer norm reduces
 * along a row, which is contiguous, with MG_LANES partial sums.
 *
 * Passes over the data, the fewest the maths allows:
 * - batch norm, training forward: one pass for the mean and variance of
 *   every channel, one to normalize and write y. The statistics come from
 *   leaves of eight rows, each by the corrected two-pass formula in the
 *   element type from registers, merged in double by Chan et al.'s update:
 *   no cancellation (unlike E[x^2] - E[x]^2) and half the arithmetic of
 *   Welford's update in double on every element. A channel outside the
 *   range where the element type's squares are sound is redone in double
 *   (BN_TINY_VAR).
 * - batch norm backward: one pass for sum(gy) and sum(gy * xhat), by leaves
 *   likewise, one to write gx.
 * - batch norm eval and layer norm: one pass over memory. Layer norm visits
 *   each row three times forward and twice backward, but a row is in L1
 *   (the backward's block of 64 rows in L2). Its variance squares the
 *   deviations in the element type, by leaves of eight, and sums those in
 *   double: a sum of squares has no cancellation to fear (a row outside
 *   the element type's range is redone in double). Its backward's sums,
 *   along each row and down the columns for the weight and bias gradients,
 *   are by leaves of eight as well, the column leaves formed as gx is
 *   written; a block of rows whose sums overflow the element type is
 *   redone in double.
 *
 * The arithmetic after the statistics follows the NumPy reference
 * (minigrad/backend/numpy.py) operation for operation, in the element type
 * where it works in the element type, so the results agree with it to the
 * rounding of the statistics themselves (see tests/test_kernels_norm.py).
 *
 * Threads split the rows: batch norm's per-channel results are formed per
 * fixed block of rows and merged block by block (see bn_block_rows), layer
 * norm's rows are independent, and its weight and bias gradients, sums over
 * rows, are formed per fixed block of rows and added block by block: the
 * results are the same bits for any number of threads and on every
 * instruction set.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

/* Layer norm backward sums its weight and bias gradients over blocks of
 * this many rows, the unit of work of a thread. */
#define LN_ROW_BLOCK ((size_t)64)
#define LN_BLOCKS(r) (((r) + LN_ROW_BLOCK - 1) / LN_ROW_BLOCK)

/* Row reductions, inlined into each instruction set's loops below. The
 * last, partial group of MG_LANES elements goes to the first lanes, so a
 * sum's order depends on n alone. */
#define DEFINE_ROW_SUMS(T, S)                                                            \
    static inline double row_sum_##S(size_t n, const T *restrict x)                      \
    {                                                                                    \
        double acc[MG_LANES] = {0};                                                      \
        mg_sum_lanes_##S(n, x, acc);                                                     \
        return mg_lanes_total(acc);                                                      \
    }                                                                                    \
    /* sum((x - mu)^2) with x - mu rounded in T, as the reference's x - mean */          \
    static inline double row_centered_sumsq_##S(size_t n, const T *restrict x, T mu)     \
    {                                                                                    \
        double acc[MG_LANES] = {0};                                                      \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            for (size_t l = 0; l < MG_LANES; l++) {                                      \
                double dev = (T)(x[i + l] - mu);                                         \
                acc[l] += dev * dev;                                                     \
            }                                                                            \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double dev = (T)(x[i + l] - mu);                                             \
            acc[l] += dev * dev;                                                         \
        }                                                                                \
        return mg_lanes_total(acc);                                                      \
    }

DEFINE_ROW_SUMS(float, f32)
DEFINE_ROW_SUMS(double, f64)

/* Batch norm's slow, sound path, taken channel by channel where the fast
 * one's result cannot be trusted (see BN_TINY_VAR):
 * the statistics of column j of x (n rows, leading dimension ld) by
 * Welford's update in double on every row, and the backward's two sums in
 * double. Where Welford's mean is NaN, that is inf - inf from an infinite
 * input, and sum / n is the reference's mean (inf, or NaN for both signs).
 * Rare, so strided walks are fine. */
#define DEFINE_COLUMN_FALLBACKS(T, S)                                                    \
    static void column_stats_##S(size_t n, size_t ld, const T *x, double *mean,         \
                                 double *m2)                                             \
    {                                                                                    \
        double m = 0.0, q = 0.0, sum = 0.0;                                              \
        for (size_t i = 0; i < n; i++) {                                                 \
            double v = x[i * ld], delta = v - m;                                         \
            m += delta * (1.0 / (double)(i + 1)); /* the divide off m's chain */      \
            q += delta * (v - m);                                                        \
            sum += v;                                                                    \
        }                                                                                \
        *mean = m == m ? m : sum / (double)(n > 0 ? n : 1);                              \
        *m2 = q;                                                                         \
    }                                                                                    \
    static void column_grad_sums_##S(size_t n, size_t ld, const T *gy, const T *x, T mu, \
                                     T is, double *sg, double *sgx)                      \
    {                                                                                    \
        double a = 0.0, b = 0.0;                                                         \
        for (size_t i = 0; i < n; i++) {                                                 \
            T xhat = (T)(x[i * ld] - mu) * is;                                           \
            a += gy[i * ld];                                                             \
            b += (double)gy[i * ld] * (double)xhat;                                      \
        }                                                                                \
        *sg = a, *sgx = b;                                                               \
    }

/* A leaf in T rounds like any two-pass formula in T, a unit or so of T's
 * last place in m2, except where T's range runs out. A sum or square that
 * overflows gives inf or NaN. A square below T's smallest normal loses
 * digits or becomes 0, which matters only when such squares are all there
 * is: a variance below BN_TINY_VAR. Zero itself is exact (a constant
 * channel) when the mean is at least BN_TINY_MEAN, for then any deviation
 * that is not 0 is at least T's epsilon times that, and its square normal.
 * Every other channel is taken again by the slow path (but a channel of
 * zeros, a dead unit's, is recognized as exact: see bn_train_finish). */
#define BN_TINY_VAR_f32 0x1p-100
#define BN_TINY_MEAN_f32 0x1p-38
#define BN_TINY_VAR_f64 0x1p-1000
#define BN_TINY_MEAN_f64 0x1p-459

static inline int bn_finite(double v)
{
    return v - v == 0.0; /* false for inf and NaN */
}

/* Whether leaves' (mean, m2) of count values can be trusted (see
 * BN_TINY_VAR): both finite, and m2 at least BN_TINY_VAR * count, or
 * exactly 0 for a mean of at least BN_TINY_MEAN. Branch-free, so that loops
 * over channels vectorize with it. */
#define DEFINE_LEAVES_SOUND(S)                                                           \
    static inline int leaves_sound_##S(double mu, double m2, double count)               \
    {                                                                                    \
        int exact_constant = (m2 == 0.0) & (fabs(mu) >= BN_TINY_MEAN_##S);               \
        return bn_finite(mu) & bn_finite(m2) &                                           \
               ((m2 >= BN_TINY_VAR_##S * count) | exact_constant);                       \
    }

DEFINE_LEAVES_SOUND(f32)
DEFINE_LEAVES_SOUND(f64)

DEFINE_COLUMN_FALLBACKS(float, f32)
DEFINE_COLUMN_FALLBACKS(double, f64)

/* Batch norm's leaves: eight rows of one channel, x[0], x[ld], ..., summed
 * pairwise in the element type (a constant leaf's mean is then exactly its
 * value). Inlined into each instruction set's loops, which vectorize them
 * across channels. */
#define BN_LEAF ((size_t)8)

#define DEFINE_BN_LEAVES(T, S)                                                           \
    static inline T pairwise8_##S(T v0, T v1, T v2, T v3, T v4, T v5, T v6, T v7)        \
    {                                                                                    \
        return ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7));                        \
    }                                                                                    \
    /* Layer norm's sum((x - mu)^2) over a row: squares in T, by leaves of */            \
    /* eight MG_LANES apart (as ln_row_leaf), added in double lanes; the */              \
    /* last partial chunk in double. Squares of T have no cancellation to */             \
    /* fear, so this is the double sum to a few units of T's last place, */              \
    /* except where T's range runs out (an overflow, or a variance below */              \
    /* BN_TINY_VAR): the row is then summed again in double. */                          \
    static MG_ALWAYS_INLINE double ln_centered_sumsq_##S(size_t n, const T *restrict x,  \
                                                         T mu)                       \
    {                                                                                    \
        double acc[MG_LANES] = {0};                                                      \
        size_t i = 0, chunk = BN_LEAF * MG_LANES;                                        \
        for (; i + chunk <= n; i += chunk) {                                             \
            for (size_t l = 0; l < MG_LANES; l++) {                                      \
                T q[8];                                                                  \
                for (size_t k = 0; k < 8; k++) {                                         \
                    T dev = x[i + l + k * MG_LANES] - mu;                                \
                    q[k] = dev * dev;                                                    \
                }                                                                        \
                acc[l] += pairwise8_##S(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]); \
            }                                                                            \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double dev = (T)(x[i + l] - mu);                                             \
            acc[l % MG_LANES] += dev * dev;                                              \
        }                                                                                \
        double m2 = mg_lanes_total(acc);                                                 \
        if (leaves_sound_##S((double)mu, m2, (double)n))                                 \
            return m2;                                                                   \
        return row_centered_sumsq_##S(n, x, mu);                                         \
    }                                                                                    \
    /* The leaf's mean and m2 in double: the two-pass formula around the */              \
    /* leaf's mean rounded in T, mb, corrected for that rounding with the sum */         \
    /* of the deviations, sd (Bjorck's corrected two-pass: the mean is mb + */           \
    /* sd / 8 and m2 is sum(d^2) - sd^2 / 8). Without the correction, the */             \
    /* rounding of mb correlates with the merge's deviations and costs */                \
    /* digits when |mean| >> std. */                                                     \
    static inline double bn_leaf_##S(const T *restrict x, size_t ld, double *mean)       \
    {                                                                                    \
        T v0 = x[0], v1 = x[ld], v2 = x[2 * ld], v3 = x[3 * ld];                         \
        T v4 = x[4 * ld], v5 = x[5 * ld], v6 = x[6 * ld], v7 = x[7 * ld];                \
        T mb = pairwise8_##S(v0, v1, v2, v3, v4, v5, v6, v7) * (T)0.125;                 \
        T d0 = v0 - mb, d1 = v1 - mb, d2 = v2 - mb, d3 = v3 - mb;                        \
        T d4 = v4 - mb, d5 = v5 - mb, d6 = v6 - mb, d7 = v7 - mb;                        \
        double sd = pairwise8_##S(d0, d1, d2, d3, d4, d5, d6, d7);                       \
        double m2 = pairwise8_##S(d0 * d0, d1 * d1, d2 * d2, d3 * d3, d4 * d4, d5 * d5,  \
                                  d6 * d6, d7 * d7);                                     \
        *mean = (double)mb + sd * 0.125;                                                 \
        m2 -= sd * sd * 0.125;                                                           \
        return m2 > 0.0 ? m2 : 0.0;                                                      \
    }                                                                                    \
    /* The leaf's sum(gy * xhat) with xhat = (x - mu) * is; sum(gy) into *sum_g. */     \
    static inline T bn_grad_leaf_##S(const T *restrict g, const T *restrict x, size_t ld, \
                                     T mu, T is, T *sum_g)                               \
    {                                                                                    \
        T g0 = g[0], g1 = g[ld], g2 = g[2 * ld], g3 = g[3 * ld];                         \
        T g4 = g[4 * ld], g5 = g[5 * ld], g6 = g[6 * ld], g7 = g[7 * ld];                \
        T p0 = g0 * ((T)(x[0] - mu) * is), p1 = g1 * ((T)(x[ld] - mu) * is);             \
        T p2 = g2 * ((T)(x[2 * ld] - mu) * is), p3 = g3 * ((T)(x[3 * ld] - mu) * is);    \
        T p4 = g4 * ((T)(x[4 * ld] - mu) * is), p5 = g5 * ((T)(x[5 * ld] - mu) * is);    \
        T p6 = g6 * ((T)(x[6 * ld] - mu) * is), p7 = g7 * ((T)(x[7 * ld] - mu) * is);    \
        *sum_g = pairwise8_##S(g0, g1, g2, g3, g4, g5, g6, g7);                          \
        return pairwise8_##S(p0, p1, p2, p3, p4, p5, p6, p7);                            \
    }                                                                                    \
    /* Layer norm's leaf along a row: eight elements `step` apart, with */               \
    /* g = gy * w (w_on) or gy, returns sum(g * xhat) and puts sum(g) in */              \
    /* *sum_g. w_on is a constant where this is inlined, so each loop that */            \
    /* calls it has no branch left. */                                                   \
    static inline T ln_row_leaf_##S(const T *restrict gy, const T *restrict x,           \
                                    const T *restrict w, int w_on, size_t step, T mu,    \
                                    T is, T *sum_g)                                      \
    {                                                                                    \
        T g[8], p[8];                                                                    \
        for (size_t q = 0; q < 8; q++) {                                                 \
            g[q] = w_on ? gy[q * step] * w[q * step] : gy[q * step];                     \
            p[q] = g[q] * ((T)(x[q * step] - mu) * is);                                  \
        }                                                                                \
        *sum_g = pairwise8_##S(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);          \
        return pairwise8_##S(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);            \
    }                                                                                    \
    /* Rows k and k + 1 of layer norm's gx, as ln_grad_input_row writes */               \
    /* each with a weight, and in the same visit of each column those rows' */           \
    /* share of the weight's and bias's leaves (p = gy * xhat and g = gy */              \
    /* down eight rows, in pairwise8's order). The pair's `stage` in its */              \
    /* leaf: 0 keeps its sums in lo, 1 adds them to lo (rows 0-3 done), 2 */             \
    /* keeps them in hi, 3 adds lo + (hi + pair) to gw and gb in double. */              \
    /* scratch holds lo and hi, 4 * d of T. stage is a constant at every */              \
    /* call, so each inlined copy has no branch in its loop. */                          \
    static MG_ALWAYS_INLINE void ln_grad_input_pair_##S(                                 \
        int stage, size_t d, size_t k, T *restrict gx, const T *restrict gy,             \
        const T *restrict x, const T *restrict w, const T *restrict mu,                  \
        const T *restrict is, const T *restrict mean_g, const T *restrict neg_mean_gx,   \
        T *restrict scratch, double *restrict gw, double *restrict gb)                   \
    {                                                                                    \
        T *restrict gx0 = gx + k * d, *restrict gx1 = gx0 + d;                           \
        const T *restrict gy0 = gy + k * d, *restrict gy1 = gy0 + d;                     \
        const T *restrict x0 = x + k * d, *restrict x1 = x0 + d;                         \
        T *restrict lo_p = scratch, *restrict lo_g = lo_p + d;                           \
        T *restrict hi_p = lo_g + d, *restrict hi_g = hi_p + d;                          \
        T m0 = mu[k], m1 = mu[k + 1], s0 = is[k], s1 = is[k + 1];                        \
        T a0 = neg_mean_gx[k], a1 = neg_mean_gx[k + 1];                                  \
        T c0 = mean_g[k], c1 = mean_g[k + 1];                                            \
        for (size_t j = 0; j < d; j++) {                                                 \
            T xhat0 = (T)(x0[j] - m0) * s0, xhat1 = (T)(x1[j] - m1) * s1;                \
            gx0[j] = (xhat0 * a0 + gy0[j] * w[j] - c0) * s0;                             \
            gx1[j] = (xhat1 * a1 + gy1[j] * w[j] - c1) * s1;                             \
            T p = gy0[j] * xhat0 + gy1[j] * xhat1, g = gy0[j] + gy1[j];                  \
            if (stage == 0) {                                                            \
                lo_p[j] = p, lo_g[j] = g;                                                \
            } else if (stage == 1) {                                                     \
                lo_p[j] += p, lo_g[j] += g;                                              \
            } else if (stage == 2) {                                                     \
                hi_p[j] = p, hi_g[j] = g;                                                \
            } else {                                                                     \
                gw[j] += (double)(lo_p[j] + (hi_p[j] + p));                              \
                gb[j] += (double)(lo_g[j] + (hi_g[j] + g));                              \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* One row of layer norm's gx = (xhat * neg_mean_gx + g - mean_g) * is, */          \
    /* g = gy * w (or gy): the last pass of both backward loops. */                      \
    static inline void ln_grad_input_row_##S(size_t d, T *restrict gx,                   \
                                             const T *restrict gy, const T *restrict x,  \
                                             const T *restrict w, T mu, T is, T mean_g,  \
                                             T neg_mean_gx)                              \
    {                                                                                    \
        if (w != NULL) {                                                                 \
            for (size_t j = 0; j < d; j++) {                                             \
                T xhat = (T)(x[j] - mu) * is;                                            \
                gx[j] = (xhat * neg_mean_gx + gy[j] * w[j] - mean_g) * is;               \
            }                                                                            \
        } else {                                                                         \
            for (size_t j = 0; j < d; j++) {                                             \
                T xhat = (T)(x[j] - mu) * is;                                            \
                gx[j] = (xhat * neg_mean_gx + gy[j] - mean_g) * is;                      \
            }                                                                            \
        }                                                                                \
    }

DEFINE_BN_LEAVES(float, f32)
DEFINE_BN_LEAVES(double, f64)

/* Batch norm forms its per-channel statistics and sums per block of rows,
 * the unit of work of a thread, and merges the blocks' results in block
 * order: the blocks depend on n alone, so the bits do not depend on the
 * thread count. Threads then split the channels for the merge and the rows
 * for the writing pass. (Splitting the channels for the passes over the data
 * measured slower than one thread at 128x512: both cores then touch every
 * row, and each one's half of it is a short run the prefetchers serve
 * badly.) At most BN_MAX_BLOCKS blocks keep the scratch space small. */
#define BN_MIN_BLOCK_ROWS ((size_t)32)
#define BN_MAX_BLOCKS ((size_t)16)

static size_t bn_block_rows(size_t n)
{
    size_t rows = (n + BN_MAX_BLOCKS - 1) / BN_MAX_BLOCKS;
    if (rows < BN_MIN_BLOCK_ROWS)
        rows = BN_MIN_BLOCK_ROWS;
    return (rows + 7) & ~(size_t)7; /* whole visits of bn_stats' eight rows */
}

/* Rows [lo, lo + len) of block k of n rows in blocks of `rows`. */
static mg_range bn_block(size_t n, size_t rows, size_t k)
{
    mg_range r = {k * rows, n - k * rows < rows ? n - k * rows : rows};
    return r;
}

/*
 * The loops. Batch norm's take a block of `width` channels of `rows` rows
 * with leading dimension ld, and per-channel arrays indexed from the
 * block's first channel.
 */
#define DEFINE_NORM_LOOPS(T, S, ISA, TARGET)                                             \
    /* Mean and m2 (the sum of squared deviations from it) of `rows` rows: */            \
    /* leaves of eight rows by the two-pass formula in T, each merged into */            \
    /* the running double state by Chan et al.'s update; leftover rows by */             \
    /* Welford's. Half the work of Welford in double on every row, for a */              \
    /* leaf's rounding in T (see BN_TINY_VAR for when that is not */                     \
    /* enough). */                                                                       \
    static TARGET void bn_stats_##S##_##ISA(size_t rows, size_t width, size_t ld,        \
                                            const T *restrict x, double *restrict m,     \
                                            double *restrict m2)                         \
    {                                                                                    \
        size_t i = 0;                                                                    \
        if (rows >= BN_LEAF) {                                                           \
            for (size_t j = 0; j < width; j++)                                           \
                m2[j] = bn_leaf_##S(x + j, ld, m + j);                                   \
            i = BN_LEAF;                                                                 \
        } else {                                                                         \
            for (size_t j = 0; j < width; j++)                                           \
                m[j] = m2[j] = 0.0;                                                      \
        }                                                                                \
        for (; i + BN_LEAF <= rows; i += BN_LEAF) {                                      \
            /* counts i and BN_LEAF merge into i + BN_LEAF */                            \
            double w_mean = (double)BN_LEAF / (double)(i + BN_LEAF);                     \
            double w_m2 = (double)i * w_mean;                                            \
            const T *restrict r = x + i * ld;                                            \
            for (size_t j = 0; j < width; j++) {                                         \
                double mb, m2b = bn_leaf_##S(r + j, ld, &mb);                            \
                double delta = mb - m[j];                                                \
                m[j] += delta * w_mean;                                                  \
                m2[j] += m2b + delta * delta * w_m2;                                     \
            }                                                                            \
        }                                                                                \
        for (; i < rows; i++) {                                                          \
            const T *restrict row = x + i * ld;                                          \
            double inv_count = 1.0 / (double)(i + 1);                                    \
            for (size_t j = 0; j < width; j++) {                                         \
                double v = row[j];                                                       \
                double delta = v - m[j];                                                 \
                m[j] += delta * inv_count;                                               \
                m2[j] += delta * (v - m[j]);                                             \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* counts[j] = how many of column j's `rows` values are not 0, in T */              \
    /* (exact below 2^24 rows, and above that never 0 once it is not). */                \
    static TARGET void bn_count_nonzero_##S##_##ISA(size_t rows, size_t width,           \
                                                    size_t ld, const T *restrict x,      \
                                                    T *restrict counts)                  \
    {                                                                                    \
        for (size_t j = 0; j < width; j++)                                               \
            counts[j] = 0;                                                               \
        for (size_t i = 0; i < rows; i++) {                                              \
            const T *restrict row = x + i * ld;                                          \
            for (size_t j = 0; j < width; j++)                                           \
                counts[j] += (T)(row[j] != 0);                                           \
        }                                                                                \
    }                                                                                    \
    /* y = (x - mean) * scale (+ bias), each step rounded in T. Four rows */             \
    /* per visit of mean, scale and bias: their loads, not x's, bound a */               \
    /* one-row loop. */                                                                  \
    static TARGET void bn_normalize_##S##_##ISA(                                         \
        size_t rows, size_t width, size_t ld, T *restrict y, const T *restrict x,        \
        const T *restrict mean, const T *restrict scale, const T *restrict bias)         \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + 4 <= rows; i += 4) {                                                  \
            T *restrict y0 = y + i * ld;                                                 \
            const T *restrict x0 = x + i * ld;                                           \
            if (bias != NULL) {                                                          \
                for (size_t j = 0; j < width; j++) {                                     \
                    T mu = mean[j], s = scale[j], bj = bias[j];                          \
                    for (size_t q = 0; q < 4; q++)                                       \
                        y0[q * ld + j] = (T)(x0[q * ld + j] - mu) * s + bj;              \
                }                                                                        \
            } else {                                                                     \
                for (size_t j = 0; j < width; j++) {                                     \
                    T mu = mean[j], s = scale[j];                                        \
                    for (size_t q = 0; q < 4; q++)                                       \
                        y0[q * ld + j] = (T)(x0[q * ld + j] - mu) * s;                   \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        for (; i < rows; i++) {                                                          \
            T *restrict yr = y + i * ld;                                                 \
            const T *restrict xr = x + i * ld;                                           \
            if (bias != NULL) {                                                          \
                for (size_t j = 0; j < width; j++)                                       \
                    yr[j] = (T)(xr[j] - mean[j]) * scale[j] + bias[j];                   \
            } else {                                                                     \
                for (size_t j = 0; j < width; j++)                                       \
                    yr[j] = (T)(xr[j] - mean[j]) * scale[j];                             \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* sg = sum(gy), sgx = sum(gy * xhat) down the rows: per leaf of eight */            \
    /* rows in T, added in double; bn_backward_finish redoes an overflow. */           \
    static TARGET void bn_grad_sums_##S##_##ISA(                                         \
        size_t rows, size_t width, size_t ld, const T *restrict gy, const T *restrict x, \
        const T *restrict mean, const T *restrict invstd, double *restrict sg,           \
        double *restrict sgx)                                                            \
    {                                                                                    \
        for (size_t j = 0; j < width; j++)                                               \
            sg[j] = sgx[j] = 0.0;                                                        \
        size_t i = 0;                                                                    \
        for (; i + BN_LEAF <= rows; i += BN_LEAF) {                                      \
            const T *restrict g0 = gy + i * ld, *restrict x0 = x + i * ld;               \
            for (size_t j = 0; j < width; j++) {                                         \
                T sgl, sgxl = bn_grad_leaf_##S(g0 + j, x0 + j, ld, mean[j], invstd[j], &sgl); \
                sg[j] += (double)sgl;                                                    \
                sgx[j] += (double)sgxl;                                                  \
            }                                                                            \
        }                                                                                \
        for (; i < rows; i++) {                                                          \
            const T *restrict gr = gy + i * ld;                                          \
            const T *restrict xr = x + i * ld;                                           \
            for (size_t j = 0; j < width; j++) {                                         \
                T xhat = (T)(xr[j] - mean[j]) * invstd[j];                               \
                sg[j] += gr[j];                                                          \
                sgx[j] += (double)gr[j] * (double)xhat;                                  \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* gx = (xhat * a + gy - b) * scale with a = -sgx / n, b = sg / n, four */         \
    /* rows per visit of the per-channel factors, as in bn_normalize. */                 \
    static TARGET void bn_grad_input_##S##_##ISA(                                        \
        size_t rows, size_t width, size_t ld, T *restrict gx, const T *restrict gy,      \
        const T *restrict x, const T *restrict mean, const T *restrict invstd,           \
        const T *restrict a, const T *restrict b, const T *restrict scale)               \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + 4 <= rows; i += 4) {                                                  \
            T *restrict gx0 = gx + i * ld;                                               \
            const T *restrict g0 = gy + i * ld, *restrict x0 = x + i * ld;               \
            for (size_t j = 0; j < width; j++) {                                         \
                T mu = mean[j], is = invstd[j], aj = a[j], bj = b[j], sj = scale[j];     \
                for (size_t q = 0; q < 4; q++) {                                         \
                    T xhat = (T)(x0[q * ld + j] - mu) * is;                              \
                    gx0[q * ld + j] = (xhat * aj + g0[q * ld + j] - bj) * sj;            \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        for (; i < rows; i++) {                                                          \
            T *restrict gxr = gx + i * ld;                                               \
            const T *restrict gr = gy + i * ld;                                          \
            const T *restrict xr = x + i * ld;                                           \
            for (size_t j = 0; j < width; j++) {                                         \
                T xhat = (T)(xr[j] - mean[j]) * invstd[j];                               \
                gxr[j] = (xhat * a[j] + gr[j] - b[j]) * scale[j];                        \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* Channels [c0, c1) of the forward's merge: the blocks' (mean, m2) */               \
    /* into block 0's by Chan et al.'s update (for counts na and nb the */               \
    /* mean moves by delta * nb / n and m2 gains m2b + delta^2 * na * nb / n). */        \
    /* Returns whether any channel came out where the leaves are not to be */            \
    /* trusted (BN_TINY_VAR), for bn_train_finish to look at one by one. */              \
    static TARGET int bn_merge_##S##_##ISA(size_t n, size_t c, size_t c0, size_t c1,     \
                                           size_t rows, size_t blocks,                   \
                                           double *restrict part)                        \
    {                                                                                    \
        double *restrict mu = part, *restrict m2 = part + c;                             \
        double na = blocks > 0 ? (double)bn_block(n, rows, 0).len : 0.0;                 \
        for (size_t k = 1; k < blocks; k++) {                                            \
            double nb = (double)bn_block(n, rows, k).len, total = na + nb;               \
            double w_mean = nb / total, w_m2 = na * nb / total;                          \
            const double *restrict mb = part + 2 * k * c, *restrict m2b = mb + c;        \
            for (size_t j = c0; j < c1; j++) {                                           \
                double delta = mb[j] - mu[j];                                            \
                mu[j] += delta * w_mean;                                                 \
                m2[j] += m2b[j] + delta * delta * w_m2;                                  \
            }                                                                            \
            na = total;                                                                  \
        }                                                                                \
        double count = n > 0 ? (double)n : 1.0;                                          \
        int doubtful = 0;                                                                \
        for (size_t j = c0; j < c1; j++)                                                 \
            doubtful |= !leaves_sound_##S(mu[j], m2[j], count);                          \
        return doubtful;                                                                 \
    }                                                                                    \
    /* Channels [c0, c1): mean, invstd and the scale y needs from the */                 \
    /* merged (mu, m2), and the running statistics (PyTorch's rule: the */               \
    /* unbiased variance). */                                                            \
    static TARGET void bn_factors_##S##_##ISA(                                           \
        size_t n, size_t c0, size_t c1, const double *restrict mu,                       \
        const double *restrict m2, T *restrict mean, T *restrict invstd,                 \
        T *restrict scale, const T *restrict weight, double eps,                         \
        T *restrict running_mean, T *restrict running_var, double momentum)              \
    {                                                                                    \
        double count = n > 0 ? (double)n : 1.0;                                          \
        double unbias = (double)n / (double)(n > 1 ? n - 1 : 1);                         \
        for (size_t j = c0; j < c1; j++) {                                               \
            double is = 1.0 / sqrt(m2[j] / count + eps);                                 \
            mean[j] = (T)mu[j];                                                          \
            invstd[j] = (T)is;                                                           \
            scale[j] = (T)(weight != NULL ? is * (double)weight[j] : is);                \
        }                                                                                \
        if (n == 0)                                                                      \
            return;                                                                      \
        if (running_mean != NULL) {                                                      \
            for (size_t j = c0; j < c1; j++)                                             \
                running_mean[j] =                                                        \
                    (T)((1.0 - momentum) * (double)running_mean[j] + momentum * mu[j]);  \
        }                                                                                \
        if (running_var != NULL) {                                                       \
            for (size_t j = c0; j < c1; j++)                                             \
                running_var[j] = (T)((1.0 - momentum) * (double)running_var[j] +         \
                                     momentum * (m2[j] / count * unbias));               \
        }                                                                                \
    }                                                                                    \
    /* Channels [c0, c1) of the backward's merge: the blocks' sums added in */           \
    /* block order into block 0's. Returns whether any came out inf or NaN. */           \
    static TARGET int bn_grad_merge_##S##_##ISA(size_t c, size_t c0, size_t c1,          \
                                                size_t blocks, double *restrict part)    \
    {                                                                                    \
        double *restrict sg = part, *restrict sgx = part + c;                            \
        for (size_t k = 1; k < blocks; k++) {                                            \
            const double *restrict sgk = part + 2 * k * c, *restrict sgxk = sgk + c;     \
            for (size_t j = c0; j < c1; j++) {                                           \
                sg[j] += sgk[j];                                                         \
                sgx[j] += sgxk[j];                                                       \
            }                                                                            \
        }                                                                                \
        int doubtful = 0;                                                                \
        for (size_t j = c0; j < c1; j++)                                                 \
            doubtful |= !(bn_finite(sg[j]) & bn_finite(sgx[j]));                         \
        return doubtful;                                                                 \
    }                                                                                    \
    /* Channels [c0, c1): the factors gx needs, a = -sgx / n, b = sg / n */              \
    /* and scale = invstd * weight, and the weight and bias gradients. */                \
    static TARGET void bn_grad_factors_##S##_##ISA(                                      \
        size_t n, size_t c0, size_t c1, const double *restrict sg,                       \
        const double *restrict sgx, const T *restrict invstd, const T *restrict weight,  \
        T *restrict a, T *restrict b, T *restrict scale, T *restrict gweight,            \
        T *restrict gbias)                                                               \
    {                                                                                    \
        double count = n > 0 ? (double)n : 1.0;                                          \
        for (size_t j = c0; j < c1; j++) {                                               \
            a[j] = (T)(sgx[j] / -count);                                                 \
            b[j] = (T)(sg[j] / count);                                                   \
        }                                                                                \
        if (weight != NULL) {                                                            \
            for (size_t j = c0; j < c1; j++) {                                           \
                scale[j] = (T)(invstd[j] * weight[j]);                                   \
                gweight[j] = (T)sgx[j];                                                  \
                gbias[j] = (T)sg[j];                                                     \
            }                                                                            \
        } else {                                                                         \
            for (size_t j = c0; j < c1; j++)                                             \
                scale[j] = invstd[j];                                                    \
        }                                                                                \
    }                                                                                    \
    /* Layer norm forward on `rows` rows of d: the reference's two-pass */               \
    /* statistics per row, then y = (x - mean) * invstd (* w) (+ b). */                  \
    static TARGET void ln_forward_##S##_##ISA(size_t rows, size_t d, T *restrict y,      \
                                              T *restrict mean, T *restrict invstd,      \
                                              const T *restrict x, const T *restrict w,  \
                                              const T *restrict b, double eps)           \
    {                                                                                    \
        double count = d > 0 ? (double)d : 1.0;                                          \
        for (size_t i = 0; i < rows; i++) {                                              \
            const T *restrict xr = x + i * d;                                            \
            T *restrict yr = y + i * d;                                                  \
            T mu = (T)(row_sum_##S(d, xr) / count);                                      \
            T is = (T)(1.0 / sqrt(ln_centered_sumsq_##S(d, xr, mu) / count + eps));      \
            mean[i] = mu;                                                                \
            invstd[i] = is;                                                              \
            if (w != NULL && b != NULL) {                                                \
                for (size_t j = 0; j < d; j++)                                           \
                    yr[j] = (T)(xr[j] - mu) * is * w[j] + b[j];                          \
            } else if (w != NULL) {                                                      \
                for (size_t j = 0; j < d; j++)                                           \
                    yr[j] = (T)(xr[j] - mu) * is * w[j];                                 \
            } else if (b != NULL) {                                                      \
                for (size_t j = 0; j < d; j++)                                           \
                    yr[j] = (T)(xr[j] - mu) * is + b[j];                                 \
            } else {                                                                     \
                for (size_t j = 0; j < d; j++)                                           \
                    yr[j] = (T)(xr[j] - mu) * is;                                        \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* Layer norm backward on `rows` (at most LN_ROW_BLOCK) rows of d by */              \
    /* leaves in T, summed in double: each row's sum(g) and sum(g * xhat) */             \
    /* by leaves of eight elements MG_LANES apart, then gx two rows at a */              \
    /* time with the weight's and bias's column leaves of eight rows */                  \
    /* (ln_grad_input_pair; scratch holds 4 * d of T for them). Returns 0 */             \
    /* where a sum came out inf or NaN (a leaf overflowed T, or the data */              \
    /* hold inf or NaN): the caller then takes the block by ln_backward, in */           \
    /* double throughout, which writes all of gx and the sums again. */                  \
    static TARGET int ln_backward_leaves_##S##_##ISA(                                    \
        size_t rows, size_t d, T *restrict gx, double *restrict gw_part,                 \
        double *restrict gb_part, T *restrict scratch, const T *restrict gy,             \
        const T *restrict x, const T *restrict mean, const T *restrict invstd,           \
        const T *restrict w)                                                             \
    {                                                                                    \
        double count = d > 0 ? (double)d : 1.0, check = 0.0;                             \
        T mean_g[LN_ROW_BLOCK], neg_mean_gx[LN_ROW_BLOCK];                               \
        size_t chunk = BN_LEAF * MG_LANES;                                               \
        for (size_t i = 0; i < rows; i++) {                                              \
            const T *restrict gr = gy + i * d, *restrict xr = x + i * d;                 \
            T mu = mean[i], is = invstd[i];                                              \
            double acc_g[MG_LANES] = {0}, acc_gx[MG_LANES] = {0};                        \
            size_t j = 0;                                                                \
            if (w != NULL) {                                                             \
                for (; j + chunk <= d; j += chunk) {                                     \
                    for (size_t l = 0; l < MG_LANES; l++) {                              \
                        T sg, sgx = ln_row_leaf_##S(gr + j + l, xr + j + l, w + j + l,   \
                                                    1, MG_LANES, mu, is, &sg);           \
                        acc_g[l] += sg;                                                  \
                        acc_gx[l] += sgx;                                                \
                    }                                                                    \
                }                                                                        \
            } else {                                                                     \
                for (; j + chunk <= d; j += chunk) {                                     \
                    for (size_t l = 0; l < MG_LANES; l++) {                              \
                        T sg, sgx = ln_row_leaf_##S(gr + j + l, xr + j + l, NULL, 0,     \
                                                    MG_LANES, mu, is, &sg);              \
                        acc_g[l] += sg;                                                  \
                        acc_gx[l] += sgx;                                                \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
            for (size_t l = 0; j + l < d; l++) {                                         \
                T xhat = (T)(xr[j + l] - mu) * is;                                       \
                T g = w != NULL ? gr[j + l] * w[j + l] : gr[j + l];                      \
                acc_g[l % MG_LANES] += g;                                                \
                acc_gx[l % MG_LANES] += (double)g * (double)xhat;                        \
            }                                                                            \
            double sum_g = mg_lanes_total(acc_g), sum_gx = mg_lanes_total(acc_gx);       \
            check += (sum_g - sum_g) + (sum_gx - sum_gx); /* NaN unless both finite */   \
            mean_g[i] = (T)(sum_g / count);                                              \
            neg_mean_gx[i] = (T)(sum_gx / -count);                                       \
        }                                                                                \
        if (check != 0.0)                                                                \
            return 0;                                                                    \
        size_t i = 0;                                                                    \
        if (w != NULL) {                                                                 \
            for (size_t j = 0; j < d; j++)                                               \
                gw_part[j] = gb_part[j] = 0.0;                                           \
            for (; i + BN_LEAF <= rows; i += BN_LEAF) {                                  \
                ln_grad_input_pair_##S(0, d, i, gx, gy, x, w, mean, invstd, mean_g,      \
                                       neg_mean_gx, scratch, gw_part, gb_part);          \
                ln_grad_input_pair_##S(1, d, i + 2, gx, gy, x, w, mean, invstd, mean_g,  \
                                       neg_mean_gx, scratch, gw_part, gb_part);          \
                ln_grad_input_pair_##S(2, d, i + 4, gx, gy, x, w, mean, invstd, mean_g,  \
                                       neg_mean_gx, scratch, gw_part, gb_part);          \
                ln_grad_input_pair_##S(3, d, i + 6, gx, gy, x, w, mean, invstd, mean_g,  \
                                       neg_mean_gx, scratch, gw_part, gb_part);          \
            }                                                                            \
            for (size_t k = i; k < rows; k++) {                                          \
                const T *restrict gr = gy + k * d, *restrict xr = x + k * d;             \
                for (size_t j = 0; j < d; j++) {                                         \
                    T xhat = (T)(xr[j] - mean[k]) * invstd[k];                           \
                    gw_part[j] += (double)gr[j] * (double)xhat;                          \
                    gb_part[j] += gr[j];                                                 \
                }                                                                        \
            }                                                                            \
            for (size_t j = 0; j < d; j++)                                               \
                check += (gw_part[j] - gw_part[j]) + (gb_part[j] - gb_part[j]);          \
            if (check != 0.0)                                                            \
                return 0;                                                                \
        }                                                                                \
        for (; i < rows; i++)                                                            \
            ln_grad_input_row_##S(d, gx + i * d, gy + i * d, x + i * d, w, mean[i],      \
                                  invstd[i], mean_g[i], neg_mean_gx[i]);                 \
        return 1;                                                                        \
    }                                                                                    \
    /* Layer norm backward on `rows` rows of d. With a weight, g = gy * w, */            \
    /* and gw_part, gb_part (d each) receive this block's sums of gy * xhat */           \
    /* and gy; without one, g = gy and they are not touched. */                          \
    static TARGET void ln_backward_##S##_##ISA(                                          \
        size_t rows, size_t d, T *restrict gx, double *restrict gw_part,                 \
        double *restrict gb_part, const T *restrict gy, const T *restrict x,             \
        const T *restrict mean, const T *restrict invstd, const T *restrict w)           \
    {                                                                                    \
        double count = d > 0 ? (double)d : 1.0;                                          \
        if (w != NULL) {                                                                 \
            for (size_t j = 0; j < d; j++) {                                             \
                gw_part[j] = 0.0;                                                        \
                gb_part[j] = 0.0;                                                        \
            }                                                                            \
        }                                                                                \
        for (size_t i = 0; i < rows; i++) {                                              \
            const T *restrict gr = gy + i * d;                                           \
            const T *restrict xr = x + i * d;                                            \
            T *restrict gxr = gx + i * d;                                                \
            T mu = mean[i];                                                              \
            T is = invstd[i];                                                            \
            double acc_g[MG_LANES] = {0};                                                \
            double acc_gx[MG_LANES] = {0};                                               \
            size_t j = 0;                                                                \
            if (w != NULL) {                                                             \
                for (; j + MG_LANES <= d; j += MG_LANES) {                               \
                    for (size_t l = 0; l < MG_LANES; l++) {                              \
                        T xhat = (T)(xr[j + l] - mu) * is;                               \
                        T g = gr[j + l] * w[j + l];                                      \
                        acc_g[l] += g;                                                   \
                        acc_gx[l] += (double)g * (double)xhat;                           \
                        gw_part[j + l] += (double)gr[j + l] * (double)xhat;              \
                        gb_part[j + l] += gr[j + l];                                     \
                    }                                                                    \
                }                                                                        \
                for (size_t l = 0; j + l < d; l++) {                                     \
                    T xhat = (T)(xr[j + l] - mu) * is;                                   \
                    T g = gr[j + l] * w[j + l];                                          \
                    acc_g[l] += g;                                                       \
                    acc_gx[l] += (double)g * (double)xhat;                               \
                    gw_part[j + l] += (double)gr[j + l] * (double)xhat;                  \
                    gb_part[j + l] += gr[j + l];                                         \
                }                                                                        \
            } else {                                                                     \
                for (; j + MG_LANES <= d; j += MG_LANES) {                               \
                    for (size_t l = 0; l < MG_LANES; l++) {                              \
                        T xhat = (T)(xr[j + l] - mu) * is;                               \
                        acc_g[l] += gr[j + l];                                           \
                        acc_gx[l] += (double)gr[j + l] * (double)xhat;                   \
                    }                                                                    \
                }                                                                        \
                for (size_t l = 0; j + l < d; l++) {                                     \
                    T xhat = (T)(xr[j + l] - mu) * is;                                   \
                    acc_g[l] += gr[j + l];                                               \
                    acc_gx[l] += (double)gr[j + l] * (double)xhat;                       \
                }                                                                        \
            }                                                                            \
            T mean_g = (T)(mg_lanes_total(acc_g) / count);                               \
            T neg_mean_gx = (T)(mg_lanes_total(acc_gx) / -count);                        \
            ln_grad_input_row_##S(d, gxr, gr, xr, w, mu, is, mean_g, neg_mean_gx);       \
        }                                                                                \
    }

MG_FOR_EACH_ISA(DEFINE_NORM_LOOPS, float, f32)
MG_FOR_EACH_ISA(DEFINE_NORM_LOOPS, double, f64)

#define DEFINE_LOOP_TABLE(S)                                                             \
    typedef struct {                                                                     \
        __typeof__(bn_stats_##S##_generic) *bn_stats;                                    \
        __typeof__(bn_normalize_##S##_generic) *bn_normalize;                            \
        __typeof__(bn_count_nonzero_##S##_generic) *bn_count_nonzero;                    \
        __typeof__(bn_grad_sums_##S##_generic) *bn_grad_sums;                            \
        __typeof__(bn_grad_input_##S##_generic) *bn_grad_input;                          \
        __typeof__(ln_forward_##S##_generic) *ln_forward;                                \
        __typeof__(ln_backward_##S##_generic) *ln_backward;                              \
        __typeof__(ln_backward_leaves_##S##_generic) *ln_backward_leaves;                \
        __typeof__(bn_merge_##S##_generic) *bn_merge;                                    \
        __typeof__(bn_factors_##S##_generic) *bn_factors;                                \
        __typeof__(bn_grad_merge_##S##_generic) *bn_grad_merge;                          \
        __typeof__(bn_grad_factors_##S##_generic) *bn_grad_factors;                      \
    } norm_loops_##S;                                                                    \
    static const norm_loops_##S *norm_loops_for_cpu_##S(void)                            \
    {                                                                                    \
        static const norm_loops_##S table[] = {                                          \
            {bn_stats_##S##_generic, bn_normalize_##S##_generic,                         \
             bn_count_nonzero_##S##_generic,                                             \
             bn_grad_sums_##S##_generic, bn_grad_input_##S##_generic,                    \
             ln_forward_##S##_generic, ln_backward_##S##_generic,                        \
             ln_backward_leaves_##S##_generic, bn_merge_##S##_generic,                   \
             bn_factors_##S##_generic, bn_grad_merge_##S##_generic,                      \
             bn_grad_factors_##S##_generic},                                             \
            NORM_LOOPS_X86_ROWS(S)};                                                     \
        return &table[mg_simd_level()];                                                  \
    }

#if MG_X86_PATHS
#define NORM_LOOPS_X86_ROWS(S)                                                           \
    {bn_stats_##S##_avx2,     bn_normalize_##S##_avx2,  bn_count_nonzero_##S##_avx2,     \
     bn_grad_sums_##S##_avx2,                                                            \
     bn_grad_input_##S##_avx2, ln_forward_##S##_avx2,   ln_backward_##S##_avx2,          \
     ln_backward_leaves_##S##_avx2, bn_merge_##S##_avx2, bn_factors_##S##_avx2,          \
     bn_grad_merge_##S##_avx2, bn_grad_factors_##S##_avx2},                              \
    {                                                                                    \
        bn_stats_##S##_avx512, bn_normalize_##S##_avx512, bn_count_nonzero_##S##_avx512, \
            bn_grad_sums_##S##_avx512,                                                   \
            bn_grad_input_##S##_avx512, ln_forward_##S##_avx512, ln_backward_##S##_avx512, \
            ln_backward_leaves_##S##_avx512, bn_merge_##S##_avx512,                      \
            bn_factors_##S##_avx512, bn_grad_merge_##S##_avx512,                         \
            bn_grad_factors_##S##_avx512                                                 \
    }
#else
#define NORM_LOOPS_X86_ROWS(S)
#endif

DEFINE_LOOP_TABLE(f32)
DEFINE_LOOP_TABLE(f64)

static int bn_use_threads(size_t n, size_t c, size_t blocks)
{
    return blocks >= 2 && mg_use_threads(n * c);
}

/*
 * The public kernels. Scratch space (per-block sums, per-channel factors)
 * comes from malloc: a few doubles per channel and block, nothing kept
 * between calls.
 */
#define DEFINE_NORM_KERNELS(T, S)                                                        \
    /* Channels [c0, c1): the blocks merged and the factors formed by the */             \
    /* vectorized loops; a channel the leaves cannot be trusted with is */              \
    /* taken again by the slow path first. A channel of zeros (a dead */                 \
    /* unit's) has mean 0 and m2 0 as the leaves give them, but so has one */            \
    /* of values whose squares all underflow T: one pass counting the */                 \
    /* values that are not 0, vectorized across channels (the slow path's */             \
    /* walk is not), tells. scale holds the counts until bn_factors writes */            \
    /* it. */                                                                            \
    static void bn_train_finish_##S(const norm_loops_##S *L, size_t n, size_t c,        \
                                    size_t c0, size_t c1,                                \
                                    size_t rows, size_t blocks, double *part, T *mean,   \
                                    T *invstd, T *scale, const T *x, const T *weight,    \
                                    double eps, T *running_mean, T *running_var,         \
                                    double momentum)                                     \
    {                                                                                    \
        double count = n > 0 ? (double)n : 1.0;                                          \
        double *mu = part, *m2 = part + c;                                               \
        if (L->bn_merge(n, c, c0, c1, rows, blocks, part)) {                             \
            int zeros = 0;                                                               \
            for (size_t j = c0; j < c1; j++)                                             \
                zeros |= m2[j] == 0.0 && mu[j] == 0.0;                                   \
            if (zeros)                                                                   \
                L->bn_count_nonzero(n, c1 - c0, c, x + c0, scale + c0);                  \
            for (size_t j = c0; j < c1; j++) {                                           \
                int zero = zeros && m2[j] == 0.0 && mu[j] == 0.0 && scale[j] == 0;       \
                if (!zero && !leaves_sound_##S(mu[j], m2[j], count))                     \
                    column_stats_##S(n, c, x + j, mu + j, m2 + j);                       \
            }                                                                            \
        }                                                                                \
        L->bn_factors(n, c0, c1, mu, m2, mean, invstd, scale, weight, eps, running_mean, \
                      running_var, momentum);                                            \
    }                                                                                    \
    /* Blocks [k0, k1) of the forward's statistics pass. */                             \
    static void bn_train_blocks_##S(const norm_loops_##S *L, size_t n, size_t c,         \
                                    size_t rows, size_t k0, size_t k1, const T *x,       \
                                    double *part)                                        \
    {                                                                                    \
        for (size_t k = k0; k < k1; k++) {                                               \
            mg_range b = bn_block(n, rows, k);                                           \
            L->bn_stats(b.len, c, c, x + b.lo * c, part + 2 * k * c,                     \
                        part + (2 * k + 1) * c);                                         \
        }                                                                                \
    }                                                                                    \
    int mg_batch_norm_forward_train_##S(size_t n, size_t c, T *y, T *mean, T *invstd,    \
                                        const T *x, const T *weight, const T *bias,      \
                                        double eps, T *running_mean, T *running_var,     \
                                        double momentum)                                 \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        size_t rows = bn_block_rows(n), blocks = (n + rows - 1) / rows;                  \
        size_t slots = blocks > 0 ? blocks : 1; /* n == 0: block 0 all zeros */          \
        double *part = malloc(2 * slots * c * sizeof(double) + c * sizeof(T) + 1);      \
        T *scale;                                                                        \
        if (part == NULL)                                                                \
            return MG_ERR_NOMEM;                                                         \
        if (blocks == 0)                                                                 \
            memset(part, 0, 2 * c * sizeof(double));                                     \
        scale = (T *)(part + 2 * slots * c);                                             \
        if (!bn_use_threads(n, c, blocks)) {                                             \
            bn_train_blocks_##S(L, n, c, rows, 0, blocks, x, part);                      \
            bn_train_finish_##S(L, n, c, 0, c, rows, blocks, part, mean, invstd, scale,  \
                                x, weight, eps, running_mean, running_var, momentum);    \
            L->bn_normalize(n, c, c, y, x, mean, scale, bias);                           \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(blocks, 1);                                 \
                bn_train_blocks_##S(L, n, c, rows, r.lo, r.lo + r.len, x, part);         \
                MG_OMP_BARRIER                                                           \
                r = mg_thread_range(c, 16);                                              \
                bn_train_finish_##S(L, n, c, r.lo, r.lo + r.len, rows, blocks, part,     \
                                    mean, invstd, scale, x, weight, eps, running_mean,   \
                                    running_var, momentum);                              \
                MG_OMP_BARRIER                                                           \
                r = mg_thread_range(n, 1);                                               \
                L->bn_normalize(r.len, c, c, y + r.lo * c, x + r.lo * c, mean, scale,    \
                                bias);                                                   \
            }                                                                            \
        }                                                                                \
        free(part);                                                                      \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_batch_norm_forward_eval_##S(size_t n, size_t c, T *y, const T *x,             \
                                       const T *running_mean, const T *running_var,      \
                                       const T *weight, const T *bias, double eps)       \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        T *scale = malloc(c * sizeof(T) + 1);                                            \
        if (scale == NULL)                                                               \
            return MG_ERR_NOMEM;                                                         \
        for (size_t j = 0; j < c; j++) {                                                 \
            double s = 1.0 / sqrt((double)running_var[j] + eps);                         \
            scale[j] = (T)(weight != NULL ? s * (double)weight[j] : s);                  \
        }                                                                                \
        if (!mg_use_threads(n * c)) {                                                    \
            L->bn_normalize(n, c, c, y, x, running_mean, scale, bias);                   \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(n, 1);                                      \
                L->bn_normalize(r.len, c, c, y + r.lo * c, x + r.lo * c, running_mean,   \
                                scale, bias);                                            \
            }                                                                            \
        }                                                                                \
        free(scale);                                                                     \
        return MG_OK;                                                                    \
    }                                                                                    \
    /* Blocks [k0, k1) of the backward's sums pass. */                                  \
    static void bn_backward_blocks_##S(const norm_loops_##S *L, size_t n, size_t c,      \
                                       size_t rows, size_t k0, size_t k1, const T *gy,   \
                                       const T *x, const T *mean, const T *invstd,       \
                                       double *part)                                     \
    {                                                                                    \
        for (size_t k = k0; k < k1; k++) {                                               \
            mg_range b = bn_block(n, rows, k);                                           \
            L->bn_grad_sums(b.len, c, c, gy + b.lo * c, x + b.lo * c, mean, invstd,      \
                            part + 2 * k * c, part + (2 * k + 1) * c);                   \
        }                                                                                \
    }                                                                                    \
    /* Channels [c0, c1): the blocks' sums merged, then the factors gx */               \
    /* needs and the weight and bias gradients. Where a leaf's products or */            \
    /* sums in T overflowed, or the data hold inf or NaN, the channel is */              \
    /* summed again in double, the reference's way. */                                   \
    static void bn_backward_finish_##S(const norm_loops_##S *L, size_t n, size_t c,     \
                                       size_t c0, size_t c1, size_t blocks, double *part, \
                                       T *gweight, T *gbias, const T *gy, const T *x,    \
                                       const T *mean, const T *invstd, const T *weight,  \
                                       T *a, T *b, T *scale)                             \
    {                                                                                    \
        double *sg = part, *sgx = part + c;                                              \
        if (L->bn_grad_merge(c, c0, c1, blocks, part)) {                                 \
            for (size_t j = c0; j < c1; j++) {                                           \
                if (!(bn_finite(sg[j]) && bn_finite(sgx[j])))                            \
                    column_grad_sums_##S(n, c, gy + j, x + j, mean[j], invstd[j],        \
                                         sg + j, sgx + j);                               \
            }                                                                            \
        }                                                                                \
        L->bn_grad_factors(n, c0, c1, sg, sgx, invstd, weight, a, b, scale, gweight,     \
                           gbias);                                                       \
    }                                                                                    \
    int mg_batch_norm_backward_##S(size_t n, size_t c, T *gx, T *gweight, T *gbias,      \
                                   const T *gy, const T *x, const T *mean,               \
                                   const T *invstd, const T *weight)                     \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        size_t rows = bn_block_rows(n), blocks = (n + rows - 1) / rows;                  \
        size_t slots = blocks > 0 ? blocks : 1; /* n == 0: block 0 all zeros */          \
        double *part = malloc(2 * slots * c * sizeof(double) + 3 * c * sizeof(T) + 1);  \
        T *a, *b, *scale;                                                                \
        if (part == NULL)                                                                \
            return MG_ERR_NOMEM;                                                         \
        if (blocks == 0)                                                                 \
            memset(part, 0, 2 * c * sizeof(double));                                     \
        a = (T *)(part + 2 * slots * c);                                                 \
        b = a + c;                                                                       \
        scale = b + c;                                                                   \
        if (!bn_use_threads(n, c, blocks)) {                                             \
            bn_backward_blocks_##S(L, n, c, rows, 0, blocks, gy, x, mean, invstd, part); \
            bn_backward_finish_##S(L, n, c, 0, c, blocks, part, gweight, gbias, gy, x,    \
                                   mean, invstd, weight, a, b, scale);                   \
            L->bn_grad_input(n, c, c, gx, gy, x, mean, invstd, a, b, scale);             \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(blocks, 1);                                 \
                bn_backward_blocks_##S(L, n, c, rows, r.lo, r.lo + r.len, gy, x, mean,   \
                                       invstd, part);                                    \
                MG_OMP_BARRIER                                                           \
                r = mg_thread_range(c, 16);                                              \
                bn_backward_finish_##S(L, n, c, r.lo, r.lo + r.len, blocks, part,        \
                                       gweight, gbias, gy, x, mean, invstd, weight, a,   \
                                       b, scale);                                        \
                MG_OMP_BARRIER                                                           \
                r = mg_thread_range(n, 1);                                               \
                L->bn_grad_input(r.len, c, c, gx + r.lo * c, gy + r.lo * c, x + r.lo * c, \
                                 mean, invstd, a, b, scale);                             \
            }                                                                            \
        }                                                                                \
        free(part);                                                                      \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_layer_norm_forward_##S(size_t r, size_t d, T *y, T *mean, T *invstd,          \
                                  const T *x, const T *weight, const T *bias, double eps) \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        if (!mg_use_threads(r * d) || r < 2) {                                           \
            L->ln_forward(r, d, y, mean, invstd, x, weight, bias, eps);                  \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range s = mg_thread_share(r, 1);                                          \
            L->ln_forward(s.len, d, y + s.lo * d, mean + s.lo, invstd + s.lo,            \
                          x + s.lo * d, weight, bias, eps);                              \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    /* Block k of the layer norm backward: by leaves, or in double where */             \
    /* those overflow. */                                                                \
    static void ln_backward_block_##S(const norm_loops_##S *L, size_t r, size_t d,       \
                                      size_t k, T *gx, double *part, const T *gy,        \
                                      const T *x, const T *mean, const T *invstd,        \
                                      const T *weight)                                   \
    {                                                                                    \
        size_t lo = k * LN_ROW_BLOCK;                                                    \
        size_t rows = r - lo < LN_ROW_BLOCK ? r - lo : LN_ROW_BLOCK;                     \
        double *gw_part = part ? part + 2 * k * d : NULL;                                \
        double *gb_part = part ? part + (2 * k + 1) * d : NULL;                          \
        T *scratch = part ? (T *)(part + 2 * LN_BLOCKS(r) * d) + 4 * k * d : NULL;       \
        if (!L->ln_backward_leaves(rows, d, gx + lo * d, gw_part, gb_part, scratch,      \
                                   gy + lo * d, x + lo * d, mean + lo, invstd + lo,      \
                                   weight))                                              \
            L->ln_backward(rows, d, gx + lo * d, gw_part, gb_part, gy + lo * d,          \
                           x + lo * d, mean + lo, invstd + lo, weight);                  \
    }                                                                                    \
    int mg_layer_norm_backward_##S(size_t r, size_t d, T *gx, T *gweight, T *gbias,      \
                                   const T *gy, const T *x, const T *mean,               \
                                   const T *invstd, const T *weight)                     \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        size_t blocks = LN_BLOCKS(r);                                                    \
        double *part = NULL;                                                             \
        if (weight != NULL) {                                                            \
            /* per block: the sums, 2 * d doubles, and 4 * d of T of scratch */          \
            part = malloc(blocks * d * (2 * sizeof(double) + 4 * sizeof(T)) + 1);        \
            if (part == NULL)                                                            \
                return MG_ERR_NOMEM;                                                     \
        }                                                                                \
        if (!mg_use_threads(r * d) || blocks < 2) {                                      \
            for (size_t k = 0; k < blocks; k++)                                          \
                ln_backward_block_##S(L, r, d, k, gx, part, gy, x, mean, invstd, weight); \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range s = mg_thread_share(blocks, 1);                                 \
                for (size_t k = s.lo; k < s.lo + s.len; k++)                             \
                    ln_backward_block_##S(L, r, d, k, gx, part, gy, x, mean, invstd,     \
                                          weight);                                       \
            }                                                                            \
        }                                                                                \
        if (weight != NULL) {                                                            \
            for (size_t j = 0; j < d; j++) {                                             \
                double sw = 0.0, sb = 0.0;                                               \
                for (size_t k = 0; k < blocks; k++) {                                    \
                    sw += part[2 * k * d + j];                                           \
                    sb += part[(2 * k + 1) * d + j];                                     \
                }                                                                        \
                gweight[j] = (T)sw;                                                      \
                gbias[j] = (T)sb;                                                        \
            }                                                                            \
            free(part);                                                                  \
        }                                                                                \
        return MG_OK;                                                                    \
    }

DEFINE_NORM_KERNELS(float, f32)
DEFINE_NORM_KERNELS(double, f64)
