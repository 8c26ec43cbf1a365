/*
 * kernel_common.h - what the kernel files share: the instruction-set paths
 * every loop is compiled for, and how a kernel splits its work across
 * OpenMP threads. Internal to csrc/ (minigrad.h is the public API).
 *
 * Every loop is written once, in a macro over the element type, and compiled
 * three times, plainly and with MG_TARGET_AVX2 / MG_TARGET_AVX512, so that
 * GCC auto-vectorizes each copy for its instruction set; the kernels pick a
 * copy by mg_simd_level(). The build does not contract a * b + c into an FMA
 * (-std=c11), and the loops never reassociate a sum, so the three copies
 * compute the very same bits. The one exception is asked for by name: the
 * exp-based activations fuse their multiply-adds where the instruction set
 * has FMA (MG_FMA_<isa> below; see vmath.h), so there AVX2 and AVX-512
 * agree to the bit and the generic path to within an ulp or so.
 */
#ifndef MINIGRAD_KERNEL_COMMON_H
#define MINIGRAD_KERNEL_COMMON_H

#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "minigrad.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MG_X86_PATHS 1
#define MG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MG_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
#else
#define MG_X86_PATHS 0
#endif
#define MG_NO_TARGET

/* Whether a copy may fuse a * b + c into one rounding, for the loops that
 * ask for it by name (vmath.h's exp and tanh): the generic path has no FMA
 * instruction, and fmaf there would be a libm call per element. */
#define MG_FMA_generic 0
#define MG_FMA_avx2 1
#define MG_FMA_avx512 1

/* The three copies of a set of loops, DEFINE(T, S, ISA, TARGET) for one
 * element type, and a table of one loop's copies indexed by mg_simd_level()
 * (which never exceeds what was compiled here); MG_ISA_ROWS makes such a
 * table of structs, ROW(S, ISA) giving one instruction set's row. */
#if MG_X86_PATHS
#define MG_FOR_EACH_ISA(DEFINE, T, S)                                                    \
    DEFINE(T, S, generic, MG_NO_TARGET)                                                  \
    DEFINE(T, S, avx2, MG_TARGET_AVX2)                                                   \
    DEFINE(T, S, avx512, MG_TARGET_AVX512)
#define MG_ISA_TABLE(NAME) {NAME##_generic, NAME##_avx2, NAME##_avx512}
#define MG_ISA_ROWS(ROW, S) {ROW(S, generic), ROW(S, avx2), ROW(S, avx512)}
#else
#define MG_FOR_EACH_ISA(DEFINE, T, S) DEFINE(T, S, generic, MG_NO_TARGET)
#define MG_ISA_TABLE(NAME) {NAME##_generic}
#define MG_ISA_ROWS(ROW, S) {ROW(S, generic)}
#endif

/* Reductions along a contiguous run keep this many partial sums, one per
 * lane, combined in a fixed order at the end: a plain `s += x[i]` cannot be
 * vectorized without reassociating it (which -ffast-math would allow and
 * which would make the result depend on the vector width), whereas 16
 * independent sums fill a vector of any width and give the same bits on
 * every path. */
#define MG_LANES 16

/* For a helper too big for the compiler to inline on its own: inlined, it
 * is compiled for the instruction set of each loop that calls it (and its
 * constant arguments fold away); called, it would run the baseline's. */
#if defined(__GNUC__)
#define MG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MG_ALWAYS_INLINE inline
#endif

/* The MG_LANES partial sums of a reduction added in a fixed tree: the same
 * order whatever the instruction set or thread count, so results agree to
 * the bit. */
static inline double mg_lanes_total(const double *acc)
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

/* acc[i % MG_LANES] += x[i] (mg_sum_lanes) or x[i]^2 (mg_sumsq_lanes), in
 * double; the last, partial group of MG_LANES goes to the first lanes, so the
 * order depends on n alone. Plain inline functions: each instruction set's
 * loop that calls one vectorizes it with its own instructions. */
#define MG_DEFINE_LANE_SUMS(T, S)                                                        \
    static inline void mg_sum_lanes_##S(size_t n, const T *restrict x,                   \
                                        double *restrict acc)                            \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES)                                         \
            for (size_t l = 0; l < MG_LANES; l++)                                        \
                acc[l] += x[i + l];                                                      \
        for (size_t l = 0; i + l < n; l++)                                               \
            acc[l] += x[i + l];                                                          \
    }                                                                                    \
    static inline void mg_sumsq_lanes_##S(size_t n, const T *restrict x,                 \
                                          double *restrict acc)                          \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + MG_LANES <= n; i += MG_LANES) {                                       \
            for (size_t l = 0; l < MG_LANES; l++) {                                      \
                double v = x[i + l];                                                     \
                acc[l] += v * v;                                                         \
            }                                                                            \
        }                                                                                \
        for (size_t l = 0; i + l < n; l++) {                                             \
            double v = x[i + l];                                                         \
            acc[l] += v * v;                                                             \
        }                                                                                \
    }

MG_DEFINE_LANE_SUMS(float, f32)
MG_DEFINE_LANE_SUMS(double, f64)

/* ---- threads ----------------------------------------------------------- */

/* Below this many elements (of a memory-bound pass; kernels doing more work
 * per element scale n up) a kernel runs on the calling thread. Two threads
 * pay from about 64K elements: starting and joining a region costs about a
 * microsecond while the workers still spin from the last one, and each core
 * then streams its half through its own L2 (measured on 2 cores, 128x512
 * float32 relu forward and backward through the API: 19.3 us on one thread,
 * 14.3 us on two). PyTorch splits elementwise work from 32K elements. The
 * cost is the one every threaded library carries: a region is only as fast
 * as its slowest thread, so when another process keeps the other core busy
 * a region waits for its worker to be scheduled and can lose a scheduler
 * time slice, milliseconds; when that happens the kernels back off to one
 * thread for a while (see runtime.c). Small
 * arrays skip OpenMP altogether, not just via an if() clause: even a
 * one-thread region costs libgomp about half a microsecond. */
#ifndef MG_PARALLEL_MIN
#define MG_PARALLEL_MIN ((size_t)1 << 16)
#endif

/* The threads a kernel may use now: mg_get_num_threads(), or 1 while threads
 * back off because a recent region's worker started late (runtime.c). A
 * region's num_threads clause passes its count through mg_region_begin,
 * which notes the time, and every worker calls mg_region_worker_started
 * first thing (mg_thread_share does), which compares. */
int mg_threads_now(void);
int mg_region_begin(int threads);
void mg_region_worker_started(void);

static inline int mg_use_threads(size_t n)
{
    return n >= MG_PARALLEL_MIN && mg_threads_now() > 1;
}

#ifdef _OPENMP
#define MG_OMP_PARALLEL _Pragma("omp parallel num_threads(mg_region_begin(mg_threads_now()))")
#else
#define MG_OMP_PARALLEL
#endif

typedef struct {
    size_t lo;
    size_t len;
} mg_range;

/* The calling thread's share [lo, lo + len) of n items: contiguous, in
 * thread order, each starting on a multiple of `align` items (a power of
 * two; 16 floats keep two threads off one cache line). Outside a parallel
 * region, or without OpenMP, the share is everything. */
static inline mg_range mg_thread_range(size_t n, size_t align)
{
    mg_range r = {0, n};
#ifdef _OPENMP
    size_t nt = (size_t)omp_get_num_threads();
    size_t t = (size_t)omp_get_thread_num();

    if (nt > 1 && n > 0) {
        size_t chunk = n / nt + (n % nt != 0);

        chunk = (chunk + align - 1) & ~(align - 1);
        r.lo = t <= n / chunk ? t * chunk : n;
        r.len = n - r.lo < chunk ? n - r.lo : chunk;
    }
#endif
    return r;
}

/* mg_thread_range for a region's first share: every region calls it first,
 * so a worker reports here when it started. A later share in the same
 * region (after MG_OMP_BARRIER) takes mg_thread_range. */
static inline mg_range mg_thread_share(size_t n, size_t align)
{
#ifdef _OPENMP
    if (omp_get_thread_num() > 0)
        mg_region_worker_started();
#endif
    return mg_thread_range(n, align);
}

#ifdef _OPENMP
#define MG_OMP_BARRIER _Pragma("omp barrier")
#else
#define MG_OMP_BARRIER
#endif

#endif /* MINIGRAD_KERNEL_COMMON_H */
