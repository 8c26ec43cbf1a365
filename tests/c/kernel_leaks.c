/*
 * kernel_leaks.c - every C kernel called directly, without Python, so that
 * AddressSanitizer, LeakSanitizer and UBSan see only minigrad's own memory.
 * Python never frees everything at exit, so leak checks under the
 * interpreter report nothing useful; here any leaked workspace (GEMM
 * panels, batch-norm scratch, clipping partial sums) fails the run.
 *
 *   gcc -std=c11 -fsanitize=address,undefined -fopenmp -Icsrc \
 *       tests/c/kernel_leaks.c csrc/[a-z]*.c -lm -o kernel_leaks && ./kernel_leaks
 * (.ci/run does this)
 *
 * Sizes 0, 1, odd and vector width +- 1, on both thread counts and every
 * instruction-set path the CPU has (MINIGRAD_FORCE_ISA picks one per run).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "minigrad.h"

/* Defined by the cffi build in the extension; the driver has its own. */
const char *mg_build_flags(void) { return "kernel_leaks driver"; }

static int failures;

static void check(int status, const char *what, size_t size)
{
    if (status != 0) {
        fprintf(stderr, "%s (size %zu) returned status %d\n", what, size, status);
        failures++;
    }
}

/* Fill with a spread of values that includes negatives, zero and a NaN. */
#define DEFINE_FILL(T, S)                                                                \
    static T *fill_##S(size_t n, unsigned seed)                                          \
    {                                                                                    \
        T *a = malloc((n ? n : 1) * sizeof(T));                                          \
        for (size_t i = 0; i < n; i++)                                                   \
            a[i] = (T)((int)((i * 7919u + seed) % 201u) - 100) / (T)37;                  \
        if (n > 5)                                                                       \
            a[5] = (T)NAN;                                                               \
        return a;                                                                        \
    }

#define DEFINE_RUN(T, S)                                                                 \
    static void run_##S(size_t n)                                                        \
    {                                                                                    \
        T *x = fill_##S(n, 1), *y = fill_##S(n, 2), *g = fill_##S(n, 3);                 \
        T *out = fill_##S(n, 4), *state = fill_##S(n, 5), *state2 = fill_##S(n, 6);      \
        for (size_t i = 0; i < n; i++)                                                   \
            state2[i] = state2[i] * state2[i]; /* Adam's second moment is >= 0 */        \
        check(mg_relu_forward_##S(n, out, x), "relu_forward", n);                        \
        check(mg_relu_backward_##S(n, out, g, y), "relu_backward", n);                   \
        check(mg_leaky_relu_forward_##S(n, out, x, (T)0.1), "leaky_relu_forward", n);    \
        check(mg_leaky_relu_backward_##S(n, out, g, x, (T)0.1), "leaky_relu_bwd", n);    \
        check(mg_sigmoid_forward_##S(n, out, x), "sigmoid_forward", n);                  \
        check(mg_sigmoid_backward_##S(n, out, g, y), "sigmoid_backward", n);             \
        check(mg_tanh_forward_##S(n, out, x), "tanh_forward", n);                        \
        check(mg_tanh_backward_##S(n, out, g, y), "tanh_backward", n);                   \
        for (int form = 0; form < 2; form++) {                                           \
            check(mg_gelu_forward_##S(n, out, x, form), "gelu_forward", n);              \
            check(mg_gelu_backward_##S(n, out, g, x, form), "gelu_backward", n);         \
        }                                                                                \
        const T *bufs[3] = {x, y, g};                                                    \
        size_t lens[3] = {n, n / 2, 0};                                                  \
        double total;                                                                    \
        check(mg_sum_squares_##S(3, &total, bufs, lens), "sum_squares", n);              \
        check(mg_max_abs_##S(3, &total, bufs, lens), "max_abs", n);                      \
        check(mg_scale_##S(n, out, (T)0.5), "scale", n);                                 \
        check(mg_clamp_##S(n, out, (T)-1, (T)1), "clamp", n);                            \
        check(mg_sgd_step_##S(n, out, state, g, 0.1, 0.9, 0.0, 1e-4, 1, 1), "sgd", n);   \
        check(mg_adam_step_##S(n, out, state, state2, g, 3, 1e-3, 0.9, 0.999, 1e-8,      \
                               1e-2, 1),                                                 \
              "adam", n);                                                                \
        /* The group kernels: two halves of the arrays and an empty tensor, each */      \
        /* with its own step; then a group of none (NULL lists). */                      \
        size_t half = n / 2, parts[3] = {half, n - half, 0};                             \
        T *ps[3] = {out, out + half, out + n}, *ms[3] = {state, state + half, state + n}; \
        T *vs[3] = {state2, state2 + half, state2 + n};                                  \
        const T *gs[3] = {g, g + half, g + n};                                           \
        long long steps[3] = {3, 1, 2};                                                  \
        int firsts[3] = {1, 0, 1};                                                       \
        check(mg_adam_step_multi_##S(3, ps, ms, vs, gs, parts, steps, 1e-3, 0.9, 0.999,  \
                                     1e-8, 1e-2, 0),                                     \
              "adam_multi", n);                                                          \
        check(mg_sgd_step_multi_##S(3, ps, ms, gs, parts, firsts, 0.1, 0.9, 0.1, 1e-4,   \
                                    0),                                                  \
              "sgd_multi", n);                                                           \
        check(mg_sgd_step_multi_##S(3, ps, NULL, gs, parts, NULL, 0.1, 0.0, 0.0, 0.0, 0), \
              "sgd_multi without momentum", n);                                          \
        check(mg_adam_step_multi_##S(0, NULL, NULL, NULL, NULL, NULL, NULL, 1e-3, 0.9,   \
                                     0.999, 1e-8, 0.0, 1),                               \
              "adam_multi of none", n);                                                  \
        check(mg_sgd_step_multi_##S(0, NULL, NULL, NULL, NULL, NULL, 0.1, 0.0, 0.0, 0.0, \
                                    0),                                                  \
              "sgd_multi of none", n);                                                   \
        mg_tensor_stats st, lst[3];                                                      \
        unsigned long long hist[3 * 10], dead;                                           \
        double sums[6], change[6];                                                       \
        T *snapshot = fill_##S(n + n / 2, 17);                                           \
        check(mg_tensor_stats_##S(n, &st, x, 0.5, 0.0), "tensor_stats", n);              \
        check(mg_histogram_stats_##S(3, lst, hist, 10, bufs, lens), "histogram_stats", n); \
        check(mg_change_stats_##S(3, sums, change, snapshot, bufs, lens, 1),             \
              "change_stats", n);                                                        \
        check(mg_change_stats_##S(3, NULL, change, snapshot, bufs, lens, 0),             \
              "change_stats", n);                                                        \
        /* The three in one call, the same lists as outputs (one unit per sample) */    \
        /* and weights; then without weights (NULL lists). */                            \
        mg_tensor_stats act[3];                                                          \
        unsigned long long deads[3];                                                     \
        size_t units[3] = {lens[0] != 0, lens[1] != 0, 0};                               \
        double thresholds[3] = {0.49, 0.49, 0.49}, centers[3] = {0.5, 0.5, 0.5};         \
        check(mg_monitor_stats_##S(3, lst, hist, 10, bufs, lens, 3, act, deads, bufs,    \
                                   lens, units, thresholds, centers, 3, sums, change,    \
                                   snapshot, bufs, lens, 1),                             \
              "monitor_stats", n);                                                       \
        check(mg_monitor_stats_##S(3, lst, hist, 10, bufs, lens, 3, act, deads, bufs,    \
                                   lens, units, thresholds, centers, 0, NULL, NULL,      \
                                   NULL, NULL, NULL, 0),                                 \
              "monitor_stats without weights", n);                                       \
        free(snapshot);                                                                  \
        /* Matrix kernels on (rows, cols) = (n / c, c) for a few column counts. */       \
        static const size_t cols[] = {1, 3, 16, 17};                                     \
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {                   \
            size_t c = cols[ci], r = n / c;                                              \
            T *mean = fill_##S(c > r ? c : r, 7), *invstd = fill_##S(c > r ? c : r, 8);  \
            T *w = fill_##S(c, 9), *b = fill_##S(c, 10);                                 \
            T *gw = fill_##S(c, 11), *gb = fill_##S(c, 12);                              \
            T *rm = fill_##S(c, 13), *rv = fill_##S(c, 14);                              \
            for (size_t i = 0; i < c; i++)                                               \
                rv[i] = rv[i] * rv[i] + 1;                                               \
            check(mg_batch_norm_forward_train_##S(r, c, out, mean, invstd, x, w, b,      \
                                                  1e-5, rm, rv, 0.1),                    \
                  "batch_norm_forward_train", n);                                        \
            check(mg_batch_norm_forward_eval_##S(r, c, out, x, rm, rv, w, b, 1e-5),      \
                  "batch_norm_forward_eval", n);                                         \
            check(mg_batch_norm_backward_##S(r, c, out, gw, gb, g, x, mean, invstd, w),  \
                  "batch_norm_backward", n);                                             \
            check(mg_layer_norm_forward_##S(r, c, out, mean, invstd, x, w, b, 1e-5),     \
                  "layer_norm_forward", n);                                              \
            check(mg_layer_norm_backward_##S(r, c, out, gw, gb, g, x, mean, invstd, w),  \
                  "layer_norm_backward", n);                                             \
            check(mg_row_norms_##S(r, c, out, x), "row_norms", n);                       \
            check(mg_unit_stats_##S(r, c, &st, &dead, y, 0.49, 0.5), "unit_stats", n);  \
            check(mg_unit_stats_##S(r, c, &st, &dead, state, INFINITY, 0.0), "unit_stats", n); \
            check(mg_adaptive_clip_##S(r, c, out, y, 0.01, 1e-3), "adaptive_clip", n);   \
            /* GEMM: (r x c) times (c x r) and the transposed forms, bias per column. */ \
            size_t m = r < 300 ? r : 300; /* the first m rows: a product of m x m */     \
            T *prod = fill_##S(m * m, 15), *bias = fill_##S(m, 16);                      \
            for (int ta = 0; ta < 2; ta++)                                               \
                for (int tb = 0; tb < 2; tb++)                                           \
                    check(mg_gemm_##S(ta, tb, m, m, c, (T)1, x, ta ? m : c, y,           \
                                      tb ? c : m, (T)0.5, prod, m ? m : 1, bias),        \
                          "gemm", n);                                                    \
            free(prod), free(bias);                                                      \
            free(mean), free(invstd), free(w), free(b), free(gw), free(gb), free(rm);    \
            free(rv);                                                                    \
        }                                                                                \
        free(x), free(y), free(g), free(out), free(state), free(state2);                 \
    }

/* A group large enough for the update kernels to split it across threads,
 * the split falling inside tensors. */
#define DEFINE_RUN_BIG_GROUP(T, S)                                                       \
    static void run_big_group_##S(void)                                                  \
    {                                                                                    \
        size_t lens[3] = {((size_t)1 << 20) + 9, 7, (size_t)1 << 20};                    \
        T *ps[3], *ms[3], *vs[3];                                                        \
        const T *gs[3];                                                                  \
        long long steps[3] = {1, 2, 3};                                                  \
        for (int b = 0; b < 3; b++) {                                                    \
            ps[b] = fill_##S(lens[b], 20), ms[b] = fill_##S(lens[b], 21);                \
            vs[b] = fill_##S(lens[b], 22), gs[b] = fill_##S(lens[b], 23);                \
        }                                                                                \
        check(mg_adam_step_multi_##S(3, ps, ms, vs, gs, lens, steps, 1e-3, 0.9, 0.999,   \
                                     1e-8, 1e-2, 1),                                     \
              "adam_multi, big group", lens[0]);                                         \
        check(mg_sgd_step_multi_##S(3, ps, ms, gs, lens, NULL, 0.1, 0.9, 0.0, 1e-4, 1),  \
              "sgd_multi, big group", lens[0]);                                          \
        for (int b = 0; b < 3; b++)                                                      \
            free(ps[b]), free(ms[b]), free(vs[b]), free((void *)gs[b]);                  \
    }

DEFINE_FILL(float, f32)
DEFINE_FILL(double, f64)
DEFINE_RUN(float, f32)
DEFINE_RUN(double, f64)
DEFINE_RUN_BIG_GROUP(float, f32)
DEFINE_RUN_BIG_GROUP(double, f64)

int main(void)
{
    static const size_t sizes[] = {0, 1, 7, 15, 16, 17, 33, 1000, 4099, 70000};
    for (int threads = 1; threads <= 2; threads++) {
        mg_set_num_threads(threads);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            run_f32(sizes[i]);
            run_f64(sizes[i]);
        }
        run_big_group_f32();
        run_big_group_f64();
    }
    printf("kernel_leaks: %s path, %d failures\n", mg_simd_name(), failures);
    return failures != 0;
}
