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
 *   every channel (Welford's update, in double: no cancellation, unlike
 *   E[x^2] - E[x]^2), one to normalize and write y. Both walk whole rows:
 *   taking the channels in narrower blocks, so that a block stays in L2
 *   between the passes, measured slower (every row of a block is a short
 *   run in another page, which the prefetchers do not follow).
 * - batch norm backward: one pass for sum(gy) and sum(gy * xhat), one to
 *   write gx.
 * - batch norm eval and layer norm: one pass over memory. Layer norm visits
 *   each row three (forward) or two (backward) times, but a row is in L1.
 *
 * The arithmetic after the statistics follows the NumPy reference
 * (minigrad/backend/numpy.py) operation for operation, in the element type
 * where it works in the element type, so the results agree with it to the
 * rounding of the statistics themselves (see tests/test_kernels_norm.py).
 *
 * Threads: batch norm splits the channels, layer norm the rows. Every
 * channel's (or row's) sums are formed by one thread in one fixed order, and
 * layer norm's weight and bias gradients, sums over rows, are formed per
 * fixed block of rows and then added block by block: the results are the
 * same bits for any number of threads and on every instruction set.
 */
#include <math.h>
#include <stdlib.h>

#include "kernel_common.h"

/* Layer norm backward sums its weight and bias gradients over blocks of
 * this many rows, the unit of work of a thread. */
#define LN_ROW_BLOCK ((size_t)64)

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

/*
 * The loops. Batch norm's take a block of `width` channels of `rows` rows
 * with leading dimension ld, and per-channel arrays indexed from the
 * block's first channel.
 */
#define DEFINE_NORM_LOOPS(T, S, ISA, TARGET)                                             \
    /* Welford down the rows: after row i, m is the mean of rows 0..i and m2 */          \
    /* the sum of squared deviations from it. The plain sum goes along: */               \
    /* where an infinity makes Welford's mean inf - inf = NaN, the mean is */            \
    /* sum / n, inf like the reference's. */                                             \
    static TARGET void bn_stats_##S##_##ISA(size_t rows, size_t width, size_t ld,        \
                                            const T *restrict x, double *restrict m,     \
                                            double *restrict m2, double *restrict sum)   \
    {                                                                                    \
        for (size_t j = 0; j < width; j++) {                                             \
            m[j] = 0.0;                                                                  \
            m2[j] = 0.0;                                                                 \
            sum[j] = 0.0;                                                                \
        }                                                                                \
        size_t i = 0;                                                                    \
        /* Four rows per visit of the accumulators: the same updates in the */           \
        /* same order, with a quarter of their loads and stores, which bound */          \
        /* the one-row loop. */                                                          \
        for (; i + 4 <= rows; i += 4) {                                                  \
            const T *restrict r0 = x + i * ld, *restrict r1 = r0 + ld;                   \
            const T *restrict r2 = r1 + ld, *restrict r3 = r2 + ld;                      \
            double inv0 = 1.0 / (double)(i + 1), inv1 = 1.0 / (double)(i + 2);          \
            double inv2 = 1.0 / (double)(i + 3), inv3 = 1.0 / (double)(i + 4);          \
            for (size_t j = 0; j < width; j++) {                                         \
                double mj = m[j], m2j = m2[j], sj = sum[j], v, delta;                    \
                v = r0[j], delta = v - mj, mj += delta * inv0, m2j += delta * (v - mj);  \
                sj += v;                                                                 \
                v = r1[j], delta = v - mj, mj += delta * inv1, m2j += delta * (v - mj);  \
                sj += v;                                                                 \
                v = r2[j], delta = v - mj, mj += delta * inv2, m2j += delta * (v - mj);  \
                sj += v;                                                                 \
                v = r3[j], delta = v - mj, mj += delta * inv3, m2j += delta * (v - mj);  \
                sj += v;                                                                 \
                m[j] = mj, m2[j] = m2j, sum[j] = sj;                                     \
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
                sum[j] += v;                                                             \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* y = (x - mean) * scale (+ bias), each step rounded in T. */                       \
    static TARGET void bn_normalize_##S##_##ISA(                                         \
        size_t rows, size_t width, size_t ld, T *restrict y, const T *restrict x,        \
        const T *restrict mean, const T *restrict scale, const T *restrict bias)         \
    {                                                                                    \
        for (size_t i = 0; i < rows; i++) {                                              \
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
    /* sg = sum(gy), sgx = sum(gy * xhat) down the rows, in double. */                   \
    static TARGET void bn_grad_sums_##S##_##ISA(                                         \
        size_t rows, size_t width, size_t ld, const T *restrict gy, const T *restrict x, \
        const T *restrict mean, const T *restrict invstd, double *restrict sg,           \
        double *restrict sgx)                                                            \
    {                                                                                    \
        for (size_t j = 0; j < width; j++) {                                             \
            sg[j] = 0.0;                                                                 \
            sgx[j] = 0.0;                                                                \
        }                                                                                \
        size_t i = 0;                                                                    \
        for (; i + 4 <= rows; i += 4) { /* four rows a visit, as in bn_stats */         \
            const T *restrict g0 = gy + i * ld, *restrict x0 = x + i * ld;               \
            for (size_t j = 0; j < width; j++) {                                         \
                double sgj = sg[j], sgxj = sgx[j];                                       \
                T mu = mean[j], is = invstd[j];                                          \
                for (size_t q = 0; q < 4; q++) {                                         \
                    T gq = g0[q * ld + j];                                               \
                    T xhat = (T)(x0[q * ld + j] - mu) * is;                              \
                    sgj += gq;                                                           \
                    sgxj += (double)gq * (double)xhat;                                   \
                }                                                                        \
                sg[j] = sgj, sgx[j] = sgxj;                                              \
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
    /* gx = (xhat * a + gy - b) * scale with a = -sgx / n, b = sg / n. */                \
    static TARGET void bn_grad_input_##S##_##ISA(                                        \
        size_t rows, size_t width, size_t ld, T *restrict gx, const T *restrict gy,      \
        const T *restrict x, const T *restrict mean, const T *restrict invstd,           \
        const T *restrict a, const T *restrict b, const T *restrict scale)               \
    {                                                                                    \
        for (size_t i = 0; i < rows; i++) {                                              \
            T *restrict gxr = gx + i * ld;                                               \
            const T *restrict gr = gy + i * ld;                                          \
            const T *restrict xr = x + i * ld;                                           \
            for (size_t j = 0; j < width; j++) {                                         \
                T xhat = (T)(xr[j] - mean[j]) * invstd[j];                               \
                gxr[j] = (xhat * a[j] + gr[j] - b[j]) * scale[j];                        \
            }                                                                            \
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
            T is = (T)(1.0 / sqrt(row_centered_sumsq_##S(d, xr, mu) / count + eps));     \
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
            if (w != NULL) {                                                             \
                for (j = 0; j < d; j++) {                                                \
                    T xhat = (T)(xr[j] - mu) * is;                                       \
                    T g = gr[j] * w[j];                                                  \
                    gxr[j] = (xhat * neg_mean_gx + g - mean_g) * is;                     \
                }                                                                        \
            } else {                                                                     \
                for (j = 0; j < d; j++) {                                                \
                    T xhat = (T)(xr[j] - mu) * is;                                       \
                    gxr[j] = (xhat * neg_mean_gx + gr[j] - mean_g) * is;                 \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }

MG_FOR_EACH_ISA(DEFINE_NORM_LOOPS, float, f32)
MG_FOR_EACH_ISA(DEFINE_NORM_LOOPS, double, f64)

#define DEFINE_LOOP_TABLE(S)                                                             \
    typedef struct {                                                                     \
        __typeof__(bn_stats_##S##_generic) *bn_stats;                                    \
        __typeof__(bn_normalize_##S##_generic) *bn_normalize;                            \
        __typeof__(bn_grad_sums_##S##_generic) *bn_grad_sums;                            \
        __typeof__(bn_grad_input_##S##_generic) *bn_grad_input;                          \
        __typeof__(ln_forward_##S##_generic) *ln_forward;                                \
        __typeof__(ln_backward_##S##_generic) *ln_backward;                              \
    } norm_loops_##S;                                                                    \
    static const norm_loops_##S *norm_loops_for_cpu_##S(void)                            \
    {                                                                                    \
        static const norm_loops_##S table[] = {                                          \
            {bn_stats_##S##_generic, bn_normalize_##S##_generic,                         \
             bn_grad_sums_##S##_generic, bn_grad_input_##S##_generic,                    \
             ln_forward_##S##_generic, ln_backward_##S##_generic},                       \
            NORM_LOOPS_X86_ROWS(S)};                                                     \
        return &table[mg_simd_level()];                                                  \
    }

#if MG_X86_PATHS
#define NORM_LOOPS_X86_ROWS(S)                                                           \
    {bn_stats_##S##_avx2,     bn_normalize_##S##_avx2,  bn_grad_sums_##S##_avx2,         \
     bn_grad_input_##S##_avx2, ln_forward_##S##_avx2,   ln_backward_##S##_avx2},         \
    {                                                                                    \
        bn_stats_##S##_avx512, bn_normalize_##S##_avx512, bn_grad_sums_##S##_avx512,     \
            bn_grad_input_##S##_avx512, ln_forward_##S##_avx512, ln_backward_##S##_avx512 \
    }
#else
#define NORM_LOOPS_X86_ROWS(S)
#endif

DEFINE_LOOP_TABLE(f32)
DEFINE_LOOP_TABLE(f64)

/* Batch norm splits the channels across threads in multiples of 16 when
 * there are enough elements and at least two such groups. */
static int bn_use_threads(size_t n, size_t c)
{
    return c >= 32 && mg_use_threads(n * c);
}

/*
 * The public kernels. Scratch space (per-channel sums and factors) comes
 * from malloc: a few doubles per channel, nothing kept between calls.
 */
#define DEFINE_NORM_KERNELS(T, S)                                                        \
    /* Channels [c0, c1): statistics, running stats, y. */                               \
    static void bn_train_channels_##S(const norm_loops_##S *L, size_t n, size_t c,       \
                                      size_t c0, size_t c1, T *y, T *mean, T *invstd,    \
                                      const T *x, const T *weight, const T *bias,        \
                                      double eps, T *running_mean, T *running_var,       \
                                      double momentum, double *m, double *m2, double *sum, \
                                      T *scale)                                          \
    {                                                                                    \
        double count = n > 0 ? (double)n : 1.0;                                          \
        double unbias = (double)n / (double)(n > 1 ? n - 1 : 1);                         \
        size_t j0 = c0, width = c1 - c0;                                                 \
        L->bn_stats(n, width, c, x + j0, m + j0, m2 + j0, sum + j0);                     \
        for (size_t j = j0; j < j0 + width; j++) {                                       \
            double var = m2[j] / count;                                                  \
            double is = 1.0 / sqrt(var + eps);                                           \
            double mu = m[j] == m[j] ? m[j] : sum[j] / count;                            \
            mean[j] = (T)mu;                                                             \
            invstd[j] = (T)is;                                                           \
            scale[j] = (T)(weight != NULL ? is * (double)weight[j] : is);                \
            if (n == 0)                                                                  \
                continue;                                                                \
            if (running_mean != NULL)                                                    \
                running_mean[j] =                                                        \
                    (T)((1.0 - momentum) * (double)running_mean[j] + momentum * mu);     \
            if (running_var != NULL)                                                     \
                running_var[j] = (T)((1.0 - momentum) * (double)running_var[j] +         \
                                     momentum * (var * unbias));                         \
        }                                                                                \
        L->bn_normalize(n, width, c, y + j0, x + j0, mean + j0, scale + j0,              \
                        bias != NULL ? bias + j0 : NULL);                                \
    }                                                                                    \
    int mg_batch_norm_forward_train_##S(size_t n, size_t c, T *y, T *mean, T *invstd,    \
                                        const T *x, const T *weight, const T *bias,      \
                                        double eps, T *running_mean, T *running_var,     \
                                        double momentum)                                 \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        double *m = malloc(c * (3 * sizeof(double) + sizeof(T)) + 1);                    \
        double *m2, *sum;                                                                \
        T *scale;                                                                        \
        if (m == NULL)                                                                   \
            return MG_ERR_NOMEM;                                                         \
        m2 = m + c;                                                                      \
        sum = m2 + c;                                                                    \
        scale = (T *)(sum + c);                                                          \
        if (!bn_use_threads(n, c)) {                                                     \
            bn_train_channels_##S(L, n, c, 0, c, y, mean, invstd, x, weight, bias, eps,  \
                                  running_mean, running_var, momentum, m, m2, sum, scale); \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(c, 16);                                     \
                bn_train_channels_##S(L, n, c, r.lo, r.lo + r.len, y, mean, invstd, x,   \
                                      weight, bias, eps, running_mean, running_var,      \
                                      momentum, m, m2, sum, scale);                      \
            }                                                                            \
        }                                                                                \
        free(m);                                                                         \
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
    /* Channels [c0, c1) of the backward. */                                             \
    static void bn_backward_channels_##S(const norm_loops_##S *L, size_t n, size_t c,    \
                                         size_t c0, size_t c1, T *gx, T *gweight,        \
                                         T *gbias, const T *gy, const T *x,              \
                                         const T *mean, const T *invstd,                 \
                                         const T *weight, double *sg, double *sgx, T *a, \
                                         T *b, T *scale)                                 \
    {                                                                                    \
        double count = n > 0 ? (double)n : 1.0;                                          \
        size_t j0 = c0, width = c1 - c0;                                                 \
        L->bn_grad_sums(n, width, c, gy + j0, x + j0, mean + j0, invstd + j0,            \
                        sg + j0, sgx + j0);                                              \
        for (size_t j = j0; j < j0 + width; j++) {                                       \
            a[j] = (T)(sgx[j] / -count);                                                 \
            b[j] = (T)(sg[j] / count);                                                   \
            scale[j] = weight != NULL ? (T)(invstd[j] * weight[j]) : invstd[j];          \
            if (weight != NULL) {                                                        \
                gweight[j] = (T)sgx[j];                                                  \
                gbias[j] = (T)sg[j];                                                     \
            }                                                                            \
        }                                                                                \
        L->bn_grad_input(n, width, c, gx + j0, gy + j0, x + j0, mean + j0,               \
                         invstd + j0, a + j0, b + j0, scale + j0);                       \
    }                                                                                    \
    int mg_batch_norm_backward_##S(size_t n, size_t c, T *gx, T *gweight, T *gbias,      \
                                   const T *gy, const T *x, const T *mean,               \
                                   const T *invstd, const T *weight)                     \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        double *sg = malloc(c * (2 * sizeof(double) + 3 * sizeof(T)) + 1);               \
        double *sgx;                                                                     \
        T *a, *b, *scale;                                                                \
        if (sg == NULL)                                                                  \
            return MG_ERR_NOMEM;                                                         \
        sgx = sg + c;                                                                    \
        a = (T *)(sgx + c);                                                              \
        b = a + c;                                                                       \
        scale = b + c;                                                                   \
        if (!bn_use_threads(n, c)) {                                                     \
            bn_backward_channels_##S(L, n, c, 0, c, gx, gweight, gbias, gy, x, mean,     \
                                     invstd, weight, sg, sgx, a, b, scale);              \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(c, 16);                                     \
                bn_backward_channels_##S(L, n, c, r.lo, r.lo + r.len, gx, gweight,       \
                                         gbias, gy, x, mean, invstd, weight, sg, sgx, a, \
                                         b, scale);                                      \
            }                                                                            \
        }                                                                                \
        free(sg);                                                                        \
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
    int mg_layer_norm_backward_##S(size_t r, size_t d, T *gx, T *gweight, T *gbias,      \
                                   const T *gy, const T *x, const T *mean,               \
                                   const T *invstd, const T *weight)                     \
    {                                                                                    \
        const norm_loops_##S *L = norm_loops_for_cpu_##S();                              \
        size_t blocks = (r + LN_ROW_BLOCK - 1) / LN_ROW_BLOCK;                           \
        double *part = NULL;                                                             \
        if (weight != NULL) {                                                            \
            part = malloc(blocks * 2 * d * sizeof(double) + 1);                          \
            if (part == NULL)                                                            \
                return MG_ERR_NOMEM;                                                     \
        }                                                                                \
        if (!mg_use_threads(r * d) || blocks < 2) {                                      \
            for (size_t k = 0; k < blocks; k++) {                                        \
                size_t lo = k * LN_ROW_BLOCK;                                            \
                size_t rows = r - lo < LN_ROW_BLOCK ? r - lo : LN_ROW_BLOCK;             \
                L->ln_backward(rows, d, gx + lo * d, part ? part + 2 * k * d : NULL,     \
                               part ? part + (2 * k + 1) * d : NULL, gy + lo * d,        \
                               x + lo * d, mean + lo, invstd + lo, weight);              \
            }                                                                            \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range s = mg_thread_share(blocks, 1);                                 \
                for (size_t k = s.lo; k < s.lo + s.len; k++) {                           \
                    size_t lo = k * LN_ROW_BLOCK;                                        \
                    size_t rows = r - lo < LN_ROW_BLOCK ? r - lo : LN_ROW_BLOCK;         \
                    L->ln_backward(rows, d, gx + lo * d, part ? part + 2 * k * d : NULL, \
                                   part ? part + (2 * k + 1) * d : NULL, gy + lo * d,    \
                                   x + lo * d, mean + lo, invstd + lo, weight);          \
                }                                                                        \
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
