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
 * Every kernel returns an int status: 0 on success.
 */
#ifndef MINIGRAD_H
#define MINIGRAD_H

#include <stddef.h>

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
