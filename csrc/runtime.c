/*
 * runtime.c - what the kernels ask about the machine: which instruction set
 * path to take, how many threads to use, whether OpenMP was compiled in.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "minigrad.h"

unsigned mg_cpu_features(void)
{
    unsigned features = 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    /* libgcc fills the table these read from a constructor, but a caller
     * may run before constructors (another library's); init is idempotent. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        features |= MG_CPU_AVX2;
    if (__builtin_cpu_supports("fma"))
        features |= MG_CPU_FMA;
    if (__builtin_cpu_supports("avx512f"))
        features |= MG_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512dq"))
        features |= MG_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vl"))
        features |= MG_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512bw"))
        features |= MG_CPU_AVX512BW;
#endif
    return features;
}

static int cpu_simd_level(void)
{
    const unsigned avx2 = MG_CPU_AVX2 | MG_CPU_FMA;
    const unsigned avx512 = MG_CPU_AVX512F | MG_CPU_AVX512DQ | MG_CPU_AVX512VL | MG_CPU_AVX512BW;
    unsigned features = mg_cpu_features();

    if ((features & avx512) == avx512)
        return 2;
    if ((features & avx2) == avx2)
        return 1;
    return 0;
}

static const char *const level_names[] = {"generic", "avx2", "avx512"};

static int choose_simd_level(void)
{
    int level = cpu_simd_level();
    const char *forced = getenv("MINIGRAD_FORCE_ISA");

    if (forced == NULL)
        return level;
    for (int i = 0; i < level; i++) {
        if (strcmp(forced, level_names[i]) == 0)
            return i;
    }
    /* Anything else (the level already chosen, an unknown name, or a level
     * the CPU lacks) leaves the level alone: running AVX-512 code on a CPU
     * without it would die with SIGILL. */
    return level;
}

/* -1 until first use. Two threads racing here compute the same value, so
 * relaxed atomics are enough: the worst case is detecting twice. */
static atomic_int simd_level = -1;

int mg_simd_level(void)
{
    int level = atomic_load_explicit(&simd_level, memory_order_relaxed);

    if (level < 0) {
        level = choose_simd_level();
        atomic_store_explicit(&simd_level, level, memory_order_relaxed);
    }
    return level;
}

const char *mg_simd_name(void)
{
    return level_names[mg_simd_level()];
}

/* 0 means "not set": OpenMP's own default (OMP_NUM_THREADS or the core
 * count) applies until Python calls mg_set_num_threads. The count is kept
 * here and passed to each parallel region, rather than set with
 * omp_set_num_threads, because that setting belongs to the calling thread
 * and Python may call kernels from several threads. */
static atomic_int num_threads = 0;

void mg_set_num_threads(int n)
{
    atomic_store_explicit(&num_threads, n < 1 ? 1 : n, memory_order_relaxed);
}

int mg_get_num_threads(void)
{
#ifdef _OPENMP
    int n = atomic_load_explicit(&num_threads, memory_order_relaxed);

    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

int mg_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
