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

/* ---- backing off while the machine is busy ---------------------------------
 *
 * A region is only as fast as its slowest thread. A worker whose core is
 * running another program starts when the scheduler gives it a slice, which
 * can be milliseconds away, while the calling thread spins at the region's
 * end: measured on 2 cores with one busy, a 30 us batch norm took 100 us to
 * 16 ms on two threads and 40 us on one. The master notes when it opens a
 * region; each worker compares that with when it started. One late start
 * alone happens on a quiet machine too (a few in a thousand training steps
 * here), so it takes two regions in a row; and the first regions with a new
 * thread count do not count, as their workers are being created. The
 * shared values are atomics written without locks: two Python threads
 * opening regions at once can only misjudge one region, which costs at most
 * one pause. */
#define LATE_WORKER_SECONDS 200e-6
#define FIRST_PAUSE_SECONDS 0.05
/* A machine busy for good then pays two late regions a second at most; one
 * busy for a moment costs a second on one thread at most. */
#define LONGEST_PAUSE_SECONDS 1.0

#ifdef _OPENMP
static _Atomic double region_opened = 0.0;
static _Atomic double solo_until = 0.0;
static _Atomic double next_pause = FIRST_PAUSE_SECONDS;
static atomic_int late_in_a_row = 0;
static atomic_int pool_threads = 0;   /* the thread count of the last region */
static atomic_int warming_up = 0;     /* regions still to pass before judging */
#endif
static atomic_ulong backoffs = 0;

/* 0 means "not set": OpenMP's own default (OMP_NUM_THREADS or the core
 * count) applies until Python calls mg_set_num_threads. The count is kept
 * here and passed to each parallel region, rather than set with
 * omp_set_num_threads, because that setting belongs to the calling thread
 * and Python may call kernels from several threads. */
static atomic_int num_threads = 0;

void mg_set_num_threads(int n)
{
    atomic_store_explicit(&num_threads, n < 1 ? 1 : n, memory_order_relaxed);
#ifdef _OPENMP
    /* a count asked for starts afresh: no pause, none doubled */
    atomic_store_explicit(&solo_until, 0.0, memory_order_relaxed);
    atomic_store_explicit(&next_pause, FIRST_PAUSE_SECONDS, memory_order_relaxed);
    atomic_store_explicit(&late_in_a_row, 0, memory_order_relaxed);
#endif
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

int mg_threads_now(void)
{
    int n = mg_get_num_threads();
#ifdef _OPENMP
    if (n > 1 && omp_get_wtime() < atomic_load_explicit(&solo_until, memory_order_relaxed))
        return 1;
#endif
    return n;
}

int mg_region_begin(int threads)
{
#ifdef _OPENMP
    if (threads > 1) {
        if (atomic_exchange_explicit(&pool_threads, threads, memory_order_relaxed) != threads)
            atomic_store_explicit(&warming_up, 4, memory_order_relaxed);
        atomic_store_explicit(&region_opened, omp_get_wtime(), memory_order_relaxed);
    }
#endif
    return threads;
}

void mg_region_worker_started(void)
{
#ifdef _OPENMP
    double now = omp_get_wtime();
    double pause = atomic_load_explicit(&next_pause, memory_order_relaxed);

    if (atomic_load_explicit(&warming_up, memory_order_relaxed) > 0) {
        atomic_fetch_sub_explicit(&warming_up, 1, memory_order_relaxed);
        return;
    }

    if (now - atomic_load_explicit(&region_opened, memory_order_relaxed) <= LATE_WORKER_SECONDS) {
        atomic_store_explicit(&late_in_a_row, 0, memory_order_relaxed);
        if (pause != FIRST_PAUSE_SECONDS)
            atomic_store_explicit(&next_pause, FIRST_PAUSE_SECONDS, memory_order_relaxed);
        return;
    }
    if (atomic_fetch_add_explicit(&late_in_a_row, 1, memory_order_relaxed) < 1)
        return;
    atomic_store_explicit(&late_in_a_row, 0, memory_order_relaxed);
    atomic_store_explicit(&solo_until, now + pause, memory_order_relaxed);
    atomic_store_explicit(&next_pause,
                          pause * 2 < LONGEST_PAUSE_SECONDS ? pause * 2 : LONGEST_PAUSE_SECONDS,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&backoffs, 1, memory_order_relaxed);
#endif
}

unsigned long mg_thread_backoffs(void)
{
    return atomic_load_explicit(&backoffs, memory_order_relaxed);
}

int mg_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
