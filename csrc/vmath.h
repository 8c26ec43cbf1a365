/*
 * vmath.h - exp and tanh for float and double, and for the exact GELU (at
 * the end) erfc's smooth factor and the Gaussian exp(-x^2 / 2), in double
 * and in float, written so that a loop calling them auto-vectorizes:
 * straight-line arithmetic, selects instead of branches, integer bit tricks
 * through memcpy, and no calls into libm (the vectorizer cannot widen a
 * call to glibc's scalar expf, tanh or erfc, which left those loops one
 * element at a time).
 *
 * Only IEEE add, sub, mul, div, compare, conversion and bit operations and,
 * where asked, fused multiply-adds are used, each rounded once. The build never contracts
 * a * b + c into an FMA by itself (-std=c11); exp, expm1 and tanh take a
 * flag `fused` instead (as do the float Gaussian and tail ratio of the
 * exact GELU), and the loops pass 1 on the instruction sets that
 * have FMA (AVX2 and AVX-512, MG_FMA_avx2 and MG_FMA_avx512 in
 * kernel_common.h) and 0 on the generic path, where fmaf would be a call
 * into libm that stops the loop vectorizing. These loops are bound by the
 * number of arithmetic instructions, and the fused form needs a third fewer
 * of them (tanh on 64K floats, AVX-512: 24.5 us unfused, 16.7 us fused).
 * So AVX2 and AVX-512 compute the very same bits, and the generic path
 * agrees with them to within the stated accuracy (an ulp or so apart),
 * each path tested on its own against the references.
 *
 * exp is needed only for arguments x <= 0 (sigmoid, tanh and GELU all work
 * with exp(-|v|)), so it can never overflow; it only has to underflow
 * properly. exp(x) = 2^k * e^r with k = round(x / ln 2) and
 * r = x - k ln 2 in [-ln 2 / 2, ln 2 / 2]:
 *
 * - k comes from the "shifter" trick: adding 1.5 * 2^(mantissa bits) to
 *   x / ln 2 rounds it to an integer that then sits in the low bits of the
 *   sum's representation. No float-to-int conversion, which would be
 *   undefined for NaN; a NaN x simply makes a NaN result.
 * - r by Cody-Waite: ln 2 = LN2_HI + LN2_LO with LN2_HI short enough that
 *   k * LN2_HI is exact and x - k * LN2_HI is exact by Sterbenz's lemma.
 * - e^r - 1 = r + r^2 P(r), P a polynomial; e^r is 1 plus that.
 * - 2^k is built by writing k + bias into the exponent field. To reach
 *   results below the normal range without a branch, the scale is applied in
 *   two steps, 2^(k + C) and then 2^-C, with C chosen so that both factors
 *   are normal numbers for every k the clamped argument can give: the first
 *   product is exact and the second rounds once, correctly also into the
 *   subnormals.
 * - The argument is clamped below, at a point where the result is 0 anyway,
 *   so -inf gives exactly 0 and k stays in range. Clamps are written
 *   x < MIN ? MIN : x, which lets NaN through.
 *
 * tanh(x) = sign(x) * tanh(|x|) and tanh(|x|) = -m / (2 + m) with
 * m = expm1(-2|x|), computed as (2^k - 1) + 2^k (e^r - 1): for k = 0 that
 * is e^r - 1 itself, so tanh(x) = x for tiny x with no cancellation, and
 * one formula covers the whole range (no branch between a small-|x|
 * polynomial and an exp form, which would have to compute both).
 *
 * Coefficients: P(r) = (e^r - 1 - r) / r^2 on [-1.0001 ln 2 / 2,
 * 1.0001 ln 2 / 2] (the margin covers the rounding of x / ln 2), fitted by
 * mpmath.chebyfit at 60 digits (Chebyshev interpolation, within a small
 * factor of minimax), then rounded to the nearest float or double and
 * written as the shortest decimal that reads back to it. Degrees are the
 * smallest whose fit error is well under half an ulp of the result:
 *
 *   float  degree 4: |P error| <= 6.5e-8,  times r^2 <= 0.12 -> 8e-9
 *   double degree 9: |P error| <= 1.1e-16, times r^2 <= 0.12 -> 1.3e-17
 *
 * The accuracy this gives over the whole range is stated in activations.c
 * and checked by tests/test_kernels_activations.py.
 */
#ifndef MINIGRAD_VMATH_H
#define MINIGRAD_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* memcpy is the portable way to reinterpret bits; GCC turns it into a
 * register move and vectorizes it like any other operation. */
static inline uint32_t mg_bits_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float mg_from_bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline uint64_t mg_bits_f64(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double mg_from_bits_f64(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* a * b + c, rounded once where the instruction set has FMA (fused = 1, a
 * constant in every loop, so the choice is folded away), else as two
 * roundings. */
static inline float mg_madd_f32(float a, float b, float c, int fused)
{
    return fused ? fmaf(a, b, c) : a * b + c;
}

static inline double mg_madd_f64(double a, double b, double c, int fused)
{
    return fused ? fma(a, b, c) : a * b + c;
}

/* ---- exp(x) and exp(x) - 1 for x <= 0 ---------------------------------------- */

/* The shifter 1.5 * 2^23 keeps x / ln 2 + shifter in [2^23, 2^24), where
 * the ulp is 1, for every |x / ln 2| < 2^22. Its low 9 bits are zero, so the
 * low bits of the sum's representation are k mod 2^9: adding a biased
 * exponent and shifting by 23 leaves exactly that exponent + k in the
 * exponent field (for results 1..254). */
#define MG_EXP_F32_SHIFTER 0x1.8p23f
#define MG_EXP_F32_LOG2E 1.44269504f
#define MG_EXP_F32_LN2_HI 0.693359375f /* 355 / 512: k * LN2_HI exact for |k| < 2^15 */
#define MG_EXP_F32_LN2_LO (-2.1219444e-4f) /* ln 2 - LN2_HI, rounded */

/* e^r - 1 = r + r^2 P(r) for |r| <= ln 2 / 2, without the cancellation of
 * e^r - 1 for small r. */
/* P in Estrin's order, (c0 + c1 r) + r^2 ((c2 + c3 r) + r^2 c4): its chain
 * of dependent operations is 5 long instead of Horner's 8, and these loops
 * are bound by latency, not by throughput (sigmoid and tanh 5-6% faster;
 * their measured maximum errors did not move). */
static inline float mg_expm1_reduced_f32(float r, int fused)
{
    float r2 = r * r;
    float hi = mg_madd_f32(r2, 1.3926184e-03f, mg_madd_f32(8.363179e-03f, r, 4.1666556e-02f, fused),
                           fused);
    float p = mg_madd_f32(r2, hi, mg_madd_f32(1.6666576e-01f, r, 5.e-01f, fused), fused);

    return mg_madd_f32(r2, p, r, fused);
}

/* exp(x) * 2^64 for x <= 0, a normal number (2^-109 or more) for
 * x >= -120 and 0 below; multiply by MG_EXP_F32_UNSCALE to get exp(x).
 * Callers that multiply exp(x) by other factors first and unscale last
 * round into the subnormal range only once, at the end: GELU's x e^{2u}
 * has a factor |x| ~ 10 where e^{2u} is already subnormal.
 * exp(-104) alone is below half the smallest subnormal (2^-150 =
 * e^-103.97), and even multiplied by such factors (up to 2^9 before the
 * product stops being tiny) exp(-120) = 2^-173 leaves the subnormals, so 0
 * below -120 changes no result. The clamp keeps k >= -174 for the rest, so
 * 2^(k + 64) and 2^-64 are both normal and the first product is exact. */
#define MG_EXP_F32_MIN (-120.0f)
#define MG_EXP_F32_UNSCALE 0x1p-64f

static inline float mg_exp_nonpos_scaled_f32(float x, int fused)
{
    float xc = x < MG_EXP_F32_MIN ? MG_EXP_F32_MIN : x;
    float t = mg_madd_f32(xc, MG_EXP_F32_LOG2E, MG_EXP_F32_SHIFTER, fused);
    float k = t - MG_EXP_F32_SHIFTER;
    float r = mg_madd_f32(-k, MG_EXP_F32_LN2_LO, mg_madd_f32(-k, MG_EXP_F32_LN2_HI, xc, fused),
                          fused);
    float p = 1.0f + mg_expm1_reduced_f32(r, fused);
    uint32_t scale = (mg_bits_f32(t) + (uint32_t)(127 + 64)) << 23;
    return x < MG_EXP_F32_MIN ? 0.0f : p * mg_from_bits_f32(scale);
}

static inline float mg_exp_nonpos_f32(float x, int fused)
{
    return mg_exp_nonpos_scaled_f32(x, fused) * MG_EXP_F32_UNSCALE;
}

/* exp(x) - 1 for x <= 0 as (2^k - 1) + 2^k (e^r - 1): 2^k - 1 is exact for
 * k >= -24 and 2^k (e^r - 1) is exact scaling, so the sum rounds once, and
 * for k = 0 it is e^r - 1 itself, accurate for tiny x. expm1(-20) rounds to
 * -1, so clamping there changes no result and keeps 2^k normal. */
#define MG_EXPM1_F32_MIN (-20.0f)

static inline float mg_expm1_nonpos_f32(float x, int fused)
{
    float xc = x < MG_EXPM1_F32_MIN ? MG_EXPM1_F32_MIN : x;
    float t = mg_madd_f32(xc, MG_EXP_F32_LOG2E, MG_EXP_F32_SHIFTER, fused);
    float k = t - MG_EXP_F32_SHIFTER;
    float r = mg_madd_f32(-k, MG_EXP_F32_LN2_LO, mg_madd_f32(-k, MG_EXP_F32_LN2_HI, xc, fused),
                          fused);
    float two_k = mg_from_bits_f32((mg_bits_f32(t) + 127u) << 23);

    return mg_madd_f32(two_k, mg_expm1_reduced_f32(r, fused), two_k - 1.0f, fused);
}

/* double: the same with shifter 1.5 * 2^52 (low 12 bits zero, exponent
 * field 1..2046); exp is 0 below -770 (exp(-770) = 2^-1110.9, far below
 * half the smallest subnormal, 2^-1075 = e^-745.1, even times 2^12), so
 * k >= -1112 and the scale factors 2^(k + 600) and 2^-600 are normal;
 * expm1 is clamped at -40 (expm1(-40) rounds to -1). */
#define MG_EXP_F64_SHIFTER 0x1.8p52
#define MG_EXP_F64_LOG2E 1.4426950408889634
/* LN2_HI has its low 21 bits zero: k * LN2_HI is exact for |k| < 2^21. */
#define MG_EXP_F64_LN2_HI 0x1.62e42feep-1
#define MG_EXP_F64_LN2_LO 1.9082149292705877e-10 /* ln 2 - LN2_HI, rounded */
#define MG_EXP_F64_MIN (-770.0)
#define MG_EXP_F64_UNSCALE 0x1p-600
#define MG_EXPM1_F64_MIN (-40.0)

static inline double mg_expm1_reduced_f64(double r, int fused)
{
    double p = 2.510038549551032e-08;

    p = mg_madd_f64(p, r, 2.7620088445409746e-07, fused);
    p = mg_madd_f64(p, r, 2.7557268459997064e-06, fused);
    p = mg_madd_f64(p, r, 2.4801521295954376e-05, fused);
    p = mg_madd_f64(p, r, 1.9841269863053618e-04, fused);
    p = mg_madd_f64(p, r, 1.3888888917213717e-03, fused);
    p = mg_madd_f64(p, r, 8.333333333330062e-03, fused);
    p = mg_madd_f64(p, r, 4.166666666662413e-02, fused);
    p = mg_madd_f64(p, r, 1.6666666666666669e-01, fused);
    p = mg_madd_f64(p, r, 5.000000000000001e-01, fused);
    return mg_madd_f64(r * r, p, r, fused);
}

static inline double mg_exp_nonpos_scaled_f64(double x, int fused)
{
    double xc = x < MG_EXP_F64_MIN ? MG_EXP_F64_MIN : x;
    double t = mg_madd_f64(xc, MG_EXP_F64_LOG2E, MG_EXP_F64_SHIFTER, fused);
    double k = t - MG_EXP_F64_SHIFTER;
    double r = mg_madd_f64(-k, MG_EXP_F64_LN2_LO, mg_madd_f64(-k, MG_EXP_F64_LN2_HI, xc, fused),
                           fused);
    double p = 1.0 + mg_expm1_reduced_f64(r, fused);
    uint64_t scale = (mg_bits_f64(t) + (uint64_t)(1023 + 600)) << 52;
    return x < MG_EXP_F64_MIN ? 0.0 : p * mg_from_bits_f64(scale);
}

static inline double mg_exp_nonpos_f64(double x, int fused)
{
    return mg_exp_nonpos_scaled_f64(x, fused) * MG_EXP_F64_UNSCALE;
}

static inline double mg_expm1_nonpos_f64(double x, int fused)
{
    double xc = x < MG_EXPM1_F64_MIN ? MG_EXPM1_F64_MIN : x;
    double t = mg_madd_f64(xc, MG_EXP_F64_LOG2E, MG_EXP_F64_SHIFTER, fused);
    double k = t - MG_EXP_F64_SHIFTER;
    double r = mg_madd_f64(-k, MG_EXP_F64_LN2_LO, mg_madd_f64(-k, MG_EXP_F64_LN2_HI, xc, fused),
                           fused);
    double two_k = mg_from_bits_f64((mg_bits_f64(t) + 1023u) << 52);

    return mg_madd_f64(two_k, mg_expm1_reduced_f64(r, fused), two_k - 1.0, fused);
}

/* ---- tanh ------------------------------------------------------------------- */

/* tanh(|x|) = -m / (2 + m) with m = expm1(-2|x|) in (-1, 0]: no
 * cancellation anywhere, tanh(x) = x for tiny x, exactly 1 once m rounds to
 * -1 (which the clamp in expm1 reaches before anything could overflow). The
 * sign goes back on with copysign, so tanh(-0) = -0. */
static inline float mg_tanh_f32(float x, int fused)
{
    float m = mg_expm1_nonpos_f32(-2.0f * fabsf(x), fused);

    return copysignf(-m / (2.0f + m), x);
}

static inline double mg_tanh_f64(double x, int fused)
{
    double m = mg_expm1_nonpos_f64(-2.0 * fabs(x), fused);

    return copysign(-m / (2.0 + m), x);
}

/* ---- erfc through erfcx, and the Gaussian ----------------------------------- */

/*
 * For a >= 0, erfc(a) = exp(-a^2) erfcx(a), where erfcx(a) = exp(a^2) erfc(a)
 * is smooth and slowly varying: 1 at a = 0, about 1 / (a sqrt(pi)) for large
 * a. Split this way, all of erfc's steep decay is in the exp factor, whose
 * argument can be formed exactly (below), and erfcx is harmless to round
 * into: |d ln erfcx / d ln a| <= 1, so a relative error d in a costs at most
 * about d in erfcx. (Negative arguments follow from erfc(-a) = 2 - erfc(a);
 * the exact GELU needs only a >= 0.)
 *
 * erfcx on 0 <= a <= 28 is r * Q(t) with r = 1 / (a + 4) and
 * t = (a - 4) r: the map a -> t takes [0, 28] to [-1, 0.75] and squeezes the
 * long, gently curved tail, and Q(t) = (a + 4) erfcx(a) falls from 4 to
 * 0.64, so an absolute error in Q is a relative one of about the same size.
 * One division, one polynomial, no branch and no table: the same code for
 * every a, which is what lets the loop vectorize. Q has degree 22, fitted
 * like the exp polynomials above (mpmath.chebyfit at 60 digits on
 * [-1, 0.75]): with the coefficients rounded to double, the polynomial is
 * within 7.9e-17 (relative) of (a + 4) erfcx(a). It is evaluated by
 * Estrin's scheme rather than Horner's rule: 22 dependent multiply-adds
 * made a chain so long that the vectorized loop waited on latency (measured
 * 1.5-2x slower); the tree is 5 levels deep. Rounding in the evaluation
 * adds a few ulp: measured against mpmath on 6,000 points of [0, 27.6],
 * mg_erfcx_f64 is within 6.0e-16 (relative; the worst for small a, where
 * |t| is close to 1 and rounding errors are not damped by its powers).
 * Beyond a = 28 the polynomial is not fitted; callers clamp (erfc(27.3) is
 * already below half the smallest subnormal).
 */
static inline double mg_erfcx_f64(double a)
{
    /* Q's coefficients, constant term first. */
    static const double c[23] = {
        1.095995661000491,
        -0.9765487290808821,
        0.7732087022652374,
        -0.5408538313132201,
        0.33085158787798813,
        -0.17401093724044453,
        0.07638151490987771,
        -0.02637005333230321,
        0.0061120556492774555,
        -0.00028095893558087193,
        -0.0004550526455639654,
        0.00017681319046764806,
        -3.635296646587849e-06,
        -1.886213507131139e-05,
        4.694619976583313e-06,
        1.4268525380407012e-06,
        -8.46291501725211e-07,
        -7.900030007324783e-08,
        1.2397022621920958e-07,
        3.3863100022513686e-09,
        -1.5213206819950384e-08,
        -6.36903746253068e-10,
        9.084541771213907e-10,
    };
    double r = 1.0 / (a + 4.0);
    double t = (a - 4.0) * r;
    double t2 = t * t;
    double t4 = t2 * t2;
    double t8 = t4 * t4;
    double t16 = t8 * t8;
    /* Estrin's scheme: runs of 4 coefficients, then pairs of runs, ... */
    double g0 = (c[0] + c[1] * t) + (c[2] + c[3] * t) * t2;
    double g1 = (c[4] + c[5] * t) + (c[6] + c[7] * t) * t2;
    double g2 = (c[8] + c[9] * t) + (c[10] + c[11] * t) * t2;
    double g3 = (c[12] + c[13] * t) + (c[14] + c[15] * t) * t2;
    double g4 = (c[16] + c[17] * t) + (c[18] + c[19] * t) * t2;
    double g5 = (c[20] + c[21] * t) + c[22] * t2;
    double h0 = g0 + g1 * t4;
    double h1 = g2 + g3 * t4;
    double h2 = g4 + g5 * t4;

    return r * ((h0 + h1 * t8) + h2 * t16);
}

/*
 * exp(-x^2 / 2) * 2^600 for |x| <= 39 (multiply by MG_EXP_F64_UNSCALE to
 * get the Gaussian itself; see mg_exp_nonpos_scaled_f64 for why a caller
 * may want to unscale last). Rounding x^2 would shift the argument by up to
 * x^2 / 2 * 2^-53, a relative error of several hundred ulp in the result at
 * x = 39, so the square is kept exact as sq + sq_lo (Dekker's product: x
 * splits into two halves of 26 bits whose products are exact) and the small
 * part enters as the factor 1 - sq_lo / 2 = exp(-sq_lo / 2) to within
 * 1e-26. Plain multiplies and subtractions rather than fma(), which is a
 * libm call where the target has no FMA instruction (the generic path) and
 * would stop the loop vectorizing there. For a float x, x * x is exact in
 * double and sq_lo comes out 0. Measured within 2.9e-16 (relative) of
 * mpmath on 6,000 points of [-39, 39] where the result is normal.
 */
#define MG_SPLIT_F64 134217729.0 /* 2^27 + 1 */

static inline double mg_gauss_scaled_f64(double x)
{
    double sq = x * x;
    double c = x * MG_SPLIT_F64;
    double hi = c - (c - x);
    double lo = x - hi;
    double sq_lo = ((hi * hi - sq) + 2.0 * hi * lo) + lo * lo;

    return mg_exp_nonpos_scaled_f64(-0.5 * sq, 0) * (1.0 - 0.5 * sq_lo);
}

/* ---- the same in float ------------------------------------------------------ */

/*
 * For the float exact GELU the same split, in float arithmetic so that a
 * vector holds twice as many lanes as in double. Float needs less range:
 * Phi(-u) is below half the smallest subnormal (2^-150) from u = 14.36 on
 * and the slope's u phi(u) from u = 14.54, so 0 <= u <= 15 is enough. But
 * float's own rounding is now what limits the accuracy, so the Gaussian
 * comes as an unevaluated sum hi + lo, which the caller folds in last.
 */
typedef struct {
    float hi;
    float lo;
} mg_sum_f32;

/*
 * h(u) = Phi(-u) / exp(-u^2 / 2) = erfcx(u / sqrt 2) / 2 for 0 <= u <= 15.
 * It is taken as a function of u itself, not of u / sqrt(2), which
 * saves a rounded argument: h = r Q(t) with r = 1 / (u + 4) and
 * t = (u - 4) / (u + 4) = 1 - 8 r, which maps [0, 15] to [-1, 0.58], and
 * Q(t) = (u + 4) h(u), falling from 2 to 0.5, a polynomial of degree 9. Its
 * coefficients minimize the relative error in a least-squares sense on 120
 * Chebyshev nodes of [-1, 0.58] (mpmath at 50 digits: within 1.0e-8 of Q, a
 * small factor from minimax); then they were rounded to float one at a
 * time, constant term first, the others refitted after each, which keeps
 * the rounded polynomial within 2.1e-8 (relative) of Q, against 2.7e-8 when
 * all are rounded at once. Of the centres tried for the map (2 to 6.5, for
 * degrees 6 to 12), 5 fits a little better (1.3e-8), but with 4, 8 r is
 * exact and so, for u <= 12, is t = 1 - 8 r (Sterbenz's lemma).
 *
 * Rounding, not the fit, is what costs: r Q(t) is off by up to 3.5e-7
 * (5.1 ulp; measured against mpmath on 8,200 points of [0, 15]), mostly
 * from two roundings. u + 4 keeps only the high bits of a small u, so r and
 * t belong to a neighbour of u and h moves by up to (u + 4) 2^-24 |h'|; and
 * the last addition, of Q's constant term, rounds by up to 6e-8 where Q is
 * just above 0.5. Both can be repaired (a first-order step back from the
 * neighbour, with the rounding of u + 4 kept by two-sum, and the addition's
 * error kept by another), which brings h within 1.3e-7; measured here, that
 * cost 28% of the float forward's time (on Zen 4, whose 512-bit arithmetic
 * runs at half rate), for a forward within 3 ulp instead of 6 and a bound,
 * 1e-6, met either way. So h is left as r Q(t).
 *
 * The other nine terms are summed in Estrin's order, 4 levels deep where
 * Horner's order takes 8 dependent steps: the loops wait on latency as much
 * as on throughput. Beyond u = 15 the polynomial is not fitted; callers
 * clamp.
 */
static inline float mg_gauss_tail_ratio_f32(float u, int fused)
{
    /* Q's coefficients, constant term first. */
    static const float c[10] = {
        0.75528514f,
        -0.60789657f,
        0.3871367f,
        -0.18652387f,
        0.06040493f,
        -0.0075227316f,
        -0.003513547f,
        0.0015653584f,
        0.00017693566f,
        -0.00013204456f,
    };
    float r = 1.0f / (u + 4.0f);
    float t = 1.0f - 8.0f * r;
    float t2 = t * t;
    float t4 = t2 * t2;
    float g0 = mg_madd_f32(mg_madd_f32(c[4], t, c[3], fused), t2, mg_madd_f32(c[2], t, c[1], fused),
                           fused);
    float g1 = mg_madd_f32(mg_madd_f32(c[8], t, c[7], fused), t2, mg_madd_f32(c[6], t, c[5], fused),
                           fused);
    float q = mg_madd_f32(c[9], t4 * t4, mg_madd_f32(g1, t4, g0, fused), fused);

    return r * mg_madd_f32(q, t, c[0], fused);
}

/*
 * exp(-x^2 / 2) * 2^64 for |x| <= 15 (MG_EXP_F32_UNSCALE takes the 2^64
 * off), the float twin of mg_gauss_scaled_f64, as hi + lo with hi a power
 * of 2 (so that the caller's products with hi are exact). x^2 is kept
 * exact as a sum: hi_x, x with the low 12 bits of its mantissa cleared, has
 * 12 significant bits and so has lo_x = x - hi_x (exact), so hi_x^2 is
 * exact, and (2 hi_x + lo_x) lo_x, at most 2^-11 of it, is the rest of x^2
 * to within 2^-35 x^2 (3e-9 in the result at x = 15; this is Dekker's
 * split, done by masking bits rather than by multiplying with 2^12 + 1).
 * The exp is mg_exp_nonpos_scaled_f32's, with three changes: the small
 * part a_lo of the argument joins the reduced argument after the exact
 * Cody-Waite steps on the large part a (so that no part of x^2 is rounded
 * before the polynomial, whose fitted range of 1.0001 ln 2 / 2 has room
 * for |a_lo| <= 7e-6 and the rounding of a / ln 2); the result stays split
 * as 2^(k + 64) + 2^(k + 64) (e^r - 1), which saves a rounding; and no
 * clamp, as a >= -112.5 (k >= -163: 2^(k + 64) is normal, and so is the
 * result, 2^-98 or more).
 */
static inline mg_sum_f32 mg_gauss_scaled_f32(float x, int fused)
{
    float hi_x = mg_from_bits_f32(mg_bits_f32(x) & 0xfffff000u);
    float lo_x = x - hi_x;
    float a = -0.5f * (hi_x * hi_x);
    float a_lo = -0.5f * ((hi_x + hi_x + lo_x) * lo_x);
    float t = mg_madd_f32(a, MG_EXP_F32_LOG2E, MG_EXP_F32_SHIFTER, fused);
    float k = t - MG_EXP_F32_SHIFTER;
    float r = mg_madd_f32(-k, MG_EXP_F32_LN2_LO, mg_madd_f32(-k, MG_EXP_F32_LN2_HI, a, fused),
                          fused) +
              a_lo;
    float scale = mg_from_bits_f32((mg_bits_f32(t) + (uint32_t)(127 + 64)) << 23);

    return (mg_sum_f32){scale, scale * mg_expm1_reduced_f32(r, fused)};
}

#endif /* MINIGRAD_VMATH_H */
