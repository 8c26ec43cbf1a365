/*
 * clip.c - the kernels of gradient clipping, float and double: the squared
 * global norm and the largest |x| over a list of buffers in one call, scale
 * and clamp in place, per-row norms and unit-wise adaptive clipping (AGC).
 *
 * Non-finite values behave as in the NumPy reference: a NaN anywhere makes
 * the sum of squares and max |x| NaN (an inf makes them inf), clamp leaves
 * NaN as NaN, and AGC rescales a row whose norm is NaN (to NaN).
 *
 * The sums are formed in double over fixed chunks of MG_CHUNK elements, each
 * with MG_LANES partial sums (see kernel_common.h), and the chunks' sums
 * are added in order, whichever thread computed them: the same bits for
 * any thread count and instruction set. The maximum of |x| is taken on the
 * bit patterns with the sign cleared, which order like the magnitudes and
 * put NaN above inf, so an integer max (which vectorizes, unlike a float
 * max that must respect NaN) gives max |x| with NaN propagating.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernel_common.h"
#include "vmath.h"

/* The unit of work of the list reductions; also what keeps their result
 * independent of the thread count. */
#define MG_CHUNK ((size_t)1 << 15)

#define F32_ABS_MASK UINT32_C(0x7fffffff)
#define F64_ABS_MASK UINT64_C(0x7fffffffffffffff)

#define DEFINE_CLIP_LOOPS(T, S, ISA, TARGET)                                             \
    static TARGET double sum_squares_##S##_##ISA(size_t n, const T *restrict x)          \
    {                                                                                    \
        double acc[MG_LANES] = {0};                                                      \
        mg_sumsq_lanes_##S(n, x, acc);                                                   \
        return mg_lanes_total(acc);                                                      \
    }                                                                                    \
    static TARGET void scale_##S##_##ISA(size_t n, T *restrict x, T factor)              \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            x[i] *= factor;                                                              \
    }                                                                                    \
    /* min(max(x, lo), hi) as NumPy's clip: NaN fails both tests and stays. */           \
    static TARGET void clamp_##S##_##ISA(size_t n, T *restrict x, T lo, T hi)            \
    {                                                                                    \
        for (size_t i = 0; i < n; i++) {                                                 \
            T v = x[i] < lo ? lo : x[i];                                                 \
            x[i] = v > hi ? hi : v;                                                      \
        }                                                                                \
    }

#define DEFINE_MAX_ABS_LOOP(T, S, U, BITS, MASK, ISA, TARGET)                            \
    static TARGET U max_abs_bits_##S##_##ISA(size_t n, const T *restrict x)              \
    {                                                                                    \
        U m = 0;                                                                         \
        for (size_t i = 0; i < n; i++) {                                                 \
            U u = BITS(x[i]) & MASK;                                                     \
            m = u > m ? u : m;                                                           \
        }                                                                                \
        return m;                                                                        \
    }

#define DEFINE_ALL_CLIP_LOOPS(T, S, ISA, TARGET)                                         \
    DEFINE_CLIP_LOOPS(T, S, ISA, TARGET)                                                 \
    DEFINE_MAX_ABS_LOOP(T, S, MG_BITS_TYPE_##S, mg_bits_##S, MG_ABS_MASK_##S, ISA, TARGET)

#define MG_BITS_TYPE_f32 uint32_t
#define MG_BITS_TYPE_f64 uint64_t
#define MG_ABS_MASK_f32 F32_ABS_MASK
#define MG_ABS_MASK_f64 F64_ABS_MASK

MG_FOR_EACH_ISA(DEFINE_ALL_CLIP_LOOPS, float, f32)
MG_FOR_EACH_ISA(DEFINE_ALL_CLIP_LOOPS, double, f64)

#define DEFINE_CLIP_TABLE(T, S)                                                          \
    typedef struct {                                                                     \
        __typeof__(sum_squares_##S##_generic) *sum_squares;                              \
        __typeof__(max_abs_bits_##S##_generic) *max_abs_bits;                            \
        __typeof__(scale_##S##_generic) *scale;                                          \
        __typeof__(clamp_##S##_generic) *clamp;                                          \
    } clip_loops_##S;                                                                    \
    static const clip_loops_##S *clip_loops_for_cpu_##S(void)                            \
    {                                                                                    \
        static const clip_loops_##S table[] = {                                          \
            {sum_squares_##S##_generic, max_abs_bits_##S##_generic, scale_##S##_generic, \
             clamp_##S##_generic},                                                       \
            CLIP_LOOPS_X86_ROWS(S)};                                                     \
        return &table[mg_simd_level()];                                                  \
    }

#if MG_X86_PATHS
#define CLIP_LOOPS_X86_ROWS(S)                                                           \
    {sum_squares_##S##_avx2, max_abs_bits_##S##_avx2, scale_##S##_avx2,                  \
     clamp_##S##_avx2},                                                                  \
    {                                                                                    \
        sum_squares_##S##_avx512, max_abs_bits_##S##_avx512, scale_##S##_avx512,         \
            clamp_##S##_avx512                                                           \
    }
#else
#define CLIP_LOOPS_X86_ROWS(S)
#endif

DEFINE_CLIP_TABLE(float, f32)
DEFINE_CLIP_TABLE(double, f64)

/* The chunks of a list of buffers, numbered across the list: chunk k is
 * found by walking the list (it is short: one buffer per parameter). */
static size_t count_chunks(size_t count, const size_t *lens)
{
    size_t chunks = 0;

    for (size_t b = 0; b < count; b++)
        chunks += (lens[b] + MG_CHUNK - 1) / MG_CHUNK;
    return chunks;
}

static void find_chunk(size_t count, const size_t *lens, size_t k, size_t *buf, size_t *offset)
{
    for (size_t b = 0; b < count; b++) {
        size_t chunks = (lens[b] + MG_CHUNK - 1) / MG_CHUNK;

        if (k < chunks) {
            *buf = b;
            *offset = k * MG_CHUNK;
            return;
        }
        k -= chunks;
    }
    *buf = count;
    *offset = 0;
}

/* The per-buffer maximum across threads: OpenMP's max reduction on the
 * variable mb, in integers, so it is exact. */
#ifdef _OPENMP
#define MG_OMP_PARALLEL_MAX_MB                                                           \
    _Pragma("omp parallel num_threads(mg_region_begin(mg_threads_now())) reduction(max : mb)")
#else
#define MG_OMP_PARALLEL_MAX_MB
#endif

#define DEFINE_CLIP_KERNELS(T, S, U)                                                     \
    /* Chunks [k0, k1) of the list: partial[k] = the sum of squares of chunk k. */       \
    static void sum_squares_chunks_##S(const clip_loops_##S *L, size_t count,            \
                                       const T *const *bufs, const size_t *lens,         \
                                       size_t k0, size_t k1, double *partial)            \
    {                                                                                    \
        size_t b, offset;                                                                \
        find_chunk(count, lens, k0, &b, &offset);                                        \
        for (size_t k = k0; k < k1 && b < count; k++) {                                  \
            size_t len = lens[b] - offset < MG_CHUNK ? lens[b] - offset : MG_CHUNK;      \
            partial[k] = L->sum_squares(len, bufs[b] + offset);                          \
            offset += MG_CHUNK;                                                          \
            while (b < count && offset >= lens[b]) {                                     \
                b++;                                                                     \
                offset = 0;                                                              \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    int mg_sum_squares_##S(size_t count, double *out, const T *const *bufs,              \
                           const size_t *lens)                                           \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        size_t chunks = count_chunks(count, lens);                                       \
        double *partial = malloc(chunks * sizeof(double) + 1);                           \
        double total = 0.0;                                                              \
        if (partial == NULL)                                                             \
            return MG_ERR_NOMEM;                                                         \
        if (!mg_use_threads(chunks * MG_CHUNK) || chunks < 2) {                          \
            sum_squares_chunks_##S(L, count, bufs, lens, 0, chunks, partial);            \
        } else {                                                                         \
            MG_OMP_PARALLEL                                                              \
            {                                                                            \
                mg_range r = mg_thread_share(chunks, 1);                                 \
                sum_squares_chunks_##S(L, count, bufs, lens, r.lo, r.lo + r.len,         \
                                       partial);                                         \
            }                                                                            \
        }                                                                                \
        for (size_t k = 0; k < chunks; k++)                                              \
            total += partial[k];                                                         \
        free(partial);                                                                   \
        *out = total;                                                                    \
        return MG_OK;                                                                    \
    }                                                                                    \
    /* A max needs no fixed order: each buffer is split across the threads. */           \
    int mg_max_abs_##S(size_t count, double *out, const T *const *bufs, const size_t *lens) \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        U m = 0;                                                                         \
        T magnitude;                                                                     \
        for (size_t b = 0; b < count; b++) {                                             \
            U mb = 0;                                                                    \
            if (!mg_use_threads(lens[b])) {                                              \
                mb = L->max_abs_bits(lens[b], bufs[b]);                                  \
            } else {                                                                     \
                MG_OMP_PARALLEL_MAX_MB                                                   \
                {                                                                        \
                    mg_range r = mg_thread_share(lens[b], 16);                           \
                    U mt = L->max_abs_bits(r.len, bufs[b] + r.lo);                       \
                    mb = mt > mb ? mt : mb;                                              \
                }                                                                        \
            }                                                                            \
            m = mb > m ? mb : m;                                                         \
        }                                                                                \
        memcpy(&magnitude, &m, sizeof magnitude);                                        \
        *out = magnitude;                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_scale_##S(size_t n, T *x, T factor)                                           \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        if (!mg_use_threads(n)) {                                                        \
            L->scale(n, x, factor);                                                      \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            L->scale(r.len, x + r.lo, factor);                                           \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_clamp_##S(size_t n, T *x, T lo, T hi)                                         \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        if (!mg_use_threads(n)) {                                                        \
            L->clamp(n, x, lo, hi);                                                      \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            L->clamp(r.len, x + r.lo, lo, hi);                                           \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_row_norms_##S(size_t r, size_t k, T *out, const T *x)                         \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        if (!mg_use_threads(r * k) || r < 2) {                                           \
            for (size_t i = 0; i < r; i++)                                               \
                out[i] = (T)sqrt(L->sum_squares(k, x + i * k));                          \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range s = mg_thread_share(r, 1);                                          \
            for (size_t i = s.lo; i < s.lo + s.len; i++)                                 \
                out[i] = (T)sqrt(L->sum_squares(k, x + i * k));                          \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    /* Rows [lo, hi) of AGC. np.maximum's NaN rule is a < b ? b : a here. */             \
    static void adaptive_clip_rows_##S(const clip_loops_##S *L, size_t lo, size_t hi,    \
                                       size_t k, T *grad, const T *param,                \
                                       double clipping, double eps)                      \
    {                                                                                    \
        for (size_t i = lo; i < hi; i++) {                                               \
            double gnorm = sqrt(L->sum_squares(k, grad + i * k));                        \
            double pnorm = sqrt(L->sum_squares(k, param + i * k));                       \
            double max_norm = clipping * (pnorm < eps ? eps : pnorm);                    \
            if (!(gnorm < max_norm))                                                     \
                L->scale(k, grad + i * k, (T)(max_norm / (gnorm < 1e-6 ? 1e-6 : gnorm))); \
        }                                                                                \
    }                                                                                    \
    int mg_adaptive_clip_##S(size_t r, size_t k, T *grad, const T *param,                \
                             double clipping, double eps)                                \
    {                                                                                    \
        const clip_loops_##S *L = clip_loops_for_cpu_##S();                              \
        if (!mg_use_threads(r * k) || r < 2) {                                           \
            adaptive_clip_rows_##S(L, 0, r, k, grad, param, clipping, eps);              \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range s = mg_thread_share(r, 1);                                          \
            adaptive_clip_rows_##S(L, s.lo, s.lo + s.len, k, grad, param, clipping,      \
                                   eps);                                                 \
        }                                                                                \
        return MG_OK;                                                                    \
    }

DEFINE_CLIP_KERNELS(float, f32, uint32_t)
DEFINE_CLIP_KERNELS(double, f64, uint64_t)
