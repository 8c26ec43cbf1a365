/*
 * activations.c - elementwise activations, forward and backward, float and
 * double, each one pass over the data (see minigrad.h for the formulas).
 *
 * How the file is put together, bottom-up:
 *
 * 1. The math of one element, as small inline functions of a scalar
 *    (relu_f32(x), gelu_erf_grad_f64(x), ...).
 * 2. Loops that apply one of them to n contiguous elements. Each loop is
 *    written once and compiled three times: plain C (the reference for the
 *    others and the path on any CPU), and with the target attribute for
 *    AVX2+FMA and for AVX-512, so GCC auto-vectorizes each copy for its
 *    instruction set. No -ffast-math: results are bit-identical across the
 *    three, because vector IEEE add/mul/div/compare round exactly like the
 *    scalar ones, and in ISO C mode (-std=c11) GCC does not fuse a*b+c into
 *    an FMA behind our back. The exp-based forms (sigmoid, tanh, the tanh
 *    GELU, the float exact GELU) ask for FMA where the copy has it
 *    (MG_FMA_##ISA, see vmath.h; the float exact GELU then also forms its
 *    correction 1 - (u + 4) r in float by two-sum and FMA, not in double):
 *    the AVX2 and AVX-512 copies agree to the bit, and the generic copy to
 *    within the accuracy stated below. A call into libm cannot be
 *    vectorized, so sigmoid, tanh and both forms of GELU use the exp, tanh
 *    and erfcx of vmath.h, plain arithmetic that vectorizes like the rest.
 * 3. A table per element type with one row of loop pointers per
 *    instruction set, indexed by mg_simd_level() (chosen once at run time).
 * 4. The public kernels: pick the row, split large arrays across OpenMP
 *    threads, and run the loop on each thread's share.
 *
 * Steps 1, 2 and 4 are macros taking the element type T and its suffix S
 * (f32 or f64), so float and double share one text. The macros define
 * functions only; every variable is declared in plain sight inside them.
 */
#include <math.h>
#include <stddef.h>

#include "kernel_common.h"
#include "vmath.h"

/* ---- 1. the math of one element ----------------------------------------- */

/* The constants as double literals; (T) rounds them once for float. */
#define MG_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2) */
#define MG_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define MG_SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define MG_GELU_KAPPA 0.044715

/*
 * Exact GELU: with the tail mass T = Phi(-|x|) = erfc(|x| / sqrt(2)) / 2,
 * Phi(x) = T for x < 0 and 1 - T above, and T = g h with the Gaussian
 * g = exp(-x^2 / 2) and h = erfcx(|x| / sqrt(2)) / 2 (vmath.h). g is formed
 * from x itself with x^2 exact, so the steep factor sees no rounded
 * argument; rounding |x| / sqrt(2) changes h by at most about an ulp (the
 * far-tail trap of computing erfc(-x / sqrt(2)) directly, where that
 * rounding costs about x^2 ulp, does not arise). Then
 *
 *   x < 0:  gelu = x h g,   gelu' = T + x phi = (h + x / sqrt(2 pi)) g
 *   x >= 0: gelu = x (1 - h g),   gelu' = 1 + (x / sqrt(2 pi) - h) g
 *
 * Both sides are computed and one is selected: no branch, no libm call, so
 * the loops vectorize. g is kept scaled (by 2^600 in double, 2^64 in float)
 * until the last multiply, so a result in the subnormal range (x < -37.6 in
 * double, x < -13.2 in float) is rounded once. The double kernels do all
 * this in double, the float kernels in float (vmath.h's float Gaussian and
 * tail ratio, with the few steps that need more than float's rounding
 * carried as exact sums): a vector holds 16 float lanes under AVX-512, not
 * 8, and the float polynomial is of degree 9, not 22.
 *
 * Accuracy, checked by tests/test_kernels_activations.py on every code path
 * against mpmath over a dense grid of [-40, 10], denser ones of [-15, 15]
 * and [-14.6, -9] for float, random points and bit patterns, every binary
 * exponent and the special values: relative error below 1e-6 for float
 * (measured 3.6e-7 forward, 3.2e-7 backward) and 1e-13 for double
 * (measured 8.0e-16 forward, 7.1e-16 backward), the backward's relative to
 * the size of its two terms, |Phi| + |x phi|. The float forward is within
 * 6 ulp of the double kernel's result rounded to float (on [-20, 20], a
 * grid of 400,001 points and 8 million random ones; the tests hold it to
 * 6). Where the result is subnormal the absolute error is at most 0.5
 * subnormal ulp, except just below the smallest normal number, where the
 * few-ulp error of the normal range is still worth about one subnormal ulp
 * (measured 1.4 forward and 1.4 backward in float, 1.3 in double); then
 * -0.0, never NaN. Limits: gelu(-inf) = 0, gelu(inf) = inf, gelu'(-inf) = 0,
 * gelu'(inf) = 1; gelu(-0) = -0; NaN gives NaN.
 */

/* Beyond |x| = 39, Phi(x) is exactly 0 or 1 in double and exp(-x^2 / 2)
 * exactly 0, so evaluating them at the clamped x changes no result, keeps
 * erfcx's argument (27.6 at most) inside its fitted range and keeps
 * x = +-inf from turning into inf * 0 = NaN: the kernels give the limits,
 * gelu(-inf) = 0 and gelu'(-inf) = 0, gelu'(+inf) = 1. NaN passes through. */
static inline double gelu_erf_clamp(double x)
{
    return x < -39.0 ? -39.0 : (x > 39.0 ? 39.0 : x);
}

/* erfcx(|x| / sqrt(2)) / 2, the tail mass Phi(-|x|) over exp(-x^2 / 2). */
static inline double gelu_erf_tail_ratio(double xc)
{
    return 0.5 * mg_erfcx_f64(fabs(xc) * MG_SQRT1_2);
}

static inline double gelu_erf_double(double x, int fused)
{
    (void)fused; /* unfused: the double path's error bounds were measured so */
    double xc = gelu_erf_clamp(x);
    double big_g = mg_gauss_scaled_f64(xc);
    double tail = gelu_erf_tail_ratio(xc) * big_g; /* Phi(-|x|) * 2^600 */
    /* x itself where Phi is exactly 1, so that gelu(+inf) = inf; below -39,
     * xc times a vanishing tail gives -0 where x = -inf would make NaN. */
    double xs = x < -39.0 ? xc : x;
    double neg = xs * tail * MG_EXP_F64_UNSCALE;
    double pos = xs * (1.0 - tail * MG_EXP_F64_UNSCALE);

    return x < 0 ? neg : pos;
}

/* gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). For
 * x < 0 the two terms cancel near x = -0.75, the derivative's zero. */
static inline double gelu_erf_slope_double(double x, int fused)
{
    (void)fused;
    double xc = gelu_erf_clamp(x);
    double big_g = mg_gauss_scaled_f64(xc);
    double h = gelu_erf_tail_ratio(xc);
    double q = xc * MG_INV_SQRT_2PI;
    double neg = (h + q) * big_g * MG_EXP_F64_UNSCALE;
    double pos = 1.0 + (q - h) * big_g * MG_EXP_F64_UNSCALE;

    return x < 0 ? neg : pos;
}

/* The same in float for float input. Beyond |x| = 15 the float results
 * are exactly the limits: gelu and gelu' are -0 below (they round to 0
 * from x = -14.36 and -14.54 on), and above, where Phi's tail is under
 * 1e-50, gelu = x and gelu' = 1. So the clamp at +-15 changes no result
 * and keeps the tail ratio inside its fitted range. The forward folds the
 * low part of g in last. */
#define MG_GELU_F32_LIMIT 15.0f

static inline float gelu_erf_float_clamp(float x)
{
    return x < -MG_GELU_F32_LIMIT ? -MG_GELU_F32_LIMIT
                                  : (x > MG_GELU_F32_LIMIT ? MG_GELU_F32_LIMIT : x);
}

static inline float gelu_erf_float(float x, int fused)
{
    float xc = gelu_erf_float_clamp(x);
    mg_sum_f32 big_g = mg_gauss_scaled_f32(xc, fused);
    float h = mg_gauss_tail_ratio_f32(fabsf(xc), fused);
    /* Phi(-|x|) * 2^64. big_g.hi is a power of 2, so h * big_g.hi is
     * exact: only h * big_g.lo (under half the sum) and the addition round. */
    float tail = mg_madd_f32(h, big_g.hi, h * big_g.lo, fused);
    float xs = x < -MG_GELU_F32_LIMIT ? xc : x;
    float neg = xs * tail * MG_EXP_F32_UNSCALE;
    float pos = xs * (1.0f - tail * MG_EXP_F32_UNSCALE);

    return x < 0 ? neg : pos;
}

static inline float gelu_erf_slope_float(float x, int fused)
{
    float xc = gelu_erf_float_clamp(x);
    mg_sum_f32 g_parts = mg_gauss_scaled_f32(xc, fused);
    float h = mg_gauss_tail_ratio_f32(fabsf(xc), fused);
    float big_g = g_parts.hi + g_parts.lo;
    float q = xc * (float)MG_INV_SQRT_2PI;
    float neg = (h + q) * big_g * MG_EXP_F32_UNSCALE;
    float pos = mg_madd_f32((q - h) * big_g, MG_EXP_F32_UNSCALE, 1.0f, fused);

    return x < 0 ? neg : pos;
}

/* The tanh form is PyTorch's formula in the element type itself, with one
 * rearrangement: (1 + tanh(u)) / 2 = sigmoid(2u), evaluated as the sigmoid
 * below, so the left tail keeps its relative accuracy where 1 + tanh(u)
 * cancels. For |x| > 1e4, sigmoid(2u) is exactly 0 or 1, so clamping x there
 * changes no finite result and keeps x = +-inf from making inf * 0. */
#define MG_GELU_TANH_LIMIT 1e4

/*
 * Accuracy of sigmoid, tanh and the tanh-form GELU (the exp and tanh of
 * vmath.h), checked by tests/test_kernels_activations.py on every code path
 * over a sweep of the whole range (every exponent, several mantissas, both
 * signs, a dense sweep where the functions bend, and the special values)
 * against a float64 (for float) or long double (for double) reference:
 *
 * - sigmoid, tanh: relative error below 1e-6 for float (measured 1.7e-7)
 *   and 1e-13 for double (measured 3.4e-16) wherever the result is normal;
 *   where sigmoid's result is subnormal (x < -87.3 in float, x < -708.4 in
 *   double) the absolute error is at most one subnormal ulp, 2^-149 or
 *   2^-1074 (measured 0.74 ulp). Exact limits: sigmoid(-inf) = 0,
 *   sigmoid(inf) = 1, tanh(+-inf) = +-1, tanh(x) = x for tiny x and
 *   tanh(-0) = -0. NaN gives NaN; nothing overflows for any x.
 * - GELU, tanh form: the same bounds (measured 2.1e-7 and 4.1e-16 forward,
 *   2.6e-7 and 5.4e-16 backward) with respect to the formula evaluated at u
 *   and u' as rounded in the element type, the backward's error relative to
 *   the size of its two terms, s and 2 x s (1 - s) u', which cancel near
 *   x = -0.75; below one subnormal ulp where the result is subnormal. The
 *   rounding of u itself, a few ulp, is amplified by up to 2 |u| in the left
 *   tail (y ~ x e^{2u}): up to 1.3e-5 (float) and 1.5e-13 (double) against
 *   the formula in exact arithmetic, the formula's own conditioning for any
 *   evaluation in the element type (PyTorch's cancels far worse there).
 */
#define DEFINE_ELEMENT_MATH(T, S, EXP_NONPOS, EXP_NONPOS_SCALED, UNSCALE, TANH,          \
                            GELU_ERF, GELU_ERF_SLOPE)                                    \
    /* x < 0 rather than x > 0 so that NaN, failing the test, passes through. */         \
    static inline T relu_##S(T x)                                                        \
    {                                                                                    \
        return x < 0 ? (T)0 : x;                                                         \
    }                                                                                    \
    /* A select, not gy * (y > 0): an infinite gy where the unit is off gives */         \
    /* 0, not NaN. Testing y <= 0, as PyTorch does, lets a NaN unit pass gy. */          \
    static inline T relu_grad_##S(T gy, T y)                                             \
    {                                                                                    \
        return y <= 0 ? (T)0 : gy;                                                       \
    }                                                                                    \
    static inline T leaky_relu_##S(T x, T slope)                                         \
    {                                                                                    \
        return x > 0 ? x : slope * x;                                                    \
    }                                                                                    \
    static inline T leaky_relu_grad_##S(T gy, T x, T slope)                              \
    {                                                                                    \
        return x > 0 ? gy : slope * gy;                                                  \
    }                                                                                    \
    /* e = exp(-|x|) is at most 1: 1 / (1 + exp(-x)) would overflow exp for */           \
    /* x < -88 in float and flush sigmoid's tiny values to 0; e / (1 + e) */             \
    /* keeps them to full relative precision. NaN fails x >= 0 and passes. */            \
    static inline T sigmoid_##S(T x, int fused)                                          \
    {                                                                                    \
        T e = EXP_NONPOS(x >= 0 ? -x : x, fused);                                        \
        return (x >= 0 ? (T)1 : e) / ((T)1 + e);                                         \
    }                                                                                    \
    static inline T sigmoid_grad_##S(T gy, T y)                                          \
    {                                                                                    \
        return ((T)1 - y) * y * gy;                                                      \
    }                                                                                    \
    static inline T tanh_##S(T x, int fused)                                             \
    {                                                                                    \
        return TANH(x, fused);                                                           \
    }                                                                                    \
    static inline T tanh_grad_##S(T gy, T y)                                             \
    {                                                                                    \
        return ((T)1 - y * y) * gy;                                                      \
    }                                                                                    \
    static inline T gelu_erf_##S(T x, int fused)                                         \
    {                                                                                    \
        return (T)GELU_ERF(x, fused);                                                    \
    }                                                                                    \
    static inline T gelu_erf_grad_##S(T gy, T x, int fused)                              \
    {                                                                                    \
        return (T)(GELU_ERF_SLOPE(x, fused) * gy);                                       \
    }                                                                                    \
    /* y = x (1 + tanh u) / 2 = x s with s = sigmoid(2u): with e = exp(-2|u|) */         \
    /* and w = 1 / (1 + e), s = w for u >= 0 and e w below. There e is */                \
    /* kept scaled, E = e / UNSCALE, until the last multiply, so a tiny */               \
    /* result is rounded once and not via a subnormal e. */                              \
    static inline T gelu_tanh_##S(T x, int fused)                                        \
    {                                                                                    \
        T xc = x < (T)-MG_GELU_TANH_LIMIT ? (T)-MG_GELU_TANH_LIMIT : x;                  \
        T u = (T)MG_SQRT_2_PI * (xc + (T)MG_GELU_KAPPA * (xc * xc * xc));                \
        T big_e = EXP_NONPOS_SCALED((u >= 0 ? -u : u) * (T)2, fused);                    \
        T w = (T)1 / ((T)1 + big_e * UNSCALE);                                           \
        return u >= 0 ? xc * w : xc * w * big_e * UNSCALE;                               \
    }                                                                                    \
    /* PyTorch's (1 + t) / 2 + x / 2 (1 - t^2) u' with t = tanh(u) is, in */             \
    /* terms of s = sigmoid(2u), s + 2 x s (1 - s) u', free of the */                    \
    /* cancellation in 1 - t^2 near |t| = 1. For u >= 0, s = w and */                    \
    /* s (1 - s) = e w^2; below, s = e w and the sum is e w (1 + 2 x w u'), */           \
    /* unscaled last as in the forward. */                                               \
    static inline T gelu_tanh_grad_##S(T gy, T x, int fused)                             \
    {                                                                                    \
        T lim = (T)MG_GELU_TANH_LIMIT;                                                   \
        T xc = x < -lim ? -lim : (x > lim ? lim : x);                                    \
        T u = (T)MG_SQRT_2_PI * (xc + (T)MG_GELU_KAPPA * (xc * xc * xc));                \
        T du = (T)MG_SQRT_2_PI * ((T)1 + (T)(3 * MG_GELU_KAPPA) * (xc * xc));            \
        T big_e = EXP_NONPOS_SCALED((u >= 0 ? -u : u) * (T)2, fused);                    \
        T e = big_e * UNSCALE;                                                           \
        T w = (T)1 / ((T)1 + e);                                                         \
        T pos = w + (T)2 * xc * (e * w * w) * du;                                        \
        T neg = big_e * w * ((T)1 + (T)2 * xc * w * du) * UNSCALE;                       \
        return (u >= 0 ? pos : neg) * gy;                                                \
    }

DEFINE_ELEMENT_MATH(float, f32, mg_exp_nonpos_f32, mg_exp_nonpos_scaled_f32,
                    MG_EXP_F32_UNSCALE, mg_tanh_f32, gelu_erf_float,
                    gelu_erf_slope_float)
DEFINE_ELEMENT_MATH(double, f64, mg_exp_nonpos_f64, mg_exp_nonpos_scaled_f64,
                    MG_EXP_F64_UNSCALE, mg_tanh_f64, gelu_erf_double,
                    gelu_erf_slope_double)

/* ---- 2. loops over n elements, one copy per instruction set -------------- */

/* Loop signatures, named so the tables below can hold them. */
#define DEFINE_LOOP_TYPES(T, S)                                                          \
    typedef void unary_loop_##S(size_t n, T *restrict y, const T *restrict x);           \
    typedef void unary_param_loop_##S(size_t n, T *restrict y, const T *restrict x,      \
                                      T param);                                          \
    typedef void unary_flag_loop_##S(size_t n, T *restrict y, const T *restrict x,       \
                                     int flag);                                          \
    typedef void binary_loop_##S(size_t n, T *restrict gx, const T *restrict gy,         \
                                 const T *restrict s);                                   \
    typedef void binary_param_loop_##S(size_t n, T *restrict gx, const T *restrict gy,   \
                                       const T *restrict s, T param);                    \
    typedef void binary_flag_loop_##S(size_t n, T *restrict gx, const T *restrict gy,    \
                                      const T *restrict s, int flag);

DEFINE_LOOP_TYPES(float, f32)
DEFINE_LOOP_TYPES(double, f64)

/* TARGET is the attribute that picks the instruction set (empty for the
 * generic copy). The element functions above have no attribute, so GCC may
 * inline them into every copy (their instruction set is a subset). */
#define DEFINE_LOOPS(T, S, ISA, TARGET)                                                  \
    TARGET static void relu_forward_##S##_##ISA(size_t n, T *restrict y,                 \
                                                const T *restrict x)                     \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            y[i] = relu_##S(x[i]);                                                       \
    }                                                                                    \
    TARGET static void relu_backward_##S##_##ISA(size_t n, T *restrict gx,               \
                                                 const T *restrict gy,                   \
                                                 const T *restrict y)                    \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            gx[i] = relu_grad_##S(gy[i], y[i]);                                          \
    }                                                                                    \
    TARGET static void leaky_relu_forward_##S##_##ISA(size_t n, T *restrict y,           \
                                                      const T *restrict x, T slope)      \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            y[i] = leaky_relu_##S(x[i], slope);                                          \
    }                                                                                    \
    TARGET static void leaky_relu_backward_##S##_##ISA(                                  \
        size_t n, T *restrict gx, const T *restrict gy, const T *restrict x, T slope)    \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            gx[i] = leaky_relu_grad_##S(gy[i], x[i], slope);                             \
    }                                                                                    \
    TARGET static void sigmoid_forward_##S##_##ISA(size_t n, T *restrict y,              \
                                                   const T *restrict x)                  \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            y[i] = sigmoid_##S(x[i], MG_FMA_##ISA);                                      \
    }                                                                                    \
    TARGET static void sigmoid_backward_##S##_##ISA(size_t n, T *restrict gx,            \
                                                    const T *restrict gy,                \
                                                    const T *restrict y)                 \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            gx[i] = sigmoid_grad_##S(gy[i], y[i]);                                       \
    }                                                                                    \
    TARGET static void tanh_forward_##S##_##ISA(size_t n, T *restrict y,                 \
                                                const T *restrict x)                     \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            y[i] = tanh_##S(x[i], MG_FMA_##ISA);                                         \
    }                                                                                    \
    TARGET static void tanh_backward_##S##_##ISA(size_t n, T *restrict gx,               \
                                                 const T *restrict gy,                   \
                                                 const T *restrict y)                    \
    {                                                                                    \
        for (size_t i = 0; i < n; i++)                                                   \
            gx[i] = tanh_grad_##S(gy[i], y[i]);                                          \
    }                                                                                    \
    /* The form is chosen once, outside the loop, so each loop stays a */                \
    /* straight run of one formula. */                                                   \
    TARGET static void gelu_forward_##S##_##ISA(size_t n, T *restrict y,                 \
                                                const T *restrict x, int approximate)    \
    {                                                                                    \
        if (approximate) {                                                               \
            for (size_t i = 0; i < n; i++)                                               \
                y[i] = gelu_tanh_##S(x[i], MG_FMA_##ISA);                                \
        } else {                                                                         \
            for (size_t i = 0; i < n; i++)                                               \
                y[i] = gelu_erf_##S(x[i], MG_FMA_##ISA);                                 \
        }                                                                                \
    }                                                                                    \
    TARGET static void gelu_backward_##S##_##ISA(                                        \
        size_t n, T *restrict gx, const T *restrict gy, const T *restrict x,             \
        int approximate)                                                                 \
    {                                                                                    \
        if (approximate) {                                                               \
            for (size_t i = 0; i < n; i++)                                               \
                gx[i] = gelu_tanh_grad_##S(gy[i], x[i], MG_FMA_##ISA);                   \
        } else {                                                                         \
            for (size_t i = 0; i < n; i++)                                               \
                gx[i] = gelu_erf_grad_##S(gy[i], x[i], MG_FMA_##ISA);                    \
        }                                                                                \
    }

DEFINE_LOOPS(float, f32, generic, MG_NO_TARGET)
DEFINE_LOOPS(double, f64, generic, MG_NO_TARGET)
#if MG_X86_PATHS
DEFINE_LOOPS(float, f32, avx2, MG_TARGET_AVX2)
DEFINE_LOOPS(double, f64, avx2, MG_TARGET_AVX2)
DEFINE_LOOPS(float, f32, avx512, MG_TARGET_AVX512)
DEFINE_LOOPS(double, f64, avx512, MG_TARGET_AVX512)
#endif

/* ---- 3. one row of loops per instruction set ---------------------------- */

#define DEFINE_LOOP_TABLE_TYPE(S)                                                        \
    typedef struct {                                                                     \
        unary_loop_##S *relu_forward;                                                    \
        binary_loop_##S *relu_backward;                                                  \
        unary_param_loop_##S *leaky_relu_forward;                                        \
        binary_param_loop_##S *leaky_relu_backward;                                      \
        unary_loop_##S *sigmoid_forward;                                                 \
        binary_loop_##S *sigmoid_backward;                                               \
        unary_loop_##S *tanh_forward;                                                    \
        binary_loop_##S *tanh_backward;                                                  \
        unary_flag_loop_##S *gelu_forward;                                               \
        binary_flag_loop_##S *gelu_backward;                                             \
    } loop_table_##S;

DEFINE_LOOP_TABLE_TYPE(f32)
DEFINE_LOOP_TABLE_TYPE(f64)

#define LOOP_TABLE_ROW(S, ISA)                                                           \
    {                                                                                    \
        .relu_forward = relu_forward_##S##_##ISA,                                        \
        .relu_backward = relu_backward_##S##_##ISA,                                      \
        .leaky_relu_forward = leaky_relu_forward_##S##_##ISA,                            \
        .leaky_relu_backward = leaky_relu_backward_##S##_##ISA,                          \
        .sigmoid_forward = sigmoid_forward_##S##_##ISA,                                  \
        .sigmoid_backward = sigmoid_backward_##S##_##ISA,                                \
        .tanh_forward = tanh_forward_##S##_##ISA,                                        \
        .tanh_backward = tanh_backward_##S##_##ISA,                                      \
        .gelu_forward = gelu_forward_##S##_##ISA,                                        \
        .gelu_backward = gelu_backward_##S##_##ISA,                                      \
    }

/* Indexed by mg_simd_level(), which never exceeds what was compiled here. */
static const loop_table_f32 loops_f32[] = {
    LOOP_TABLE_ROW(f32, generic),
#if MG_X86_PATHS
    LOOP_TABLE_ROW(f32, avx2),
    LOOP_TABLE_ROW(f32, avx512),
#endif
};
static const loop_table_f64 loops_f64[] = {
    LOOP_TABLE_ROW(f64, generic),
#if MG_X86_PATHS
    LOOP_TABLE_ROW(f64, avx2),
    LOOP_TABLE_ROW(f64, avx512),
#endif
};

/* ---- 4. the public kernels ---------------------------------------------- */

/* Work per element, in passes of a memory-bound loop like relu's: a kernel
 * evaluating exp or erfc per element is worth threads at proportionally
 * smaller sizes (see MG_PARALLEL_MIN). Measured at 64K float32 elements on
 * one core of a Zen 5: relu forward 2.6 us, sigmoid and tanh about 17 us
 * (before their exp fused its multiply-adds), exact GELU about 110 us; on
 * the current test machine, where that GELU took 188 us, the float
 * kernels that now compute it in float take 0.36 of that
 * forward and 0.27 backward (measured side by side, 68 and 51 us against
 * 188). For the exact GELU, 16 puts the start at 4K elements, which is
 * still where two threads begin to pay for the float kernels: at 4K,
 * 5.7 us on one thread against 4.9 on two (forward) and 5.1 against 5.0
 * (backward); at 2K, 3.5 against 3.9 and 4.2. */
#define WORK_relu_forward 1
#define WORK_relu_backward 1
#define WORK_leaky_relu_forward 1
#define WORK_leaky_relu_backward 1
#define WORK_sigmoid_forward 4
#define WORK_sigmoid_backward 1
#define WORK_tanh_forward 4
#define WORK_tanh_backward 1
#define WORK_gelu_forward 16
#define WORK_gelu_backward 16

/* Each kernel reads its loop from the row for the running CPU and runs it
 * on the calling thread, or for large arrays on every thread of a parallel
 * region, each on its own share of the elements. One macro per kernel
 * signature: unary (y from x) or binary (gx from gy and a saved array), each
 * with or without one scalar parameter P of type PT. The bodies' trailing
 * __VA_ARGS__ is either empty or ", P" (an empty argument, then P), so the
 * loop call gains the scalar exactly when the kernel has one. */
#define UNARY_KERNEL_BODY(LOOP_TYPE, S, NAME, ...)                                       \
    {                                                                                    \
        LOOP_TYPE##_##S *loop = loops_##S[mg_simd_level()].NAME;                         \
        if (!mg_use_threads(n * WORK_##NAME)) {                                          \
            loop(n, y, x __VA_ARGS__);                                                   \
            return 0;                                                                    \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            loop(r.len, y + r.lo, x + r.lo __VA_ARGS__);                                 \
        }                                                                                \
        return 0;                                                                        \
    }

#define BINARY_KERNEL_BODY(LOOP_TYPE, S, NAME, ...)                                      \
    {                                                                                    \
        LOOP_TYPE##_##S *loop = loops_##S[mg_simd_level()].NAME;                         \
        if (!mg_use_threads(n * WORK_##NAME)) {                                          \
            loop(n, gx, gy, saved __VA_ARGS__);                                          \
            return 0;                                                                    \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            loop(r.len, gx + r.lo, gy + r.lo, saved + r.lo __VA_ARGS__);                 \
        }                                                                                \
        return 0;                                                                        \
    }

#define UNARY_KERNEL(T, S, NAME)                                                         \
    int mg_##NAME##_##S(size_t n, T *y, const T *x)                                      \
        UNARY_KERNEL_BODY(unary_loop, S, NAME, )
#define UNARY_KERNEL_WITH(T, S, NAME, LOOP_TYPE, PT, P)                                  \
    int mg_##NAME##_##S(size_t n, T *y, const T *x, PT P)                                \
        UNARY_KERNEL_BODY(LOOP_TYPE, S, NAME, , P)
#define BINARY_KERNEL(T, S, NAME)                                                        \
    int mg_##NAME##_##S(size_t n, T *gx, const T *gy, const T *saved)                    \
        BINARY_KERNEL_BODY(binary_loop, S, NAME, )
#define BINARY_KERNEL_WITH(T, S, NAME, LOOP_TYPE, PT, P)                                 \
    int mg_##NAME##_##S(size_t n, T *gx, const T *gy, const T *saved, PT P)              \
        BINARY_KERNEL_BODY(LOOP_TYPE, S, NAME, , P)

#define DEFINE_KERNELS(T, S)                                                             \
    UNARY_KERNEL(T, S, relu_forward)                                                     \
    BINARY_KERNEL(T, S, relu_backward)                                                   \
    UNARY_KERNEL_WITH(T, S, leaky_relu_forward, unary_param_loop, T, slope)              \
    BINARY_KERNEL_WITH(T, S, leaky_relu_backward, binary_param_loop, T, slope)           \
    UNARY_KERNEL(T, S, sigmoid_forward)                                                  \
    BINARY_KERNEL(T, S, sigmoid_backward)                                                \
    UNARY_KERNEL(T, S, tanh_forward)                                                     \
    BINARY_KERNEL(T, S, tanh_backward)                                                   \
    UNARY_KERNEL_WITH(T, S, gelu_forward, unary_flag_loop, int, approximate)             \
    BINARY_KERNEL_WITH(T, S, gelu_backward, binary_flag_loop, int, approximate)

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
