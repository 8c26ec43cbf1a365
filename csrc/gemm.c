/*
 * gemm.c - C = alpha * op(A) * op(B) + beta * C (+ bias), float and double.
 *
 * Layout, stated once: every matrix is row-major. op(A) is m x k, op(B) is
 * k x n, C is m x n. Element (i, p) of op(A) is a[i * lda + p], or
 * a[p * lda + i] when A is transposed; likewise for B. C's rows are ldc
 * elements apart. Transposition is absorbed by the packing routines, so the
 * rest of the code never sees it.
 *
 * The structure follows Goto's algorithm as the BLIS papers lay it out:
 *
 *   for jc in n, step NC          B block of NC columns
 *     for pc in k, step KC        pack KC x NC of op(B) into NR-wide panels
 *       for ic in m, step MC      pack MC x KC of op(A) into MR-tall panels
 *         for jr in NC, step NR     (B micro-panel reused MC/MR times)
 *           for ir in MC, step MR   (A micro-panels stream from L2)
 *             micro-kernel: MR x NR tile of C in registers over KC
 *
 * Packed panels are padded with zeros to full MR or NR, so the micro-kernels
 * always run a full register tile; only their write-back looks at the real
 * tile size. The write-back is the epilogue: on the first k block it forms
 * alpha * acc + beta * C (C not read when beta == 0, as in BLAS), on later
 * blocks it adds alpha * acc, and on the last it also adds the bias, so for
 * k <= KC C is written exactly once (and read only if beta != 0).
 *
 * Threads: C is cut into a grid of rectangles, one per thread, on MR/NR tile
 * boundaries, and each thread runs the whole loop nest above on its own
 * rectangle with its own packing buffers. Every element of C is then summed
 * in the same order whatever the thread count, so results are deterministic
 * (and even equal across thread counts). The price is that each thread packs
 * the part of A (or B) its rectangle shares with others; the grid is chosen
 * to make that the smaller operand, and packing is O(n^2) against O(n^3).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>

#include "kernel_common.h"

#if MG_X86_PATHS
#include <immintrin.h>
#endif

/* The packed B block starts on a cache line; each k step of a B panel is a
 * whole number of vectors (NR values), so the micro-kernels' aligned vector
 * loads of B hold for every kc. A is only read by broadcasts. */
#define MG_ALIGN 64

/* Below this many flops (2 m n k) a product stays on the calling thread.
 * Measured on the 2-core Zen 5 build machine (quiet): two threads already
 * gain at 64^3 (0.5 MFLOP: 6.4 -> 4.5 us) and at 128x512x10 (20.7 -> 14.7
 * us). On a loaded machine a parallel region waits for a descheduled
 * thread, so the bar is not set lower than that. */
#define MG_GEMM_PARALLEL_MIN_FLOPS 5.0e5

/* ---- cache sizes -------------------------------------------------------- */

/* Size in bytes of the data (or unified) cache of one level, from sysfs;
 * 0 when unknown. sysfs first because sysconf's answer comes from CPUID,
 * which a hypervisor may fill with nonsense (384 MiB of L3 on the build VM). */
static long sysfs_cache_size(int level)
{
    char path[96];
    char buf[32];

    for (int index = 0; index < 8; index++) {
        FILE *f;
        int lvl = 0;
        long size = 0;
        char unit = 0;

        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        f = fopen(path, "r");
        if (f == NULL)
            return 0;
        if (fscanf(f, "%d", &lvl) != 1)
            lvl = 0;
        fclose(f);
        if (lvl != level)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = 0;
        fclose(f);
        if (strncmp(buf, "Instruction", 11) == 0)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fscanf(f, "%ld%c", &size, &unit) < 1)
            size = 0;
        fclose(f);
        if (unit == 'K')
            size <<= 10;
        else if (unit == 'M')
            size <<= 20;
        return size;
    }
    return 0;
}

static long cache_size(int level, long fallback)
{
    long size = sysfs_cache_size(level);
#ifdef _SC_LEVEL1_DCACHE_SIZE
    if (size <= 0) {
        int name = level == 1 ? _SC_LEVEL1_DCACHE_SIZE
                   : level == 2 ? _SC_LEVEL2_CACHE_SIZE
                                : _SC_LEVEL3_CACHE_SIZE;
        size = sysconf(name);
    }
#endif
    /* Outside any plausible range the number is wrong, not the cache. */
    if (size < 4096 || size > ((long)1 << 30))
        size = fallback;
    return size;
}

/* Read once: each sysfs read is a few system calls, far too many per call.
 * Racing threads compute the same numbers, so relaxed atomics suffice. */
static atomic_long cache_l1 = 0, cache_l2 = 0, cache_l3 = 0;

static void cache_sizes(long *l1, long *l2, long *l3)
{
    long c1 = atomic_load_explicit(&cache_l1, memory_order_relaxed);

    if (c1 == 0) {
        atomic_store_explicit(&cache_l2, cache_size(2, 512 * 1024), memory_order_relaxed);
        atomic_store_explicit(&cache_l3, cache_size(3, 8 * 1024 * 1024), memory_order_relaxed);
        c1 = cache_size(1, 32 * 1024);
        atomic_store_explicit(&cache_l1, c1, memory_order_relaxed);
    }
    *l1 = c1;
    *l2 = atomic_load_explicit(&cache_l2, memory_order_relaxed);
    *l3 = atomic_load_explicit(&cache_l3, memory_order_relaxed);
}

/* ---- blocking ----------------------------------------------------------- */

typedef struct {
    size_t mr, nr, mc, kc, nc;
} mg_blocking;

static size_t clamp_down(size_t x, size_t lo, size_t hi, size_t multiple)
{
    x = x < lo ? lo : (x > hi ? hi : x);
    x -= x % multiple;
    return x < multiple ? multiple : x;
}

/*
 * KC: the KC x NR micro-panel of B is about 4/3 of L1. It does not have to
 * fit: per k step the micro-kernel reads MR + NR values for MR x NR FMAs,
 * about 20 bytes a cycle on the AVX-512 path, well within what L2 delivers,
 * and a long KC means fewer passes over C (one for k <= KC, 512 here for
 * both types: all of a training step's products but the 784-wide input
 * layer's, which takes two). Measured on Zen 5 (48 KiB L1):
 * KC = 512 beat 192, 256 and 384 by 5-15% on 1024^3 and 2048^3, float32.
 * MC: the MC x KC block of A takes about a quarter of L2 (the rest holds the
 * B micro-panels streaming through and C). NC: the KC x NC block of B takes
 * about half of this thread's share of L3.
 */
static mg_blocking blocking_for(size_t mr, size_t nr, size_t elem)
{
    long l1, l2, l3;
    mg_blocking bl;
    int threads = mg_get_num_threads();

    cache_sizes(&l1, &l2, &l3);
    bl.mr = mr;
    bl.nr = nr;
    bl.kc = clamp_down((size_t)l1 * 4 / 3 / (nr * elem), 128, 1024, 8);
    bl.mc = clamp_down((size_t)l2 / 4 / (bl.kc * elem), mr, 4096, mr);
    bl.nc = clamp_down((size_t)l3 / 2 / (size_t)(threads > 0 ? threads : 1) / (bl.kc * elem), nr,
                       8192, nr);
    return bl;
}

static inline size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static inline size_t round_up(size_t x, size_t multiple)
{
    return (x + multiple - 1) / multiple * multiple;
}

/*
 * Everything below is written once for both element types as macros of T
 * (the type) and S (the suffix, f32 or f64).
 */

/* ---- packing -------------------------------------------------------------
 *
 * pack_a: rows [0, mc) and columns [0, kc) of op(A) (a already points at the
 * block's first element) into ceil(mc / MR) panels; panel r holds, for each
 * p, the MR values op(A)(r MR + i, p), rows past mc as zeros.
 * pack_b: likewise columns of op(B) into NR-wide panels, for each p the NR
 * values op(B)(p, r NR + j).
 */
#define PACK_A_BODY(T)                                                                     \
        for (size_t i0 = 0; i0 < mc; i0 += mr) {                                           \
            size_t rows = min_size(mr, mc - i0);                                           \
            if (trans) {                                                                   \
                /* op(A)(i, p) = a[p lda + i]: each p is a short contiguous run. */        \
                for (size_t p = 0; p < kc; p++) {                                          \
                    const T *src = a + p * lda + i0;                                       \
                    size_t i = 0;                                                          \
                    for (; i < rows; i++)                                                  \
                        dst[p * mr + i] = src[i];                                          \
                    for (; i < mr; i++)                                                    \
                        dst[p * mr + i] = 0;                                               \
                }                                                                          \
            } else if (rows == mr && (mr == 8 || mr == 16)) {                              \
                /* A full panel: a transpose of mr rows. Writing the panel in */           \
                /* order, one k step (mr contiguous values) at a time, lets the */         \
                /* stores combine, and a constant mr lets them vectorize; the */            \
                /* mr source rows are each read in order. */                               \
                const T *src = a + i0 * lda;                                               \
                if (mr == 8)                                                               \
                    for (size_t p = 0; p < kc; p++)                                        \
                        for (size_t i = 0; i < 8; i++)                                     \
                            dst[p * 8 + i] = src[i * lda + p];                             \
                else                                                                       \
                    for (size_t p = 0; p < kc; p++)                                        \
                        for (size_t i = 0; i < 16; i++)                                    \
                            dst[p * 16 + i] = src[i * lda + p];                            \
            } else {                                                                       \
                for (size_t i = 0; i < rows; i++) {                                        \
                    const T *src = a + (i0 + i) * lda;                                     \
                    for (size_t p = 0; p < kc; p++)                                        \
                        dst[p * mr + i] = src[p];                                          \
                }                                                                          \
                for (size_t i = rows; i < mr; i++)                                         \
                    for (size_t p = 0; p < kc; p++)                                        \
                        dst[p * mr + i] = 0;                                               \
            }                                                                              \
            dst += mr * kc;                                                                \
        }

#define PACK_B_BODY(T)                                                                     \
        for (size_t j0 = 0; j0 < nc; j0 += nr) {                                           \
            size_t cols = min_size(nr, nc - j0);                                           \
            if (!trans) {                                                                  \
                for (size_t p = 0; p < kc; p++) {                                          \
                    const T *src = b + p * ldb + j0;                                       \
                    size_t j = 0;                                                          \
                    for (; j < cols; j++)                                                  \
                        dst[p * nr + j] = src[j];                                          \
                    for (; j < nr; j++)                                                    \
                        dst[p * nr + j] = 0;                                               \
                }                                                                          \
            } else if (cols == nr && (nr == 8 || nr == 16)) {                  \
                /* op(B)(p, j) = b[j ldb + p]: a transpose, done like pack_a's */          \
                /* (for 32 columns the chunked loop below measured faster). */             \
                const T *src = b + j0 * ldb;                                               \
                if (nr == 8)                                                               \
                    for (size_t p = 0; p < kc; p++)                                        \
                        for (size_t j = 0; j < 8; j++)                                     \
                            dst[p * 8 + j] = src[j * ldb + p];                             \
                else                                                                       \
                    for (size_t p = 0; p < kc; p++)                                        \
                        for (size_t j = 0; j < 16; j++)                                    \
                            dst[p * 16 + j] = src[j * ldb + p];                            \
            } else {                                                                       \
                /* A ragged panel, transposed: in chunks of 64 p, */                       \
                /* so the NR source runs and the 64 destination rows being */              \
                /* written both stay in L1 while the chunk is done. */                     \
                for (size_t p0 = 0; p0 < kc; p0 += 64) {                                   \
                    size_t p1 = min_size(kc, p0 + 64);                                     \
                    for (size_t j = 0; j < cols; j++) {                                    \
                        const T *src = b + (j0 + j) * ldb;                                 \
                        for (size_t p = p0; p < p1; p++)                                   \
                            dst[p * nr + j] = src[p];                                      \
                    }                                                                      \
                    for (size_t j = cols; j < nr; j++)                                     \
                        for (size_t p = p0; p < p1; p++)                                   \
                            dst[p * nr + j] = 0;                                           \
                }                                                                          \
            }                                                                              \
            dst += nr * kc;                                                                \
        }

#define DEFINE_PACKING(T, S, ISA, TARGET)                                                    \
    TARGET static void pack_a_##S##_##ISA(int trans, size_t mc, size_t kc, const T *a,     \
                                          size_t lda, T *restrict dst, size_t mr)          \
    {                                                                                      \
        PACK_A_BODY(T)                                                                     \
    }                                                                                      \
    TARGET static void pack_b_##S##_##ISA(int trans, size_t kc, size_t nc, const T *b,     \
                                          size_t ldb, T *restrict dst, size_t nr)          \
    {                                                                                      \
        PACK_B_BODY(T)                                                                     \
    }

DEFINE_PACKING(float, f32, generic, )
DEFINE_PACKING(double, f64, generic, )
#if MG_X86_PATHS
/* The same loops compiled for the wider vectors, where the transposes in
 * them vectorize with wider shuffles than SSE2's (measured, one thread:
 * 128x512x10 float from 19 to 15.5 us, g @ w.T 128x512x512 up 5-10%). */
DEFINE_PACKING(float, f32, avx2, MG_TARGET_AVX2)
DEFINE_PACKING(double, f64, avx2, MG_TARGET_AVX2)
DEFINE_PACKING(float, f32, avx512, MG_TARGET_AVX512)
DEFINE_PACKING(double, f64, avx512, MG_TARGET_AVX512)
#endif

/*
 * A micro-kernel: acc = sum over p < kc of a[p MR + i] * b[p NR + j] for the
 * full MR x NR tile, then the epilogue on the real mr x nr corner of it:
 * c = alpha * acc + beta * c (c unread when beta == 0) + bias[j] (bias may
 * be NULL). a and b are packed panels, 64-byte aligned.
 */
typedef void (*ukernel_f32)(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                            size_t mr, size_t nr, float alpha, float beta, const float *bias);
typedef void (*ukernel_f64)(size_t kc, const double *a, const double *b, double *c, size_t ldc,
                            size_t mr, size_t nr, double alpha, double beta, const double *bias);

/* ---- portable micro-kernel: the fallback and the tests' oracle ----------- */

#define GENERIC_MR 4
#define GENERIC_NR 8

#define DEFINE_GENERIC_KERNEL(T, S)                                                          \
    static void ukernel_4x8_##S##_generic(size_t kc, const T *restrict a, const T *restrict b, \
                                          T *restrict c, size_t ldc, size_t mr, size_t nr,   \
                                          T alpha, T beta, const T *restrict bias)           \
    {                                                                                        \
        T acc[GENERIC_MR][GENERIC_NR] = {{0}};                                               \
        for (size_t p = 0; p < kc; p++) {                                                    \
            for (int i = 0; i < GENERIC_MR; i++)                                             \
                for (int j = 0; j < GENERIC_NR; j++)                                         \
                    acc[i][j] += a[i] * b[j];                                                \
            a += GENERIC_MR;                                                                 \
            b += GENERIC_NR;                                                                 \
        }                                                                                    \
        for (size_t i = 0; i < mr; i++) {                                                    \
            T *row = c + i * ldc;                                                            \
            for (size_t j = 0; j < nr; j++) {                                                \
                T v = alpha * acc[i][j];                                                     \
                if (beta != 0)                                                               \
                    v += beta * row[j];                                                      \
                if (bias != NULL)                                                            \
                    v += bias[j];                                                            \
                row[j] = v;                                                                  \
            }                                                                                \
        }                                                                                    \
    }

DEFINE_GENERIC_KERNEL(float, f32)
DEFINE_GENERIC_KERNEL(double, f64)

#if MG_X86_PATHS

/* ---- AVX-512 micro-kernels ------------------------------------------------
 *
 * 8 rows x 2 vectors: 16 accumulators of the 32 zmm registers, fed per k
 * step by 2 loads of B and 8 broadcasts of A (which the FMAs take straight
 * from memory). 16 independent FMA chains cover the 4-cycle latency of two
 * FMA pipes. Ragged right edges use masked loads and stores, so nothing
 * outside the tile is touched.
 */
/* The B micro-panel (KC x NR, 64 KiB) is larger than L1, so each k step's
 * two lines of it come from L2 (or L3 for the first pass over a large B);
 * asking for them 16 k steps (2 KiB) ahead measured 5-10% faster at 1024^3
 * and 2048^3 in float32, one thread (8 steps: no gain; 32 and 64: the same
 * as 16). A prefetch past the end of the panel is harmless: it never
 * faults. */
#define MG_PF_DIST 16
#define AVX512_MR 8

#define DEFINE_AVX512_KERNEL(T, S, V, VL, MASK, SET1, ZERO, LOAD, FMADD, MLOAD, MSTORE)          \
    MG_TARGET_AVX512 static void ukernel_8x##S##_avx512(                                      \
        size_t kc, const T *restrict a, const T *restrict b, T *restrict c, size_t ldc,       \
        size_t mr, size_t nr, T alpha, T beta, const T *restrict bias)                        \
    {                                                                                         \
        V acc[AVX512_MR][2];                                                                  \
        for (int i = 0; i < AVX512_MR; i++)                                                   \
            acc[i][0] = acc[i][1] = ZERO();                                                   \
        for (size_t p = 0; p < kc; p++) {                                                     \
            V b0 = LOAD(b), b1 = LOAD(b + VL);                                                \
            /* integer arithmetic: a pointer past the panel's end would be UB */             \
            _mm_prefetch((const char *)((uintptr_t)b + MG_PF_DIST * 2 * VL * sizeof(T)),      \
                         _MM_HINT_T0);                                                        \
            _mm_prefetch((const char *)((uintptr_t)b + (MG_PF_DIST * 2 + 1) * VL * sizeof(T)), \
                         _MM_HINT_T0);                                                        \
            for (int i = 0; i < AVX512_MR; i++) {                                             \
                V ai = SET1(a[i]);                                                            \
                acc[i][0] = FMADD(ai, b0, acc[i][0]);                                         \
                acc[i][1] = FMADD(ai, b1, acc[i][1]);                                         \
            }                                                                                 \
            a += AVX512_MR;                                                                   \
            b += 2 * VL;                                                                      \
        }                                                                                     \
        MASK m0 = nr >= VL ? (MASK)~0u : (MASK)((1u << nr) - 1);                              \
        MASK m1 = nr >= 2 * VL ? (MASK)~0u : nr <= VL ? 0 : (MASK)((1u << (nr - VL)) - 1);    \
        V va = SET1(alpha), vb = SET1(beta);                                                  \
        V bias0 = ZERO(), bias1 = ZERO();                                                     \
        if (bias != NULL) {                                                                   \
            bias0 = MLOAD(m0, bias);                                                          \
            bias1 = MLOAD(m1, bias + VL);                                                     \
        }                                                                                     \
        /* A constant trip count with an early exit, so that acc[i] stays a */              \
        /* register rather than an array indexed at run time on the stack. */               \
        for (int i = 0; i < AVX512_MR; i++) {                                                 \
            if ((size_t)i >= mr)                                                              \
                break;                                                                        \
            T *row = c + (size_t)i * ldc;                                                     \
            V c0 = bias0, c1 = bias1;                                                         \
            if (beta != 0) {                                                                  \
                c0 = FMADD(vb, MLOAD(m0, row), c0);                                           \
                c1 = FMADD(vb, MLOAD(m1, row + VL), c1);                                      \
            }                                                                                 \
            MSTORE(row, m0, FMADD(va, acc[i][0], c0));                                        \
            MSTORE(row + VL, m1, FMADD(va, acc[i][1], c1));                                   \
        }                                                                                     \
    }

DEFINE_AVX512_KERNEL(float, 32_f32, __m512, 16, __mmask16, _mm512_set1_ps, _mm512_setzero_ps,
                     _mm512_load_ps, _mm512_fmadd_ps, _mm512_maskz_loadu_ps,
                     _mm512_mask_storeu_ps)
DEFINE_AVX512_KERNEL(double, 16_f64, __m512d, 8, __mmask8, _mm512_set1_pd, _mm512_setzero_pd,
                     _mm512_load_pd, _mm512_fmadd_pd, _mm512_maskz_loadu_pd,
                     _mm512_mask_storeu_pd)

/*
 * For products only a few columns wide (a classifier's last layer, n = 10),
 * a 2-vector tile would mostly multiply padding. The narrow kernels are 16
 * rows x 1 vector: still 16 accumulators, but half the padding.
 */
#define AVX512_NARROW_MR 16

#define DEFINE_AVX512_NARROW_KERNEL(T, S, V, VL, MASK, SET1, ZERO, LOAD, FMADD, MLOAD, MSTORE)   \
    MG_TARGET_AVX512 static void ukernel_16x##S##_avx512(                                     \
        size_t kc, const T *restrict a, const T *restrict b, T *restrict c, size_t ldc,       \
        size_t mr, size_t nr, T alpha, T beta, const T *restrict bias)                        \
    {                                                                                         \
        V acc[AVX512_NARROW_MR];                                                              \
        for (int i = 0; i < AVX512_NARROW_MR; i++)                                            \
            acc[i] = ZERO();                                                                  \
        for (size_t p = 0; p < kc; p++) {                                                     \
            V b0 = LOAD(b);                                                                   \
            for (int i = 0; i < AVX512_NARROW_MR; i++)                                        \
                acc[i] = FMADD(SET1(a[i]), b0, acc[i]);                                       \
            a += AVX512_NARROW_MR;                                                            \
            b += VL;                                                                          \
        }                                                                                     \
        MASK m0 = nr >= VL ? (MASK)~0u : (MASK)((1u << nr) - 1);                              \
        V va = SET1(alpha), vb = SET1(beta);                                                  \
        V bias0 = bias != NULL ? MLOAD(m0, bias) : ZERO();                                    \
        for (int i = 0; i < AVX512_NARROW_MR; i++) {                                          \
            if ((size_t)i >= mr)                                                              \
                break;                                                                        \
            T *row = c + (size_t)i * ldc;                                                     \
            V c0 = bias0;                                                                     \
            if (beta != 0)                                                                    \
                c0 = FMADD(vb, MLOAD(m0, row), c0);                                           \
            MSTORE(row, m0, FMADD(va, acc[i], c0));                                           \
        }                                                                                     \
    }

DEFINE_AVX512_NARROW_KERNEL(float, 16_f32, __m512, 16, __mmask16, _mm512_set1_ps,
                            _mm512_setzero_ps, _mm512_load_ps, _mm512_fmadd_ps,
                            _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps)
DEFINE_AVX512_NARROW_KERNEL(double, 8_f64, __m512d, 8, __mmask8, _mm512_set1_pd,
                            _mm512_setzero_pd, _mm512_load_pd, _mm512_fmadd_pd,
                            _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd)

/*
 * Narrower than a vector (a classifier's n = 10), the 16-row kernel still
 * spends 16 multiply-adds a step, 6 of them on padding. Turned around, with
 * one accumulator per column holding its 16 rows, a step is one aligned
 * load of the packed A column, n broadcasts of B and n multiply-adds: for
 * n = 10, 11 loads and 10 multiply-adds instead of 17 and 16. The same
 * packed panels feed it; the finished tile goes out through a transpose in
 * a small buffer, with the same FMAs per element as the vector epilogue.
 * One copy per width, so that the accumulators stay in registers.
 */
#define DEFINE_AVX512_COLUMNS_KERNEL(NC)                                                       \
    MG_TARGET_AVX512 static void columns_##NC##_f32_avx512(                                   \
        size_t kc, const float *restrict a, const float *restrict b, float *restrict c,       \
        size_t ldc, size_t mr, float alpha, float beta, const float *restrict bias)           \
    {                                                                                         \
        __m512 acc[NC];                                                                       \
        float tile[NC][16];                                                                   \
        for (int j = 0; j < NC; j++)                                                          \
            acc[j] = _mm512_setzero_ps();                                                     \
        for (size_t p = 0; p < kc; p++) {                                                     \
            __m512 a0 = _mm512_load_ps(a);                                                    \
            for (int j = 0; j < NC; j++)                                                      \
                acc[j] = _mm512_fmadd_ps(a0, _mm512_set1_ps(b[j]), acc[j]);                   \
            a += AVX512_NARROW_MR;                                                            \
            b += 16;                                                                          \
        }                                                                                     \
        for (int j = 0; j < NC; j++)                                                          \
            _mm512_storeu_ps(tile[j], acc[j]);                                                \
        for (size_t i = 0; i < mr; i++) {                                                     \
            float *row = c + i * ldc;                                                         \
            for (int j = 0; j < NC; j++) {                                                    \
                float c0 = bias != NULL ? bias[j] : 0.0f;                                     \
                if (beta != 0)                                                                \
                    c0 = __builtin_fmaf(beta, row[j], c0);                                    \
                row[j] = __builtin_fmaf(alpha, tile[j][i], c0);                               \
            }                                                                                 \
        }                                                                                     \
    }

/* The widths below a vector that get a kernel of their own. */
#define NARROW_WIDTHS(X)                                                                       \
    X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

NARROW_WIDTHS(DEFINE_AVX512_COLUMNS_KERNEL)

/* A call whose n is below 16 has tiles nr = n wide, all of them. */
MG_TARGET_AVX512 static void ukernel_16xn_f32_avx512(size_t kc, const float *restrict a,
                                                     const float *restrict b, float *restrict c,
                                                     size_t ldc, size_t mr, size_t nr,
                                                     float alpha, float beta,
                                                     const float *restrict bias)
{
#define COLUMNS_CASE(NC)                                                                       \
    case NC:                                                                                   \
        columns_##NC##_f32_avx512(kc, a, b, c, ldc, mr, alpha, beta, bias);                    \
        break;
    switch (nr) {
        NARROW_WIDTHS(COLUMNS_CASE)
    default:
        ukernel_16x16_f32_avx512(kc, a, b, c, ldc, mr, nr, alpha, beta, bias);
    }
#undef COLUMNS_CASE
}

/* ---- AVX2+FMA micro-kernels -----------------------------------------------
 *
 * 6 rows x 2 vectors: 12 accumulators, 2 B vectors and a broadcast fill 15
 * of the 16 ymm registers. AVX2 has no cheap masked store for every width,
 * so a ragged right edge goes through a tile on the stack and a scalar
 * write-back (same fma rounding as the vector path).
 */
#define AVX2_MR 6

#define DEFINE_AVX2_KERNEL(T, S, V, VL, SET1, ZERO, LOAD, LOADU, STOREU, FMADD, STORE, SFMA)    \
    MG_TARGET_AVX2 static void ukernel_6x##S##_avx2(                                          \
        size_t kc, const T *restrict a, const T *restrict b, T *restrict c, size_t ldc,       \
        size_t mr, size_t nr, T alpha, T beta, const T *restrict bias)                        \
    {                                                                                         \
        V acc[AVX2_MR][2];                                                                    \
        for (int i = 0; i < AVX2_MR; i++)                                                     \
            acc[i][0] = acc[i][1] = ZERO();                                                   \
        for (size_t p = 0; p < kc; p++) {                                                     \
            V b0 = LOAD(b), b1 = LOAD(b + VL);                                                \
            for (int i = 0; i < AVX2_MR; i++) {                                               \
                V ai = SET1(a[i]);                                                            \
                acc[i][0] = FMADD(ai, b0, acc[i][0]);                                         \
                acc[i][1] = FMADD(ai, b1, acc[i][1]);                                         \
            }                                                                                 \
            a += AVX2_MR;                                                                     \
            b += 2 * VL;                                                                      \
        }                                                                                     \
        if (nr == 2 * VL) {                                                                   \
            V va = SET1(alpha), vb = SET1(beta);                                              \
            V bias0 = ZERO(), bias1 = ZERO();                                                 \
            if (bias != NULL) {                                                               \
                bias0 = LOADU(bias);                                                          \
                bias1 = LOADU(bias + VL);                                                     \
            }                                                                                 \
            for (int i = 0; i < AVX2_MR; i++) {                                               \
                if ((size_t)i >= mr)                                                          \
                    break;                                                                    \
                T *row = c + (size_t)i * ldc;                                                 \
                V c0 = bias0, c1 = bias1;                                                     \
                if (beta != 0) {                                                              \
                    c0 = FMADD(vb, LOADU(row), c0);                                           \
                    c1 = FMADD(vb, LOADU(row + VL), c1);                                      \
                }                                                                             \
                STOREU(row, FMADD(va, acc[i][0], c0));                                        \
                STOREU(row + VL, FMADD(va, acc[i][1], c1));                                   \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        _Alignas(32) T tile[AVX2_MR][2 * VL];                                                 \
        for (int i = 0; i < AVX2_MR; i++) {                                                   \
            STORE(tile[i], acc[i][0]);                                                        \
            STORE(tile[i] + VL, acc[i][1]);                                                   \
        }                                                                                     \
        for (size_t i = 0; i < mr; i++) {                                                     \
            T *row = c + i * ldc;                                                             \
            for (size_t j = 0; j < nr; j++) {                                                 \
                T v = bias != NULL ? bias[j] : (T)0;                                          \
                if (beta != 0)                                                                \
                    v = SFMA(beta, row[j], v);                           \
                row[j] = SFMA(alpha, tile[i][j], v);                     \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_AVX2_KERNEL(float, 16_f32, __m256, 8, _mm256_set1_ps, _mm256_setzero_ps, _mm256_load_ps,
                   _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_store_ps,
                   __builtin_fmaf)
DEFINE_AVX2_KERNEL(double, 8_f64, __m256d, 4, _mm256_set1_pd, _mm256_setzero_pd, _mm256_load_pd,
                   _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_store_pd,
                   __builtin_fma)

#endif /* MG_X86_PATHS */

/* ---- the blocked product, one thread's rectangle ------------------------ */

#define DEFINE_DRIVER(T, S)                                                                    \
    typedef struct {                                                                           \
        ukernel_##S kernel;                                                                    \
        void (*pack_a)(int, size_t, size_t, const T *, size_t, T *, size_t);                   \
        void (*pack_b)(int, size_t, size_t, const T *, size_t, T *, size_t);                   \
        size_t mr, nr;                                                                         \
    } kernel_info_##S;                                                                         \
                                                                                               \
    static kernel_info_##S pick_kernel_##S(int level, size_t n)                                \
    {                                                                                          \
        kernel_info_##S k = {ukernel_4x8_##S##_generic, pack_a_##S##_generic,                  \
                             pack_b_##S##_generic, GENERIC_MR, GENERIC_NR};                    \
        KERNEL_TABLE_##S(level, n, k);                                                         \
        return k;                                                                              \
    }                                                                                          \
                                                                                               \
    /* Workspace elements one thread needs for an m x n x k rectangle. */                      \
    static size_t workspace_##S(const mg_blocking *bl, size_t m, size_t n, size_t k)           \
    {                                                                                          \
        size_t kc = min_size(bl->kc, k);                                                       \
        size_t a = min_size(bl->mc, round_up(m, bl->mr)) * kc;                                 \
        size_t b = min_size(bl->nc, round_up(n, bl->nr)) * kc;                                 \
        size_t per_line = MG_ALIGN / sizeof(T);                                                \
        return round_up(a, per_line) + round_up(b, per_line);                                  \
    }                                                                                          \
                                                                                               \
    static void gemm_block_##S(const kernel_info_##S *ki, const mg_blocking *bl, int trans_a,  \
                               int trans_b, size_t m, size_t n, size_t k, T alpha,             \
                               const T *a, size_t lda, const T *b, size_t ldb, T beta, T *c,   \
                               size_t ldc, const T *bias, T *ws)                               \
    {                                                                                          \
        size_t per_line = MG_ALIGN / sizeof(T);                                                \
        size_t kc_max = min_size(bl->kc, k);                                                   \
        T *pa = ws;                                                                            \
        T *pb = ws + round_up(min_size(bl->mc, round_up(m, bl->mr)) * kc_max, per_line);       \
        for (size_t jc = 0; jc < n; jc += bl->nc) {                                            \
            size_t nc = min_size(bl->nc, n - jc);                                              \
            for (size_t pc = 0; pc < k; pc += bl->kc) {                                        \
                size_t kc = min_size(bl->kc, k - pc);                                          \
                T beta_p = pc == 0 ? beta : (T)1;                                              \
                const T *bias_p = pc + kc == k && bias != NULL ? bias + jc : NULL;             \
                ki->pack_b(trans_b, kc, nc, trans_b ? b + jc * ldb + pc : b + pc * ldb + jc,   \
                           ldb, pb, bl->nr);                                                   \
                for (size_t ic = 0; ic < m; ic += bl->mc) {                                    \
                    size_t mc = min_size(bl->mc, m - ic);                                      \
                    ki->pack_a(trans_a, mc, kc, trans_a ? a + pc * lda + ic : a + ic * lda + pc, \
                               lda, pa, bl->mr);                                               \
                    for (size_t jr = 0; jr < nc; jr += bl->nr) {                               \
                        size_t nr = min_size(bl->nr, nc - jr);                                 \
                        const T *bp = pb + jr * kc;                                            \
                        const T *bias_r = bias_p != NULL ? bias_p + jr : NULL;                 \
                        T *c_col = c + jc + jr;                                                \
                        for (size_t ir = 0; ir < mc; ir += bl->mr) {                           \
                            size_t mr = min_size(bl->mr, mc - ir);                             \
                            ki->kernel(kc, pa + ir * kc, bp, c_col + (ic + ir) * ldc, ldc, mr, \
                                       nr, alpha, beta_p, bias_r);                             \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    /* No product to add (k == 0 or alpha == 0): C = beta C + bias, and as in */                \
    /* BLAS neither A nor B is read, so their NaNs do not leak in. */                          \
    static void scale_c_##S(size_t m, size_t n, T beta, T *c, size_t ldc, const T *bias)       \
    {                                                                                          \
        for (size_t i = 0; i < m; i++) {                                                       \
            T *row = c + i * ldc;                                                              \
            for (size_t j = 0; j < n; j++) {                                                   \
                T v = beta != 0 ? beta * row[j] : (T)0;                                        \
                row[j] = bias != NULL ? v + bias[j] : v;                                       \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    int mg_gemm_##S(int trans_a, int trans_b, size_t m, size_t n, size_t k, T alpha,           \
                    const T *a, size_t lda, const T *b, size_t ldb, T beta, T *c, size_t ldc,  \
                    const T *bias)                                                             \
    {                                                                                          \
        if (m == 0 || n == 0)                                                                  \
            return 0;                                                                          \
        if (k == 0 || alpha == 0) {                                                            \
            scale_c_##S(m, n, beta, c, ldc, bias);                                             \
            return 0;                                                                          \
        }                                                                                      \
        kernel_info_##S ki = pick_kernel_##S(mg_simd_level(), n);                              \
        mg_blocking bl = blocking_for(ki.mr, ki.nr, sizeof(T));                                \
        grid g = thread_grid(m, n, k, ki.mr, ki.nr);                                           \
        size_t m_part = round_up((m + g.rows - 1) / g.rows, ki.mr);                            \
        size_t n_part = round_up((n + g.cols - 1) / g.cols, ki.nr);                            \
        size_t ws_len = workspace_##S(&bl, m_part, n_part, k);                                 \
        int nt = g.rows * g.cols;                                                              \
        T *ws = aligned_alloc(MG_ALIGN, (size_t)nt * ws_len * sizeof(T));                      \
        if (ws == NULL)                                                                        \
            return 1;                                                                          \
        if (nt == 1) {                                                                         \
            gemm_block_##S(&ki, &bl, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,   \
                           c, ldc, bias, ws);                                                  \
        } else {                                                                               \
            MG_GEMM_PARALLEL_FOR                                                               \
            for (int t = 0; t < nt; t++) {                                                     \
                if (t > 0) /* schedule(static, 1): iteration t is thread t's */                \
                    mg_region_worker_started();                                                \
                size_t i0 = (size_t)(t / g.cols) * m_part;                                     \
                size_t j0 = (size_t)(t % g.cols) * n_part;                                     \
                if (i0 >= m || j0 >= n)                                                        \
                    continue;                                                                  \
                size_t mt = min_size(m_part, m - i0), ntc = min_size(n_part, n - j0);          \
                gemm_block_##S(&ki, &bl, trans_a, trans_b, mt, ntc, k, alpha,                  \
                               trans_a ? a + i0 : a + i0 * lda, lda,                           \
                               trans_b ? b + j0 * ldb : b + j0, ldb, beta,                     \
                               c + i0 * ldc + j0, ldc, bias != NULL ? bias + j0 : NULL,        \
                               ws + (size_t)t * ws_len);                                       \
            }                                                                                  \
        }                                                                                      \
        free(ws);                                                                              \
        return 0;                                                                              \
    }                                                                                          \
                                                                                               \
    int mg_gemm_blocking_##S(size_t *out)                                                      \
    {                                                                                          \
        kernel_info_##S ki = pick_kernel_##S(mg_simd_level(), (size_t)-1);                     \
        mg_blocking bl = blocking_for(ki.mr, ki.nr, sizeof(T));                                \
        out[0] = bl.mr;                                                                        \
        out[1] = bl.nr;                                                                        \
        out[2] = bl.mc;                                                                        \
        out[3] = bl.kc;                                                                        \
        out[4] = bl.nc;                                                                        \
        return 0;                                                                              \
    }

#if MG_X86_PATHS
/* The micro-kernel for the level (and, on AVX-512, for narrow products)
 * with the packing routines compiled for the same instruction set. */
#define KERNEL_INFO(S, KERNEL, ISA, MR, NR)                                                    \
    (kernel_info_##S){KERNEL, pack_a_##S##_##ISA, pack_b_##S##_##ISA, MR, NR}
#define KERNEL_TABLE_f32(level, n, k)                                                          \
    do {                                                                                       \
        if ((level) >= 2 && (n) < 16)                                                          \
            k = KERNEL_INFO(f32, ukernel_16xn_f32_avx512, avx512, AVX512_NARROW_MR, 16);       \
        else if ((level) >= 2 && (n) == 16)                                                    \
            k = KERNEL_INFO(f32, ukernel_16x16_f32_avx512, avx512, AVX512_NARROW_MR, 16);      \
        else if ((level) >= 2)                                                                 \
            k = KERNEL_INFO(f32, ukernel_8x32_f32_avx512, avx512, AVX512_MR, 32);              \
        else if ((level) == 1)                                                                 \
            k = KERNEL_INFO(f32, ukernel_6x16_f32_avx2, avx2, AVX2_MR, 16);                    \
    } while (0)
#define KERNEL_TABLE_f64(level, n, k)                                                          \
    do {                                                                                       \
        if ((level) >= 2 && (n) <= 8)                                                          \
            k = KERNEL_INFO(f64, ukernel_16x8_f64_avx512, avx512, AVX512_NARROW_MR, 8);        \
        else if ((level) >= 2)                                                                 \
            k = KERNEL_INFO(f64, ukernel_8x16_f64_avx512, avx512, AVX512_MR, 16);              \
        else if ((level) == 1)                                                                 \
            k = KERNEL_INFO(f64, ukernel_6x8_f64_avx2, avx2, AVX2_MR, 8);                      \
    } while (0)
#else
#define KERNEL_TABLE_f32(level, n, k) ((void)(level), (void)(n))
#define KERNEL_TABLE_f64(level, n, k) ((void)(level), (void)(n))
#endif

#ifdef _OPENMP
#define MG_GEMM_PARALLEL_FOR _Pragma("omp parallel for num_threads(mg_region_begin(nt)) schedule(static, 1)")
#else
#define MG_GEMM_PARALLEL_FOR
#endif

/* ---- threads ------------------------------------------------------------- */

typedef struct {
    int rows, cols;
} grid;

/*
 * How to cut C among threads: rows x cols rectangles with rows * cols at
 * most the thread count. Each thread packs all of A for its rows and all of
 * B for its columns, so among the factorizations the one with the least
 * packing per thread, m k / rows + k n / cols, wins; a split that would leave
 * a thread less than one register tile is not taken.
 */
static grid thread_grid(size_t m, size_t n, size_t k, size_t mr, size_t nr)
{
    grid best = {1, 1};
    int threads = mg_threads_now();
    double flops = 2.0 * (double)m * (double)n * (double)k;

    if (threads <= 1 || flops < MG_GEMM_PARALLEL_MIN_FLOPS)
        return best;
    size_t m_tiles = (m + mr - 1) / mr, n_tiles = (n + nr - 1) / nr;
    double best_cost = -1;
    for (int rows = 1; rows <= threads; rows++) {
        if (threads % rows != 0)
            continue;
        int cols = threads / rows;
        if ((size_t)rows > m_tiles || (size_t)cols > n_tiles)
            continue;
        double cost = (double)m / rows + (double)n / cols;
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            best.rows = rows;
            best.cols = cols;
        }
    }
    return best;
}

DEFINE_DRIVER(float, f32)
DEFINE_DRIVER(double, f64)
