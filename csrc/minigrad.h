/*
 * minigrad.h - the whole C API of minigrad's kernels.
 *
 * minigrad/_build.py hands this file to cffi as its cdef after dropping every
 * line that starts with '#', so outside preprocessor lines it must stay plain
 * declarations that cffi can parse: no macros, no inline code, no `restrict`
 * (definitions may add it; top-level qualifiers of parameters do not change a
 * function's type).
 *
 * Conventions, as in ggml's vec.h: the element count comes first, then the
 * output, then the inputs. One name per op and element type (_f32 for float,
 * _f64 for double). Arrays are contiguous and hold n elements each; outputs
 * never alias inputs. Kernels check nothing that Python already checked, but
 * never touch memory outside the n elements they are given (n == 0 is fine).
 * Every kernel returns an int status: MG_OK (0) on success, MG_ERR_NOMEM
 * when it could not allocate its scratch space, MG_ERR_RANGE when an
 * argument is outside a range stated below (Python checks first).
 */
#ifndef MINIGRAD_H
#define MINIGRAD_H

#include <stddef.h>

enum mg_status { MG_OK = 0, MG_ERR_NOMEM = 1, MG_ERR_RANGE = 2 };

/* ---- run time: instruction set, threads, build ------------------------- */

/*
 * Bits of mg_cpu_features(): the instruction sets the running CPU (and the
 * OS, which must save the wide registers) supports, among those minigrad
 * has code paths for.
 */
enum mg_cpu_feature {
    MG_CPU_AVX2 = 1,
    MG_CPU_FMA = 2,
    MG_CPU_AVX512F = 4,
    MG_CPU_AVX512DQ = 8,
    MG_CPU_AVX512VL = 16,
    MG_CPU_AVX512BW = 32
};
unsigned mg_cpu_features(void);

/*
 * The code path the kernels take: 0 generic C, 1 AVX2+FMA, 2 AVX-512
 * (F, DQ, VL and BW). Chosen on first use from what the CPU supports; the
 * environment variable MINIGRAD_FORCE_ISA=generic|avx2|avx512 can lower it
 * (to test or compare the paths), never raise it above what the CPU has.
 * mg_simd_name() is the same level as "generic", "avx2" or "avx512".
 */
int mg_simd_level(void);
const char *mg_simd_name(void);

/*
 * Threads the kernels may use for large arrays (n < 1 counts as 1), from the
 * next kernel call on. Without OpenMP the kernels are single-threaded and
 * mg_get_num_threads() returns 1.
 */
void mg_set_num_threads(int n);
int mg_get_num_threads(void);
int mg_has_openmp(void);

/*
 * Threads back off while the machine is busy. When the workers of two
 * parallel regions in a row start more than 200 us after their region
 * began, their core was running another program, and the regions waited
 * for them. The kernels then run on the calling thread for a while: 50 ms,
 * doubled each time the regions after the pause find their workers late
 * again, up to 1 s; a worker that starts on time ends the doubling, and
 * mg_set_num_threads starts afresh. mg_thread_backoffs() counts the pauses
 * so far.
 */
unsigned long mg_thread_backoffs(void);

/* The compiler and flags the extension was built with (minigrad/_build.py
 * defines this function in the code it generates). */
const char *mg_build_flags(void);

/* ---- elementwise activations (csrc/activations.c) ----------------------- */
/*
 * Every kernel below is one pass: it reads each input element once and
 * writes each output element once. Formulas are PyTorch's; the backward
 * kernels take the incoming gradient gy and what the forward saved.
 */

/* relu: y = x < 0 ? 0 : x (NaN stays NaN); gx = y <= 0 ? 0 : gy, a select as
 * in PyTorch: an infinite gy at a unit that is off gives 0, not NaN, and a
 * NaN unit passes gy on. */
int mg_relu_forward_f32(size_t n, float *y, const float *x);
int mg_relu_backward_f32(size_t n, float *gx, const float *gy, const float *y);
int mg_relu_forward_f64(size_t n, double *y, const double *x);
int mg_relu_backward_f64(size_t n, double *gx, const double *gy, const double *y);

/* leaky relu: y = x > 0 ? x : slope * x; gx = x > 0 ? gy : slope * gy. */
int mg_leaky_relu_forward_f32(size_t n, float *y, const float *x, float slope);
int mg_leaky_relu_backward_f32(size_t n, float *gx, const float *gy, const float *x, float slope);
int mg_leaky_relu_forward_f64(size_t n, double *y, const double *x, double slope);
int mg_leaky_relu_backward_f64(size_t n, double *gx, const double *gy, const double *x,
                               double slope);

/*
 * sigmoid: y = 1 / (1 + exp(-x)) computed from e = exp(-|x|), so exp never
 * overflows: y = 1 / (1 + e) for x >= 0 and e / (1 + e) below; exactly 0 and
 * 1 at -inf and +inf. gx = gy * y * (1 - y).
 */
int mg_sigmoid_forward_f32(size_t n, float *y, const float *x);
int mg_sigmoid_backward_f32(size_t n, float *gx, const float *gy, const float *y);
int mg_sigmoid_forward_f64(size_t n, double *y, const double *x);
int mg_sigmoid_backward_f64(size_t n, double *gx, const double *gy, const double *y);

/* tanh: y = tanh(x); gx = gy * (1 - y * y). */
int mg_tanh_forward_f32(size_t n, float *y, const float *x);
int mg_tanh_backward_f32(size_t n, float *gx, const float *gy, const float *y);
int mg_tanh_forward_f64(size_t n, double *y, const double *x);
int mg_tanh_backward_f64(size_t n, double *gx, const double *gy, const double *y);

/*
 * gelu, approximate == 0 (exact): y = x * Phi(x) with the normal CDF
 * Phi(x) = erfc(-x / sqrt(2)) / 2, which unlike (1 + erf(..)) / 2 keeps its
 * relative accuracy for x << 0; gx = gy * (Phi(x) + x * exp(-x^2 / 2) / sqrt(2 pi)).
 * Evaluated in double for both types (float rounds once at the end).
 * approximate == 1 (tanh form): with u = sqrt(2 / pi) * (x + 0.044715 x^3)
 * and t = tanh(u), y = x / 2 * (1 + t);
 * gx = gy * ((1 + t) / 2 + x / 2 * (1 - t^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2)).
 * Both forms give the limits at infinity where the formulas would make
 * inf * 0: gelu(-inf) = 0, gelu(inf) = inf, gelu'(-inf) = 0, gelu'(inf) = 1.
 */
int mg_gelu_forward_f32(size_t n, float *y, const float *x, int approximate);
int mg_gelu_backward_f32(size_t n, float *gx, const float *gy, const float *x, int approximate);
int mg_gelu_forward_f64(size_t n, double *y, const double *x, int approximate);
int mg_gelu_backward_f64(size_t n, double *gx, const double *gy, const double *x,
                         int approximate);

/* ---- batch norm and layer norm (csrc/norm.c) ---------------------------- */
/*
 * Batch norm normalizes each column (channel) of x (n, c) over its n rows;
 * layer norm each row of x (r, d) over its d columns. All arrays are
 * row-major and contiguous; weight, bias (and running_mean, running_var) may
 * be NULL, which means no affine (no running statistics). The formulas and
 * edge cases (n or d == 0 gives mean 0 and variance 0; running statistics
 * are left alone for n == 0) are those of minigrad/backend/base.py.
 *
 * Training forward: y, and mean and invstd = 1 / sqrt(var + eps) (c each)
 * for the backward, from the biased variance; running_mean and running_var
 * are updated in place, r = (1 - momentum) r + momentum s in double and
 * rounded once, running_var taking the unbiased variance var * n / (n - 1).
 * Eval forward: y = (x - running_mean) / sqrt(running_var + eps) * w + b.
 * Backward: gx (n, c), and gweight, gbias (c) when weight is not NULL
 * (they are not touched otherwise).
 */
int mg_batch_norm_forward_train_f32(size_t n, size_t c, float *y, float *mean, float *invstd,
                                    const float *x, const float *weight, const float *bias,
                                    double eps, float *running_mean, float *running_var,
                                    double momentum);
int mg_batch_norm_forward_train_f64(size_t n, size_t c, double *y, double *mean, double *invstd,
                                    const double *x, const double *weight, const double *bias,
                                    double eps, double *running_mean, double *running_var,
                                    double momentum);
int mg_batch_norm_forward_eval_f32(size_t n, size_t c, float *y, const float *x,
                                   const float *running_mean, const float *running_var,
                                   const float *weight, const float *bias, double eps);
int mg_batch_norm_forward_eval_f64(size_t n, size_t c, double *y, const double *x,
                                   const double *running_mean, const double *running_var,
                                   const double *weight, const double *bias, double eps);
int mg_batch_norm_backward_f32(size_t n, size_t c, float *gx, float *gweight, float *gbias,
                               const float *gy, const float *x, const float *mean,
                               const float *invstd, const float *weight);
int mg_batch_norm_backward_f64(size_t n, size_t c, double *gx, double *gweight, double *gbias,
                               const double *gy, const double *x, const double *mean,
                               const double *invstd, const double *weight);

/* Layer norm: mean and invstd have r elements; gweight and gbias d, sums
 * over the rows, written when weight is not NULL. */
int mg_layer_norm_forward_f32(size_t r, size_t d, float *y, float *mean, float *invstd,
                              const float *x, const float *weight, const float *bias,
                              double eps);
int mg_layer_norm_forward_f64(size_t r, size_t d, double *y, double *mean, double *invstd,
                              const double *x, const double *weight, const double *bias,
                              double eps);
int mg_layer_norm_backward_f32(size_t r, size_t d, float *gx, float *gweight, float *gbias,
                               const float *gy, const float *x, const float *mean,
                               const float *invstd, const float *weight);
int mg_layer_norm_backward_f64(size_t r, size_t d, double *gx, double *gweight, double *gbias,
                               const double *gy, const double *x, const double *mean,
                               const double *invstd, const double *weight);

/* ---- gradient clipping (csrc/clip.c) ------------------------------------ */
/*
 * Over a list of `count` buffers, bufs[i] holding lens[i] elements, in one
 * call: *out = the sum of x * x (products and sums in double), and *out =
 * max |x| (0 for no elements; NaN if any element is NaN).
 * scale: x *= factor. clamp: x = min(max(x, lo), hi), NaN stays NaN and
 * lo > hi gives hi, as NumPy's clip. row_norms: out[i] = the L2 norm of row
 * i of x (r, k), accumulated in double.
 * adaptive_clip (AGC, timm's rule) on grad and param (r, k): a row i is
 * kept where ||g_i|| < max_norm = clipping * max(||w_i||, eps) and
 * otherwise, a NaN norm included, scaled by max_norm / max(||g_i||, 1e-6).
 */
int mg_sum_squares_f32(size_t count, double *out, const float *const *bufs, const size_t *lens);
int mg_sum_squares_f64(size_t count, double *out, const double *const *bufs, const size_t *lens);
int mg_max_abs_f32(size_t count, double *out, const float *const *bufs, const size_t *lens);
int mg_max_abs_f64(size_t count, double *out, const double *const *bufs, const size_t *lens);
int mg_scale_f32(size_t n, float *x, float factor);
int mg_scale_f64(size_t n, double *x, double factor);
int mg_clamp_f32(size_t n, float *x, float lo, float hi);
int mg_clamp_f64(size_t n, double *x, double lo, double hi);
int mg_row_norms_f32(size_t r, size_t k, float *out, const float *x);
int mg_row_norms_f64(size_t r, size_t k, double *out, const double *x);
int mg_adaptive_clip_f32(size_t r, size_t k, float *grad, const float *param, double clipping,
                         double eps);
int mg_adaptive_clip_f64(size_t r, size_t k, double *grad, const double *param,
                         double clipping, double eps);

/* ---- optimizer updates (csrc/optim.c) ----------------------------------- */
/*
 * PyTorch's SGD and Adam/AdamW on one parameter of n elements, in place on
 * param and the state, grad never written; the formulas are those of
 * minigrad/backend/base.py. momentum_buffer is not used (and may be NULL)
 * when momentum is 0; first_step fills it with the step's direction. step
 * is Adam's 1-based step count; decoupled selects AdamW.
 *
 * The _multi kernels update `count` parameters with shared hyperparameters
 * (an optimizer's group) in one call: tensor i is params[i] and its state,
 * lens[i] elements each, with its own first_steps[i] (nonzero: the first
 * step; the array may be NULL for none) or Adam step count steps[i]. Each
 * tensor gets the very bits the single-parameter kernel gives it; the
 * threads split the elements of all the tensors together. momentum_buffers
 * may be NULL when momentum is 0. No two tensors may overlap.
 */
int mg_sgd_step_f32(size_t n, float *param, float *momentum_buffer, const float *grad,
                    double lr, double momentum, double dampening, double weight_decay,
                    int nesterov, int first_step);
int mg_sgd_step_f64(size_t n, double *param, double *momentum_buffer, const double *grad,
                    double lr, double momentum, double dampening, double weight_decay,
                    int nesterov, int first_step);
int mg_adam_step_f32(size_t n, float *param, float *exp_avg, float *exp_avg_sq,
                     const float *grad, long long step, double lr, double beta1, double beta2,
                     double eps, double weight_decay, int decoupled);
int mg_adam_step_f64(size_t n, double *param, double *exp_avg, double *exp_avg_sq,
                     const double *grad, long long step, double lr, double beta1, double beta2,
                     double eps, double weight_decay, int decoupled);
int mg_sgd_step_multi_f32(size_t count, float *const *params, float *const *momentum_buffers,
                          const float *const *grads, const size_t *lens, const int *first_steps,
                          double lr, double momentum, double dampening, double weight_decay,
                          int nesterov);
int mg_sgd_step_multi_f64(size_t count, double *const *params, double *const *momentum_buffers,
                          const double *const *grads, const size_t *lens, const int *first_steps,
                          double lr, double momentum, double dampening, double weight_decay,
                          int nesterov);
int mg_adam_step_multi_f32(size_t count, float *const *params, float *const *exp_avgs,
                           float *const *exp_avg_sqs, const float *const *grads,
                           const size_t *lens, const long long *steps, double lr, double beta1,
                           double beta2, double eps, double weight_decay, int decoupled);
int mg_adam_step_multi_f64(size_t count, double *const *params, double *const *exp_avgs,
                           double *const *exp_avg_sqs, const double *const *grads,
                           const size_t *lens, const long long *steps, double lr, double beta1,
                           double beta2, double eps, double weight_decay, int decoupled);

/* ---- tensor statistics (csrc/stats.c) ----------------------------------- */
/*
 * One pass over n elements. count is n; sum, sumsq (in double), max_abs,
 * n_zero and n_above (|x - center| > threshold, in double) see the finite
 * elements only; n_nan and n_inf count the others.
 */
typedef struct {
    unsigned long long count;
    double sum;
    double sumsq;
    double max_abs;
    unsigned long long n_zero;
    unsigned long long n_above;
    unsigned long long n_nan;
    unsigned long long n_inf;
} mg_tensor_stats;
int mg_tensor_stats_f32(size_t n, mg_tensor_stats *out, const float *x, double threshold,
                        double center);
int mg_tensor_stats_f64(size_t n, mg_tensor_stats *out, const double *x, double threshold,
                        double center);

/*
 * The summary of x seen as r rows of c units (a batch of r samples), and
 * *n_dead = the units that are zero in every row (a NaN is not zero; no
 * unit is dead when r or c is 0).
 */
int mg_unit_stats_f32(size_t r, size_t c, mg_tensor_stats *out, unsigned long long *n_dead,
                      const float *x, double threshold, double center);
int mg_unit_stats_f64(size_t r, size_t c, mg_tensor_stats *out, unsigned long long *n_dead,
                      const double *x, double threshold, double center);

/*
 * unit_stats over a list of `count` buffers in one call: out[i] and
 * n_dead[i] are what mg_unit_stats gives for bufs[i] seen as lens[i] /
 * units[i] rows of units[i] units, with thresholds[i] and centers[i].
 * bufs[i] may be NULL when lens[i] is 0; units[i] divides lens[i] and is 0
 * only when lens[i] is (MG_ERR_RANGE otherwise, before anything is read).
 */
int mg_unit_stats_multi_f32(size_t count, mg_tensor_stats *out, unsigned long long *n_dead,
                            const float *const *bufs, const size_t *lens, const size_t *units,
                            const double *thresholds, const double *centers);
int mg_unit_stats_multi_f64(size_t count, mg_tensor_stats *out, unsigned long long *n_dead,
                            const double *const *bufs, const size_t *lens, const size_t *units,
                            const double *thresholds, const double *centers);

/*
 * Over a list of `count` buffers, bufs[i] holding lens[i] elements (it may
 * be NULL when lens[i] is 0), in one call:
 *
 * histogram_stats: out[i] = the summary of bufs[i] (no threshold: n_above
 * is 0), and hist[i * bins + j] = the finite elements in bin j of `bins`
 * equal bins over [-b, b], b = out[i].max_abs (1 if that is 0). The bin of
 * x is floor(x / b * (bins / 2.0) + bins / 2.0), computed in double,
 * clamped to [0, bins - 1]. 1 <= bins <= MG_MAX_BINS.
 *
 * change_stats: when sums is not NULL, sums[2 i] and sums[2 i + 1] = the sum
 * and the sum of squares of bufs[i]; when change is not NULL, change[2 i]
 * and change[2 i + 1] = the same of bufs[i] minus its part of snapshot,
 * each difference taken in double (exact for float); all in double, every
 * element included (a NaN makes them NaN). Then, when copy is nonzero, the
 * buffers are copied into snapshot. snapshot holds the buffers one after
 * another (the sum of lens elements); it may be NULL when neither change
 * nor copy is asked for.
 */
enum mg_stats_limits { MG_MAX_BINS = 64 };
int mg_histogram_stats_f32(size_t count, mg_tensor_stats *out, unsigned long long *hist,
                           size_t bins, const float *const *bufs, const size_t *lens);
int mg_histogram_stats_f64(size_t count, mg_tensor_stats *out, unsigned long long *hist,
                           size_t bins, const double *const *bufs, const size_t *lens);
int mg_change_stats_f32(size_t count, double *sums, double *change, float *snapshot,
                        const float *const *bufs, const size_t *lens, int copy);
int mg_change_stats_f64(size_t count, double *sums, double *change, double *snapshot,
                        const double *const *bufs, const size_t *lens, int copy);

/*
 * A monitored training step's three calls in one: histogram_stats of the
 * n_grads gradients, unit_stats_multi of the n_outputs layer outputs and
 * change_stats of the n_weights weights, each with the arguments of its own
 * kernel above and giving the very bits it gives. n_weights == 0 skips the
 * weights (sums, change, snapshot, weights and weight_lens may then be
 * NULL); the other two always run. With two threads available and every
 * tensor too small for a kernel to thread it alone (64K elements),
 * histogram_stats runs on one thread while unit_stats_multi and then
 * change_stats run on the other; otherwise the three run in that order. No
 * array one of them writes may overlap one the others read. All three run
 * whatever the others return; the result is the first nonzero status of
 * histogram_stats, unit_stats_multi, change_stats, in that order.
 */
int mg_monitor_stats_f32(size_t n_grads, mg_tensor_stats *grad_out, unsigned long long *hist,
                         size_t bins, const float *const *grads, const size_t *grad_lens,
                         size_t n_outputs, mg_tensor_stats *act_out, unsigned long long *n_dead,
                         const float *const *outputs, const size_t *output_lens,
                         const size_t *units, const double *thresholds, const double *centers,
                         size_t n_weights, double *sums, double *change, float *snapshot,
                         const float *const *weights, const size_t *weight_lens, int copy);
int mg_monitor_stats_f64(size_t n_grads, mg_tensor_stats *grad_out, unsigned long long *hist,
                         size_t bins, const double *const *grads, const size_t *grad_lens,
                         size_t n_outputs, mg_tensor_stats *act_out, unsigned long long *n_dead,
                         const double *const *outputs, const size_t *output_lens,
                         const size_t *units, const double *thresholds, const double *centers,
                         size_t n_weights, double *sums, double *change, double *snapshot,
                         const double *const *weights, const size_t *weight_lens, int copy);

/* ---- matrix product (csrc/gemm.c) --------------------------------------- */
/*
 * c = alpha * op(a) * op(b) + beta * c, then + bias[j] on every row when
 * bias is not NULL. Row-major: op(a) is m x k, op(b) is k x n, c is m x n;
 * op(x) is x transposed when trans_x is nonzero, and a row of the matrix as
 * stored is lda (ldb, ldc) elements after the previous one. As in BLAS,
 * beta == 0 means c is not read (it may hold NaN), and with alpha == 0 or
 * k == 0 neither a nor b is read. c must not overlap a, b or bias. Returns 1
 * if the packing workspace cannot be allocated, else 0.
 */
int mg_gemm_f32(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc, const float *bias);
int mg_gemm_f64(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
                const double *a, size_t lda, const double *b, size_t ldb, double beta, double *c,
                size_t ldc, const double *bias);

/* The register tile and cache blocking the running code path uses, into
 * out[0..4]: MR, NR, MC, KC, NC (for tests that aim at the tile edges). */
int mg_gemm_blocking_f32(size_t *out);
int mg_gemm_blocking_f64(size_t *out);

#endif /* MINIGRAD_H */
